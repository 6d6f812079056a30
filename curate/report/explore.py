"""Exploration: open runs and mixtures as LazyFrames and ask the usual questions.

The notebooks and ``curate report`` use these functions; they define no logic of their own.
Every function is a query over the tables (DESIGN convention 9): nothing is kept in
counters, and nothing reads a whole corpus into Python.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from curate.errors import CurateError
from curate.layout import load_run, pinned_groups, pinned_scores_glob
from curate.scoring.chain import Chain, load_chain, parse_chain
from curate.scoring.decision import decision_exprs

KEY_SEED = 0x5EED
GOLDEN = 0x9E3779B97F4A7C15


@dataclass
class Run:
    """A scored run: ``scores`` (LazyFrame over RUN/scores), ``info`` (run.json)."""

    path: Path
    info: dict

    @property
    def scores(self) -> pl.LazyFrame:
        return pl.scan_parquet(pinned_scores_glob(self.path))  # one version, whole

    @property
    def chain(self) -> Chain:
        return parse_chain(_strip_versions(self.info.get("decision_chain") or self.info["chain"]), str(self.path))

    @property
    def dedup(self) -> pl.LazyFrame | None:
        p = pinned_groups(self.path)
        return pl.scan_parquet(p) if p.is_file() else None

    @property
    def score_columns(self) -> list[str]:
        return [c for c in self.scores.collect_schema().names() if c.startswith("score__")]


@dataclass
class Mix:
    """A mixture: ``manifest`` (LazyFrame over MIX/manifest.parquet), ``info`` (manifest.json)."""

    path: Path
    info: dict

    @property
    def manifest(self) -> pl.LazyFrame:
        return pl.scan_parquet(self.path / "manifest.parquet")


def _strip_versions(chain: dict) -> dict:
    out = dict(chain)
    out["filter"] = [{k: v for k, v in f.items() if k != "version"} for f in chain["filter"]]
    return out


def open_run(path: str | os.PathLike) -> Run:
    """Open a run folder written by ``curate score``."""
    return Run(Path(path), load_run(path))


def open_mix(path: str | os.PathLike) -> Mix:
    """Open a mixture folder written by ``curate mix``."""
    p = Path(path) / "manifest.json"
    if not p.is_file():
        raise CurateError(f"{path}: not a curate mixture (no manifest.json)")
    return Mix(Path(path), json.loads(p.read_text()))


def score(df: pl.DataFrame, chain: Chain | str | None = None, caption: str = "caption") -> pl.DataFrame:
    """Score an in-memory DataFrame with a chain (default chain when None)."""
    from curate.scoring.frame import score_frame

    ch = chain if isinstance(chain, Chain) else load_chain(chain)
    if caption not in df.columns:
        raise CurateError(f"no column {caption!r}; columns are: {', '.join(df.columns)}")
    renamed = df.rename({caption: "caption"}) if caption != "caption" else df
    return score_frame(renamed.with_columns(pl.col("caption").cast(pl.String)), ch)


def redecide(run: Run, chain: Chain | str) -> pl.LazyFrame:
    """The run's scores with ``keep``/``reason`` from another chain (nothing is written)."""
    ch = chain if isinstance(chain, Chain) else load_chain(chain)
    lf = run.scores.drop(["keep", "reason"])
    missing = [c for c in ch.score_columns if c not in lf.collect_schema().names()]
    if missing:
        raise CurateError(f"the run has no {', '.join(missing)}; score with those filters first")
    return lf.with_columns(decision_exprs(ch))


def reason_counts(run: Run) -> pl.DataFrame:
    """Rows per reason (``kept`` for kept rows), in chain order."""
    order = ["kept", "empty"] + [s.id for s in run.chain.steps]
    df = run.scores.group_by(pl.col("reason").fill_null("kept")).agg(pl.len().alias("rows")).collect()
    rank = {r: i for i, r in enumerate(order)}
    return df.with_columns(pl.col("reason").replace_strict(rank, default=len(order)).alias("_o")).sort("_o", "reason").drop("_o")


def histograms(run: Run, column: str, bins: int = 40, by: str = "source", clip: float = 0.995) -> pl.DataFrame:
    """Counts of ``column`` in equal-width bins (up to the ``clip`` quantile), per ``by``."""
    lf = run.scores.filter(pl.col(column).is_not_null())
    lo_hi = lf.select(pl.col(column).min().alias("lo"), pl.col(column).quantile(clip).alias("hi")).collect()
    lo, hi = lo_hi["lo"][0], lo_hi["hi"][0]
    if lo is None:
        return pl.DataFrame(schema={by: pl.String, "bin_lo": pl.Float64, "bin_hi": pl.Float64, "rows": pl.UInt32})
    width = (hi - lo) / bins if hi > lo else 1.0
    b = ((pl.col(column) - lo) / width).floor().clip(0, bins - 1).cast(pl.Int64)
    out = lf.group_by(pl.col(by).cast(pl.String), b.alias("bin")).agg(pl.len().alias("rows")).collect()
    return out.with_columns(
        (lo + pl.col("bin") * width).alias("bin_lo"), (lo + (pl.col("bin") + 1) * width).alias("bin_hi"),
    ).select(by, "bin_lo", "bin_hi", "rows").sort(by, "bin_lo")


