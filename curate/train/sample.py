"""``curate sample``: captions of a run to label next.

* ``by="reason"``: strata are the decision (``kept`` or the reason a row was dropped);
* ``by="score"``: strata are the quintiles of one score column;
* ``uncertain=MODEL``: the rows whose probability is nearest the model's threshold (the
  ones the model is least sure of), streamed part by part (memory holds ``n`` rows).

Strata get equal shares of ``n`` (a stratum with fewer rows gives the rest to the others);
within a stratum rows are drawn by a seeded hash of ``sample_id``, so the same run and seed
give the same sample. The CSV has an empty ``label`` column to fill in for ``curate train``.
"""
from __future__ import annotations

import os

import numpy as np
import polars as pl

from curate.atomic import atomic_path
from curate.errors import CurateError
from curate.hashing import key64, splitmix64
from curate.layout import load_run, pinned_run, pinned_scores_glob, score_parts
from curate.scoring.filters.classifier import load_model
from curate.scoring.frame import normalised

BYS = ("reason", "score")
COLUMNS = ["sample_id", "source", "row", "caption"]
QUINTILES = 5


def quotas(counts: dict[str, int], n: int) -> dict[str, int]:
    """Equal shares of ``n`` over the strata; a small stratum's unused share goes to the rest."""
    left, out = n, {}
    todo = sorted(counts, key=lambda k: (counts[k], k))
    for i, k in enumerate(todo):
        share = left // (len(todo) - i)
        out[k] = min(counts[k], share)
        left -= out[k]
    return out


def _keys(ids: pl.Series, seed: int) -> pl.Series:
    return pl.Series("k", splitmix64(ids.to_numpy() ^ key64(f"sample:{seed}")), dtype=pl.UInt64)


def _stratum(lf: pl.LazyFrame, by: str, column: str | None) -> tuple[pl.Expr, str | None]:
    cols = lf.collect_schema().names()
    if by == "reason":
        return pl.coalesce(pl.col("reason"), pl.lit("kept")), None
    scores = [c for c in cols if c.startswith("score__")]
    column = column or ("score__specificity" if "score__specificity" in scores else (scores or [None])[0])
    if column not in cols:
        raise CurateError(f"no score column {column!r} in the run; score columns: {', '.join(scores) or '(none)'}")
    qs = lf.select([pl.col(column).quantile(i / QUINTILES).alias(f"q{i}") for i in range(1, QUINTILES)]).collect().row(0)
    if any(q is None for q in qs):
        return pl.lit("q1"), column
    bin_no = sum((pl.col(column) > q).cast(pl.Int32) for q in qs) + 1
    return pl.when(pl.col(column).is_null()).then(pl.lit("null")).otherwise(
        pl.format("q{}", bin_no)), column


def stratified(run: str | os.PathLike, n: int, by: str = "reason", column: str | None = None,
               seed: int = 0) -> pl.DataFrame:
    if by not in BYS:
        raise CurateError(f"unknown --by {by!r}; use one of {', '.join(BYS)}")
    lf = pl.scan_parquet(pinned_scores_glob(run))
    stratum, column = _stratum(lf, by, column)
    strata = lf.select("sample_id", stratum.alias("stratum")).collect()
    strata = strata.with_columns(_keys(strata["sample_id"], seed))
    counts = dict(strata.group_by("stratum").len().iter_rows())
    q = pl.DataFrame({"stratum": list(counts), "quota": [quotas(counts, n)[k] for k in counts]})
    chosen = (
        strata.join(q, on="stratum")
        .filter(pl.col("k").rank("ordinal").over("stratum") <= pl.col("quota"))
        .select("sample_id", "stratum", "k")
    )
    rows = lf.select(COLUMNS).join(chosen.lazy(), on="sample_id", how="semi").collect()
    out = rows.join(chosen, on="sample_id").sort("stratum", "k").drop("k")
    return out.with_columns(pl.lit(f"{by}:{column}" if column else by).alias("sampled_by"))


def uncertain(run: str | os.PathLike, model_folder: str | os.PathLike, n: int, seed: int = 0) -> pl.DataFrame:
    """The ``n`` rows whose P(positive) is nearest the model's threshold."""
    model = load_model(model_folder)
    t = float(model.meta.get("threshold", 0.5))
    best = None
    for part in score_parts(pinned_run(run)):
        df = pl.read_parquet(part, columns=COLUMNS)
        text = normalised(df["caption"])
        keep = text.str.strip_chars() != ""
        df, text = df.filter(keep), text.filter(keep)
        p = model.predict(text)
        df = df.with_columns(pl.Series("p_positive", p), pl.Series("d", np.abs(p - t)), _keys(df["sample_id"], seed))
        best = df if best is None else pl.concat([best, df])
        best = best.sort("d", "k").head(n)
    if best is None:
        raise CurateError(f"{run}: the run has no score parts")
    return best.drop("d", "k").with_columns(pl.lit("uncertain").alias("sampled_by"))


def sample_run(run: str | os.PathLike, out: str | os.PathLike, n: int = 200, by: str = "reason",
               column: str | None = None, uncertain_model: str | None = None, seed: int = 0) -> pl.DataFrame:
    """Pick captions to label and write them as CSV (with an empty ``label`` column)."""
    if n < 1:
        raise CurateError(f"--n must be at least 1, got {n}")
    load_run(run)
    if uncertain_model:
        df = uncertain(run, uncertain_model, n, seed)
    else:
        df = stratified(run, n, by, column, seed)
    df = df.with_columns(pl.lit("").alias("label"))
    with atomic_path(out) as tmp:
        df.write_csv(tmp)
    return df
