"""The built-in filters, looked up in one explicit dictionary (DESIGN convention 7)."""
from __future__ import annotations

from curate.scoring.filters.base import TEXT, Filter
from curate.scoring.filters.classifier import Classifier
from curate.scoring.filters.judgement import Judgement
from curate.scoring.filters.junk import Junk
from curate.scoring.filters.language import Language
from curate.scoring.filters.length import Length
from curate.scoring.filters.neardup import NearDup
from curate.scoring.filters.repetition import Repetition
from curate.scoring.filters.specificity import Specificity

FILTERS: dict[str, type[Filter]] = {
    "length": Length,
    "language": Language,
    "specificity": Specificity,
    "junk": Junk,
    "repetition": Repetition,
    "neardup": NearDup,
    "classifier": Classifier,
    "judgement": Judgement,
}

__all__ = ["FILTERS", "TEXT", "Filter"]