def languages(run: Run, top: int = 15) -> pl.DataFrame:
    """Rows per detected language, with the kept share."""
    return (
        run.scores.group_by(pl.col("lang").fill_null("(none)"))
        .agg(pl.len().alias("rows"), pl.col("keep").mean().alias("kept_share"))
        .sort("rows", descending=True).head(top).collect()
    )


def what_if(run: Run, step_id: str, points: int = 21) -> pl.DataFrame:
    """Rows kept as one filter's threshold moves, the other filters' thresholds fixed.

    The moving bound is ``min`` when the filter has one, else ``max``. Thresholds are the
    score's quantiles, so the curve covers the data's range.
    """
    chain = run.chain
    steps = {s.id: s for s in chain.steps}
    if step_id not in steps:
        raise CurateError(f"no filter {step_id!r} in the run's chain; filters: {', '.join(steps)}")
    step = steps[step_id]
    bound = "min" if step.min is not None or step.max is None else "max"
    col = step.column
    others = [s for s in chain.steps if s.id != step_id]
    from curate.scoring.decision import is_empty_caption, passes

    base = ~is_empty_caption()
    for s in others:
        base = base & passes(s)
    qs = [i / (points - 1) for i in range(points)]
    lf = run.scores
    thr = lf.select([pl.col(col).quantile(q).alias(str(i)) for i, q in enumerate(qs)]).collect().row(0)
    thresholds = sorted({float(t) for t in thr if t is not None})
    exprs = []
    for i, t in enumerate(thresholds):
        ok = pl.col(col) >= t if bound == "min" else pl.col(col) <= t
        if step.min is not None and bound == "max":
            ok = ok & (pl.col(col) >= step.min)
        if step.max is not None and bound == "min":
            ok = ok & (pl.col(col) <= step.max)
        exprs.append((base & ok.fill_null(False)).sum().alias(str(i)))
    row = lf.select(exprs).collect().row(0) if exprs else ()
    total = lf.select(pl.len()).collect().item()
    current = step.min if bound == "min" else step.max
    return pl.DataFrame({
        "filter": [step_id] * len(thresholds), "bound": [bound] * len(thresholds),
        "threshold": thresholds, "kept": [int(x) for x in row],
        "kept_share": [int(x) / max(total, 1) for x in row],
        "current": [current] * len(thresholds),
    })


def rejected_examples(run: Run, per_reason: int = 5, seed: int = 0) -> pl.DataFrame:
    """A deterministic sample of dropped captions for each reason (hash of sample_id, seed)."""
    # a fixed multiplicative hash of sample_id (wrapping UInt64 arithmetic): stable across
    # library versions, unlike Expr.hash
    key = (pl.col("sample_id").cast(pl.UInt64) ^ pl.lit(seed + KEY_SEED, pl.UInt64)) * pl.lit(GOLDEN, pl.UInt64)
    cols = ["reason", "sample_id", "source", "row", "caption"] + run.score_columns
    return (
        run.scores.filter(pl.col("reason").is_not_null())
        .with_columns(key.alias("_k"))
        .sort("reason", "_k")
        .group_by("reason", maintain_order=True).head(per_reason)
        .select([c for c in cols if c])
        .collect()
    )


def duplicate_groups(run: Run, top: int = 10, members: int = 8) -> pl.DataFrame:
    """The largest duplicate groups (from ``curate dedup``) with their members' captions."""
    groups = run.dedup
    if groups is None:
        raise CurateError(f"{run.path}: no duplicate groups; run `curate dedup {run.path}` first")
    largest = (
        groups.group_by("dup_group").agg(pl.len().alias("group_size"))
        .sort(["group_size", "dup_group"], descending=[True, False]).head(top)
    )
    return (
        groups.join(largest.select("dup_group"), on="dup_group")
        .join(run.scores.select("sample_id", "caption", "source", "row"), on="sample_id")
        .sort(["dup_group", "is_representative", "sample_id"], descending=[False, True, False])
        .group_by("dup_group", maintain_order=True).head(members)
        .join(largest, on="dup_group", suffix="_total")
        .sort(["group_size_total", "dup_group"], descending=[True, False])
        .collect()
    )


def mix_composition(mix: Mix, buckets: int = 5) -> pl.DataFrame:
    """Selected rows (and weight) per source run and quality bucket (quantiles of quality)."""
    m = mix.manifest
    names = m.collect_schema().names()
    qcol = "quality" if "quality" in names else None
    src = "run" if "run" in names else "source"
    weight = pl.col("repeat") if "repeat" in names else (pl.col("weight") if "weight" in names else pl.lit(1))
    if qcol is None:
        return m.group_by(src).agg(pl.len().alias("rows"), weight.sum().alias("weighted")).sort(src).collect()
    edges = m.select([pl.col(qcol).quantile(i / buckets).alias(str(i)) for i in range(1, buckets)]).collect().row(0)
    bucket = pl.lit(0)
    for e in edges:
        if e is not None:
            bucket = bucket + (pl.col(qcol) > e).cast(pl.Int32)
    return (
        m.with_columns(bucket.alias("quality_bucket"))
        .group_by(src, "quality_bucket").agg(pl.len().alias("rows"), weight.sum().alias("weighted"),
                                             pl.col(qcol).mean().alias("mean_quality"))
        .sort(src, "quality_bucket").collect()
    )
