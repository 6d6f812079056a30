"""curate: curate image-caption training data.

Import is light on purpose: heavy libraries (torch, sentence-transformers, faiss) load only
where they are used.
"""
__version__ = "0.1.0"
