"""The built-in filters, looked up in one explicit dictionary (DESIGN convention 7)."""
from __future__ import annotations

from .base import TEXT, Filter
from .junk import Junk
from .language import Language
from .length import Length
from .neardup import NearDup
from .repetition import Repetition
from .specificity import Specificity

FILTERS: dict[str, type[Filter]] = {
    "length": Length,
    "language": Language,
    "specificity": Specificity,
    "junk": Junk,
    "repetition": Repetition,
    "neardup": NearDup,
}

__all__ = ["FILTERS", "TEXT", "Filter"]
