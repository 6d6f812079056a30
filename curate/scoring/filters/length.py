from __future__ import annotations

import polars as pl

from curate.scoring.filters.base import TEXT, Filter, word_count


class Length(Filter):
    """Caption length, in words (default) or characters.

    Rule: keep captions of ``min`` to ``max`` units. Words are letter/digit runs; in Chinese
    and Japanese two Han/kana characters count as one word (see ``word_count``).
    Defaults are caption-scale: 3 to 300 words, or 10 to 2,000 characters. Web-document filters (Gopher, C4) use 50+
    words, which would reject nearly every caption; image-caption sets such as COCO have
    8 to 20 words per caption and detailed descriptions (DOCCI, ImageInWords) 100 to 300.
    A second instance with ``unit = "chars"`` catches captions that are long without spaces.
    """

    name = "length"
    version = 1
    params = {"unit": "words"}
    choices = {"unit": ("words", "chars")}
    default_min = 3.0
    default_max = 300.0

    def thresholds(self):
        return (3.0, 300.0) if self.p["unit"] == "words" else (10.0, 2000.0)

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        text = pl.col(TEXT)
        value = word_count(text) if self.p["unit"] == "words" else text.str.len_chars().cast(pl.Float64)
        return batch.select(value.alias(column))
