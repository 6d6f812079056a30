from __future__ import annotations

import polars as pl

from curate.scoring.filters.base import TEXT, Filter

K = 0x9E3779B97F4A7C15  # odd 64-bit multiplier for combining word hashes into n-gram keys


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

    Computed on the batch's words exploded into one long column: n-gram keys combine word
    hashes arithmetically, and one group-by per n counts them (no per-row lists).
    A row without a repeated bigram has no repeated 3- or 4-gram, so those are counted only
    for rows with one.
    """

    name = "repetition"
    version = 1
    params = {"min_words": 4, "min_word_chars": 4}
    default_max = 0.35

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        words = batch.select(
            pl.col(TEXT).str.to_lowercase().str.extract_all(r"[\p{L}\p{N}]+(?:'[\p{L}\p{N}]+)*").alias("w")
        ).with_row_index("i")
        nw = words.select(pl.col("i"), pl.col("w").list.len().alias("nw"))
        ex = (
            words.filter(pl.col("w").list.len() >= self.p["min_words"])
            .explode("w")
            .select("i", pl.col("w").hash(seed=1).alias("h"), (pl.col("w").str.len_chars() >= self.p["min_word_chars"]).alias("long"))
        )
        top = ex.filter("long").group_by("i").agg((pl.col("h").unique_counts().max() - 1).alias("extra"))
        key = pl.col("h")
        shares = []
        rows = ex
        for n in (2, 3, 4):
            key = key * pl.lit(K, pl.UInt64) + pl.col("h").shift(-(n - 1))
            grams = rows.select("i", key.alias("g"), (pl.col("i").shift(-(n - 1)) == pl.col("i")).alias("ok")).filter("ok")
            stats = grams.group_by("i").agg(
                (1 - pl.col("g").n_unique() / pl.len()).alias(f"r{n}"), pl.len().alias("total")
            ).filter(pl.col("total") >= 2).drop("total")
            shares.append(stats)
            if n == 2:  # only rows with a repeated bigram can repeat longer n-grams
                rows = ex.filter(pl.col("i").is_in(stats.filter(pl.col("r2") > 0)["i"].implode()))
        out = nw
        for part in [top] + shares:
            out = out.join(part, on="i", how="left")
        value = pl.max_horizontal(
            pl.col("extra").fill_null(0) / pl.col("nw"), *[pl.col(f"r{n}").fill_null(0.0) for n in (2, 3, 4)]
        )
        value = pl.when(pl.col("nw") >= self.p["min_words"]).then(value).otherwise(0.0)
        return out.sort("i").select(value.cast(pl.Float64).fill_null(0.0).alias(column))
