from __future__ import annotations

import polars as pl

from .base import TEXT, Filter


def _ngrams(words: pl.Expr, n: int) -> pl.Expr:
    parts = [pl.element().shift(-i) for i in range(n)]
    return words.list.eval(pl.concat_str(parts, separator=" ").drop_nulls())


class Repetition(Filter):
    """Repeated words and n-grams within one caption (keyword stuffing, model loops).

    Rule: ``score__repetition`` is the largest of
    (a) for n in 2..4, the share of the caption's word n-grams that repeat an earlier one,
        1 - unique(n-grams) / n-grams (Gopher's duplicate n-gram fraction, by count);
    (b) the share of extra occurrences of the most frequent word of ``min_word_chars`` or
        more characters, (count - 1) / words (keyword stuffing: "shoes cheap shoes shoes").
    Unit: a fraction in [0, 1]; 0 for captions shorter than ``min_words`` words. A natural
    caption repeats little ("a man next to a man" scores 0.2); a model stuck in a loop or a
    list of keywords scores 0.4 and up. Default ``max = 0.35``.
    """

    name = "repetition"
    version = 1
    params = {"min_words": 4, "min_word_chars": 4}
    default_max = 0.35

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        words = pl.col(TEXT).str.to_lowercase().str.extract_all(r"[\p{L}\p{N}]+(?:'[\p{L}\p{N}]+)*")
        nw = words.list.len()
        shares = []
        for n in (2, 3, 4):
            g = _ngrams(words, n)
            total = g.list.len()
            shares.append(pl.when(total >= 2).then(1 - g.list.n_unique() / total).otherwise(0.0))
        long_words = words.list.eval(pl.element().filter(pl.element().str.len_chars() >= self.p["min_word_chars"]))
        top = long_words.list.eval(pl.element().unique_counts().max()).list.first().fill_null(1)
        shares.append((top - 1).clip(lower_bound=0) / nw)
        value = pl.when(nw >= self.p["min_words"]).then(pl.max_horizontal(shares)).otherwise(0.0)
        return batch.select(value.cast(pl.Float64).fill_null(0.0).alias(column))
