from __future__ import annotations

import numpy as np
import polars as pl

from curate.scoring.filters.base import TEXT, Filter
from curate.scoring.filters.tokens import words_of

K = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier for combining word hashes into n-gram keys
#: rounding allowance of the bound below which longer n-grams cannot change a score
MARGIN = 1e-9


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

    Computed on the batch's words as one long column (``tokens.words_of``): n-gram keys
    combine word hashes arithmetically, and one group-by per n (on the sorted row number)
    counts the distinct ones (no per-row lists). Only rows with a repeated long word are
    searched for the most frequent one, and 3- and 4-grams are counted only in rows whose
    repeated bigrams allow a share above the score so far (none without a repeated bigram).
    """

    name = "repetition"
    version = 1
    params = {"min_words": 4, "min_word_chars": 4}
    default_max = 0.35

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        n = batch.height
        words, nw = words_of(batch[TEXT].str.to_lowercase())
        enough = np.repeat(nw >= self.p["min_words"], nw)
        row = np.repeat(np.arange(n, dtype=np.uint32), nw)[enough]
        words = words.filter(pl.Series(enough))
        ex = pl.DataFrame({"i": pl.Series(row).set_sorted(), "h": words.hash(seed=1),
                           "long": words.str.len_chars() >= self.p["min_word_chars"]})
        share = _stuffing(ex.filter("long"), n) / np.maximum(nw, 1)
        h = ex["h"].to_numpy()
        key, at = h, np.arange(len(h))  # key: the n-gram starting at each word ``at``
        for k in (2, 3, 4):
            at_end = at + k - 1
            fits = at_end < len(h)
            at, at_end, key = at[fits], at_end[fits], key[fits]
            same = row[at_end] == row[at]  # (a start that fails here fails for every longer n)
            at, key = at[same], key[same] * K + h[at_end[same]]
            grams = pl.DataFrame({"i": pl.Series(row[at]).set_sorted(), "g": key})
            stats = grams.group_by("i").agg(pl.col("g").n_unique().alias("u"), pl.len().alias("total"))
            stats = stats.filter(pl.col("total") >= 2)
            repeated = np.zeros(n)
            repeated[stats["i"].to_numpy()] = 1 - stats["u"].to_numpy() / stats["total"].to_numpy()
            share = np.maximum(share, repeated)
            if k == 2:
                # A repeated 3-gram or 4-gram repeats its first bigram, so a row with d
                # repeated of its t bigrams has at most d of its t - 1 3-grams and t - 2
                # 4-grams repeated: only rows where d / (t - 2) could raise the score are
                # counted further (none without a repeated bigram).
                total = np.zeros(n)
                total[stats["i"].to_numpy()] = stats["total"].to_numpy()
                bound = repeated * total / np.maximum(total - 2, 1)
                look = ((repeated > 0) & (bound + MARGIN > share))[row[at]]
                at, key = at[look], key[look]
        share[nw < self.p["min_words"]] = 0.0
        return pl.DataFrame({column: share})


def _stuffing(long: pl.DataFrame, n: int) -> np.ndarray:
    """Extra occurrences of each row's most frequent long word (``i``, ``h``): count - 1,
    0 for a row without long words. Searched only in rows where one repeats."""
    out = np.zeros(n)
    counts = long.group_by("i").agg(pl.col("h").n_unique().alias("u"), pl.len().alias("k"))
    rows = counts.filter(pl.col("u") < pl.col("k"))["i"]
    if len(rows):
        top = long.filter(pl.col("i").is_in(rows.implode())).group_by("i").agg(
            (pl.col("h").unique_counts().max() - 1).alias("extra"))
        out[top["i"].to_numpy()] = top["extra"].to_numpy()
    return out
