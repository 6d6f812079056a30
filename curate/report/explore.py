"""Exploration: open runs and mixtures as LazyFrames and ask the usual questions.

The notebooks and ``curate report`` use these functions; they define no logic of their own.
Every function is a query over the tables (DESIGN convention 9): nothing is kept in
counters, and nothing reads a whole corpus into Python.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from curate.errors import CurateError
from curate.layout import (MANIFEST, groups_path, load_run, pinned_groups, pinned_scores_glob, pinned_store, scores_glob,
                           under)
from curate.mix.manifest import load_mixture
from curate.scoring.chain import Chain, load_chain, parse_chain
from curate.scoring.decision import decision_exprs
from curate.storage.fs import exists, is_url

KEY_SEED = 0x5EED
GOLDEN = 0x9E3779B97F4A7C15


@dataclass
class Run:
    """A scored run: ``scores`` (LazyFrame over RUN/scores), ``info`` (run.json); ``path``
    is a URL for a run on a store (each property reads the version current then)."""

    path: Path | str
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
        return pl.scan_parquet(p) if exists(p) and not os.path.isdir(p) else None

    @property
    def score_columns(self) -> list[str]:
        return [c for c in self.scores.collect_schema().names() if c.startswith("score__")]


@dataclass
class Mix:
    """A mixture: ``manifest`` (LazyFrame over MIX/manifest.parquet), ``info`` (manifest.json)."""

    path: Path | str
    info: dict

    @property
    def manifest(self) -> pl.LazyFrame:
        return pl.scan_parquet(under(pinned_store(self.path) if is_url(self.path) else self.path, MANIFEST))


def _strip_versions(chain: dict) -> dict:
    out = dict(chain)
    out["filter"] = [{k: v for k, v in f.items() if k != "version"} for f in chain["filter"]]
    return out


def open_run(path: str | os.PathLike) -> Run:
    """Open a run folder written by ``curate score``, or a run's URL on a store
    (``s3://bucket/run``: docs/object-storage-runs.md)."""
    return Run(str(path) if is_url(path) else Path(path), load_run(path))


def open_mix(path: str | os.PathLike) -> Mix:
    """Open a mixture folder written by ``curate mix`` (checked as every command checks it)."""
    return Mix(str(path) if is_url(path) else Path(path), load_mixture(path))


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


def source_groups(run: Run) -> pl.Expr:
    """A name per source dataset rather than per file: input files whose names differ only in
    their numbers (``shard-00000.tar`` ... ``shard-00999.tar``) are one source,
    ``shard-*.tar``; a file with no such siblings keeps its own name."""
    base = pl.col("source").cast(pl.String).str.replace(r"^.*/", "")
    pattern = base.str.replace_all(r"\d+", "*")
    files = pl.col("source").n_unique().over(pattern)
    return pl.when(files > 1).then(pattern).otherwise(base)


def score_axis(run: Run, column: str, bins: int = 40, clip: float = 0.005) -> dict:
    """The axis of ``column``'s histogram: ``lo``, ``hi``, ``bins`` and the rows ``below`` and
    ``above`` it.

    The axis spans the data's ``clip`` to ``1 - clip`` quantiles (0.5% to 99.5%); rows outside
    it are counted, not drawn. A score of whole numbers over a short span gets one bin per
    number; a score whose values all lie in 0..1 (a share, a probability) gets bins of 1/40
    on that scale; otherwise ``bins`` equal bins.
    """
    c = pl.col(column)
    lf = run.scores.filter(c.is_not_null() & c.cast(pl.Float64).is_finite())
    st = lf.select(c.quantile(clip).alias("lo"), c.quantile(1 - clip).alias("hi"), c.min().alias("mn"),
                   c.max().alias("mx"), (c == c.floor()).all().alias("whole")).collect().row(0, named=True)
    if st["lo"] is None:
        return {"lo": None, "hi": None, "bins": 0, "below": 0, "above": 0}
    lo, hi = float(st["lo"]), float(st["hi"])
    if st["mn"] >= 0 and st["mx"] <= 1:  # a share or a probability: bins of 1/40 on its own scale
        lo, hi = math.floor(lo * 40) / 40, math.ceil(hi * 40) / 40
        hi = max(hi, lo + 1 / 40)
        n = round((hi - lo) * 40)
    elif st["whole"] and hi - lo <= 2 * bins:  # whole numbers (words, characters): one bin each
        lo, hi = lo - 0.5, hi + 0.5
        n = int(hi - lo)
    elif hi > lo:
        n = bins
    else:
        lo, hi, n = lo - 0.5, lo + 0.5, 1
    below, above = lf.select((c < lo).sum().alias("b"), (c > hi).sum().alias("a")).collect().row(0)
    return {"lo": lo, "hi": hi, "bins": n, "below": int(below), "above": int(above)}


def histograms(run: Run, column: str, axis: dict | None = None) -> pl.DataFrame:
    """Counts of ``column`` per source (:func:`source_groups`) in the bins of ``axis``
    (default: :func:`score_axis`); rows outside the axis are left out."""
    axis = axis or score_axis(run, column)
    empty = pl.DataFrame(schema={"source": pl.String, "bin_lo": pl.Float64, "bin_hi": pl.Float64, "rows": pl.UInt32})
    if axis["lo"] is None:
        return empty
    lo, hi, n = axis["lo"], axis["hi"], axis["bins"]
    width = (hi - lo) / n
    c = pl.col(column)
    b = ((c - lo) / width).floor().clip(0, n - 1).cast(pl.Int64)
    out = (run.scores.filter(c.is_not_null() & (c >= lo) & (c <= hi))
           .with_columns(source_groups(run).alias("source"))
           .group_by("source", b.alias("bin")).agg(pl.len().alias("rows")).collect())
    return out.with_columns(
        (lo + pl.col("bin") * width).alias("bin_lo"), (lo + (pl.col("bin") + 1) * width).alias("bin_hi"),
    ).select("source", "bin_lo", "bin_hi", "rows").sort("source", "bin_lo")


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
    score's quantiles from 0.5% to 99.5%, so the curve covers the data's range and not its
    outliers. Every point is counted with the
    one decision rule (:func:`curate.scoring.decision.decision_exprs`): ``allow``/``deny``,
    external scores and empty captions count exactly as ``curate decide`` counts them.
    """
    chain = run.chain
    steps = {s.id: s for s in chain.steps}
    if step_id not in steps:
        raise CurateError(f"no filter {step_id!r} in the run's chain; filters: {', '.join(steps)}")
    step = steps[step_id]
    bound = "min" if step.min is not None or step.max is None else "max"
    qs = [0.005 + 0.99 * i / (points - 1) for i in range(points)]
    lf = run.scores
    thr = lf.select([pl.col(step.column).quantile(q).alias(str(i)) for i, q in enumerate(qs)]).collect().row(0)
    thresholds = sorted({float(t) for t in thr if t is not None})
    exprs = []
    for i, t in enumerate(thresholds):
        moved = replace(chain, steps=[replace(s, **{bound: t}) if s.id == step_id else s for s in chain.steps])
        keep = decision_exprs(moved)[1]
        exprs.append(keep.sum().alias(str(i)))
    row = lf.select(exprs).collect().row(0) if exprs else ()
    total = lf.select(pl.len()).collect().item()
    current = step.min if bound == "min" else step.max
    return pl.DataFrame({
        "filter": [step_id] * len(thresholds), "bound": [bound] * len(thresholds),
        "threshold": thresholds, "kept": [int(x) for x in row],
        "kept_share": [int(x) / max(total, 1) for x in row],
        "current": [current] * len(thresholds),
    })


def sample_key(seed: int = 0) -> pl.Expr:
    """A fixed multiplicative hash of sample_id (wrapping UInt64 arithmetic): a deterministic
    sample order, stable across library versions, unlike ``Expr.hash``."""
    return (pl.col("sample_id").cast(pl.UInt64) ^ pl.lit(seed + KEY_SEED, pl.UInt64)) * pl.lit(GOLDEN, pl.UInt64)


def rejected_examples(run: Run, per_reason: int = 5, seed: int = 0) -> pl.DataFrame:
    """A deterministic sample of dropped captions for each reason (hash of sample_id, seed)."""
    cols = ["reason", "sample_id", "source", "row", "caption"] + run.score_columns
    return (
        run.scores.filter(pl.col("reason").is_not_null())
        .with_columns(sample_key(seed).alias("_k"))
        .sort("reason", "_k")
        .group_by("reason", maintain_order=True).head(per_reason)
        .select([c for c in cols if c])
        .collect()
    )


def examples(run: Run, per_source: int = 4, seed: int = 0) -> pl.DataFrame:
    """Kept and dropped captions of every source (:func:`source_groups`): a deterministic
    sample of each, with the reason of the dropped ones."""
    text = "caption_clean" if "caption_clean" in run.scores.collect_schema().names() else "caption"
    return (
        run.scores.with_columns(source_groups(run).alias("source"), sample_key(seed).alias("_k"))
        .sort("source", "keep", "_k", descending=[False, True, False])
        .group_by("source", "keep", maintain_order=True).head(per_source)
        .select("source", "keep", pl.col("reason").fill_null(""), pl.col(text).alias("caption"))
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


def mix_examples(mix: Mix, per_run: int = 4, seed: int = 0) -> pl.DataFrame:
    """A deterministic sample of the captions the mixture selected, per source run."""
    m = mix.manifest
    names = m.collect_schema().names()
    src = "run" if "run" in names else "source"
    text = "caption_clean" if "caption_clean" in names else "caption"
    cols = [src, text] + [c for c in ("quality", "repeat") if c in names]
    return (m.with_columns(sample_key(seed).alias("_k")).sort(src, "_k")
            .group_by(src, maintain_order=True).head(per_run).select(cols).collect())
