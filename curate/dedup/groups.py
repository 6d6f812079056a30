"""Duplicate groups from the neighbour table: the SemDeDup rule (see :mod:`curate.dedup`).

Every function works on whole columns (Polars, NumPy); there is no loop over rows.
"""
from __future__ import annotations

import numpy as np
import polars as pl

#: Similarities below this are not stored; thresholds from here up are exact re-decisions.
FLOOR = 0.5


def similarity(rule: str) -> pl.Expr:
    cos = pl.col("cosine")
    sim = pl.min_horizontal(cos, pl.col("jaccard")) if rule.startswith("min") else cos
    return pl.when(cos >= FLOOR).then(sim).otherwise(0.0).cast(pl.Float64)


def best_better(pairs: pl.DataFrame, rule: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For every text: (highest similarity to a better-ranked neighbour text, that text or -1).

    Pairs count in both directions (if A lists B, B is also compared with A); ties go to the
    better-ranked text.
    """
    both = pl.concat([
        pairs.select("i", "j", similarity(rule).alias("s")),
        pairs.select(pl.col("j").alias("i"), pl.col("i").alias("j"), similarity(rule).alias("s")),
    ]).filter((pl.col("j") < pl.col("i")) & (pl.col("s") > 0))
    best = both.sort(["i", "s", "j"], descending=[False, True, False]).unique("i", keep="first")
    score = np.zeros(n, np.float64)
    target = np.full(n, -1, np.int64)
    score[best["i"].to_numpy()] = best["s"].to_numpy()
    target[best["i"].to_numpy()] = best["j"].to_numpy()
    return score, target


def roots(parent: np.ndarray) -> np.ndarray:
    """Follow pointers to their end (pointer jumping: log2(depth) vectorised steps)."""
    r = parent.copy()
    while True:
        nxt = r[r]
        if np.array_equal(nxt, r):
            return r
        r = nxt


def nearest(pairs: pl.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each text's most similar other text by cosine, either direction (-1 when none)."""
    both = pl.concat([
        pairs.select("i", "j", "cosine"),
        pairs.select(pl.col("j").alias("i"), pl.col("i").alias("j"), "cosine"),
    ])
    top = both.sort(["i", "cosine", "j"], descending=[False, True, False]).unique("i", keep="first")
    nb = np.full(n, -1, np.int64)
    cs = np.full(n, np.nan, np.float64)
    nb[top["i"].to_numpy()] = top["j"].to_numpy()
    cs[top["i"].to_numpy()] = top["cosine"].to_numpy()
    return nb, cs


def groups(rows: pl.DataFrame, texts: pl.DataFrame, pairs: pl.DataFrame, rule: str, threshold: float) -> pl.DataFrame:
    """The groups table: one row per sample (see the module docstring)."""
    n = texts.height
    score, target = best_better(pairs, rule, n)
    nb, nb_cos = nearest(pairs, n)
    return groups_from_arrays(rows, texts, score, target, nb, nb_cos, threshold)


def groups_from_arrays(rows: pl.DataFrame, texts: pl.DataFrame, score: np.ndarray, target: np.ndarray,
                       nb: np.ndarray, nb_cos: np.ndarray, threshold: float,
                       root: np.ndarray | None = None) -> pl.DataFrame:
    """The groups table from per-text arrays: :func:`best_better`'s (score, target) and
    :func:`nearest`'s (neighbour, cosine); the out-of-core path accumulates them part by part
    (:class:`curate.dedup.stream.TextArrays`). ``root``: each text's representative when it
    was computed elsewhere (:mod:`curate.dedup.ranges`), else by :func:`roots` here."""
    n = texts.height
    dup = score > threshold
    if root is None:
        root = roots(np.where(dup, target, np.arange(n)))
    heads = texts["head"].to_numpy()
    tx = pl.DataFrame({
        "text": np.arange(n, dtype=np.int64),
        "_score": score, "_dup": dup,
        "_target": pl.Series(np.where(dup, heads[np.maximum(target, 0)], 0), dtype=pl.UInt64),
        "_root": pl.Series(heads[root], dtype=pl.UInt64),
        "_nb": pl.Series(np.where(nb >= 0, heads[np.maximum(nb, 0)], 0), dtype=pl.UInt64),
        "_nbok": nb >= 0, "_nbcos": nb_cos,
        "_head": pl.Series(heads, dtype=pl.UInt64), "_rows": texts["rows"],
    })
    # the second-best row of a text is the nearest row of its head (cosine 1)
    second = (
        rows.filter(pl.col("text").is_not_null()).sort("rank")
        .group_by("text").agg(pl.col("sample_id").get(1, null_on_oob=True).alias("_second"))
    )
    df = rows.join(tx, on="text", how="left").join(second, on="text", how="left")
    is_head = pl.col("sample_id") == pl.col("_head")
    has = pl.col("text").is_not_null()
    copy = has & ~is_head  # another row has the same clean text and ranks above this one
    dup_of = (
        pl.when(copy).then(pl.col("_head"))
        .when(has & pl.col("_dup")).then(pl.col("_target"))
        .otherwise(pl.lit(None, pl.UInt64))
    )
    out = df.with_columns(
        pl.when(has).then(pl.col("_root")).otherwise(pl.col("sample_id")).alias("dup_group"),
        dup_of.alias("duplicate_of"),
        pl.when(copy).then(1.0).when(has).then(pl.col("_score")).otherwise(0.0).alias("score__neardup"),
        pl.when(copy).then(pl.col("_head"))
        .when(has & (pl.col("_rows") > 1)).then(pl.col("_second"))
        .when(has & pl.col("_nbok")).then(pl.col("_nb")).otherwise(pl.lit(None, pl.UInt64)).alias("nearest_id"),
        pl.when(copy | (has & (pl.col("_rows") > 1))).then(1.0)
        .when(has & pl.col("_nbok")).then(pl.col("_nbcos")).otherwise(None).alias("nearest_cosine"),
    )
    target_norm = out.select(pl.col("sample_id").alias("duplicate_of"), pl.col("norm_hash").alias("_tn"))
    out = out.join(target_norm, on="duplicate_of", how="left")
    kind = (
        pl.when(pl.col("duplicate_of").is_null()).then(pl.lit("none"))
        .when(pl.col("_tn") == pl.col("norm_hash")).then(pl.lit("exact"))
        .otherwise(pl.lit("near"))
    )
    out = out.with_columns(
        kind.alias("dup_kind"),
        pl.len().over("dup_group").cast(pl.UInt32).alias("group_size"),
        (pl.col("sample_id") == pl.col("dup_group")).alias("is_representative"),
    )
    return out.select(
        pl.col("sample_id").cast(pl.UInt64), pl.col("dup_group").cast(pl.UInt64), "group_size",
        "is_representative", pl.col("dup_kind").cast(pl.String), "duplicate_of", "score__neardup",
        pl.col("nearest_id").cast(pl.UInt64), pl.col("nearest_cosine").cast(pl.Float64), "rank",
    ).sort("rank").drop("rank")


def counts(table: pl.DataFrame, n_texts: int | None) -> dict:
    """Row, duplicate and group counts of a groups table; ``texts``: the distinct texts
    (None for one run of a set, whose texts are counted for the set)."""
    c = table.select(
        pl.len().alias("rows"),
        (pl.col("dup_kind") == "exact").sum().alias("exact"),
        (pl.col("dup_kind") == "near").sum().alias("near"),
        pl.col("duplicate_of").is_not_null().sum().alias("duplicate_rows"),
        pl.col("dup_group").n_unique().alias("groups"),
        (pl.col("is_representative") & (pl.col("group_size") > 1)).sum().alias("groups_with_duplicates"),
        pl.col("group_size").max().alias("largest_group"),
    ).row(0, named=True)
    c = {k: int(v or 0) for k, v in c.items()}
    if n_texts is not None:
        c["texts"] = n_texts
    c["kept"] = c["rows"] - c["duplicate_rows"]
    return c
