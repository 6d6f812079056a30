"""The packaged filter chains (installed as ``curate.scoring.chains``; see pyproject.toml).

Each ``*.toml`` here is a chain that ``curate score --chain NAME`` finds by name. This
folder is their one source: edit them here.
"""
