"""Scoring one batch: normalise the text, run every filter, decide.

Scoring only adds columns (DESIGN convention 2): ``lang``, ``score__<id>`` per filter and
the filters' label columns. Nothing is dropped; ``keep`` and ``reason`` come from
:func:`curate.chain.decision_exprs`.
"""
from __future__ import annotations

import polars as pl

from .chain import Chain, decision_exprs
from .filters import TEXT

#: Filters whose output other filters read run first (specificity reads ``lang``).
FIRST = ("language",)


def normalise_text() -> pl.Expr:
    """The text filters see: control and format characters become spaces, runs of white
    space collapse to one, ends are stripped. The stored ``caption`` is left as it was."""
    return (
        pl.col("caption").fill_null("")
        .str.replace_all(r"[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]", " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
        .alias(TEXT)
    )


def score_frame(batch: pl.DataFrame, chain: Chain) -> pl.DataFrame:
    """Score a frame with a ``caption`` column; returns it with scores, ``keep`` and ``reason``."""
    df = batch.with_columns(normalise_text())
    order = sorted(
        (s for s in chain.steps if not s.filter.external),
        key=lambda s: 0 if s.filter.name in FIRST else 1,
    )
    for step in order:
        df = df.with_columns(step.filter.score(df, step.column))
    if "lang" not in df.columns:
        df = df.with_columns(pl.lit(None, pl.String).alias("lang"))
    for step in chain.steps:
        if step.filter.external and step.column not in df.columns:
            df = df.with_columns(pl.lit(None, pl.Float64).alias(step.column))
    # lazily, so that each filter's pass/fail test is evaluated once for reason and keep
    df = df.drop(TEXT).lazy().with_columns(decision_exprs(chain)).collect()
    return df
