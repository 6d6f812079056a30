from __future__ import annotations

import polars as pl

from curate.scoring.filters.base import CJK, TEXT, WORD, Filter, word_count


class Length(Filter):
    """Caption length, in words (default) or characters.

    Rule: keep captions of ``min`` to ``max`` units. Words are letter/digit runs; in Chinese
    and Japanese two Han/kana characters count as one word (see ``word_count``).
    Defaults are caption-scale: at least 3 words, with no maximum (dense human descriptions
    of DOCCI and ImageInWords run to 450 words and are good captions; runaway model output
    is the ``repetition`` filter's and the judgement's to catch), or 10 to 2,000
    characters. Web-document filters (Gopher, C4) use 50+ words, which would reject nearly
    every caption; image-caption sets such as COCO have 8 to 20 words per caption.
    A second instance with ``unit = "chars"`` catches captions that are long without spaces.
    """

    name = "length"
    version = 1
    params = {"unit": "words"}
    choices = {"unit": ("words", "chars")}
    default_min = 3.0
    default_max = None

    def thresholds(self):
        return (3.0, None) if self.p["unit"] == "words" else (10.0, 2000.0)

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        text = batch[TEXT]
        if self.p["unit"] == "chars":
            return pl.DataFrame({column: text.str.len_chars().cast(pl.Float64)})
        # Han and kana are searched for only in rows with a character outside ASCII; rows
        # without them count their words alone (the same as word_count, for less)
        value = text.str.count_matches(WORD).cast(pl.Float64)
        wide = (text.str.len_bytes() != text.str.len_chars()).arg_true()
        cjk = wide.gather(text.gather(wide).str.contains(f"[{CJK}]").arg_true())
        if len(cjk):
            value = value.scatter(cjk, text.gather(cjk).to_frame("t").select(word_count(pl.col("t"))).to_series())
        return pl.DataFrame({column: value})
