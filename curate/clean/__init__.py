"""The clean stage: ordered transforms that repair captions before they are scored
(DESIGN convention 16). ``caption`` stays as read; ``caption_clean`` is what the filters
score and the trainer gets; ``clean_ops`` names the transforms that changed a row."""
from curate.clean.apply import CLEAN, OPS, TRANSFORMS, clean_captions, parse_clean
from curate.clean.base import Transform

__all__ = ["CLEAN", "OPS", "TRANSFORMS", "Transform", "clean_captions", "parse_clean"]
