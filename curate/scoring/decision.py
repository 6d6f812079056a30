"""The one decision rule (DESIGN convention 3), used by ``score``, ``decide``, ``explain``
and the mixture alike.

A row is kept when every filter's score lies ``within(score, min, max)`` and its label is
allowed; ``reason`` is the id of the first failing filter in chain order, or ``empty`` for a
caption that is null, empty or only white space. A missing (null) score fails, except for
an external filter (``neardup``, computed by ``curate dedup``): until that has run a row
has no such score and passes. NaN is a number to Polars (greater than any other), so the
same rule holds for it wherever it is evaluated.
"""
from __future__ import annotations

import polars as pl

from curate.errors import CurateError
from curate.scoring.chain import EMPTY, Chain, Step


def within(score: pl.Expr, lo: float | None, hi: float | None) -> pl.Expr:
    """The one decision rule: lo <= score <= hi; a missing score fails."""
    ok = score.is_not_null()
    if lo is not None:
        ok = ok & (score >= lo)
    if hi is not None:
        ok = ok & (score <= hi)
    return ok


def passes(step: Step) -> pl.Expr:
    """True where ``step`` passes a row (the rule in the module docstring)."""
    ok = within(pl.col(step.column), step.min, step.max)
    if step.filter.external:
        # computed by another command (neardup: `curate dedup`); until it has run, a row
        # has no such score and passes, so that `curate score` with this chain keeps rows
        ok = ok | pl.col(step.column).is_null()
    label = step.filter.label
    if step.allow is not None:
        ok = ok & pl.col(label).is_in(step.allow).fill_null(False)
    if step.deny is not None:
        ok = ok & ~pl.col(label).is_in(step.deny).fill_null(False)
    return ok


def is_empty_caption() -> pl.Expr:
    """Null, or nothing but white space and control/format characters (what normalisation
    turns into ""). A search for one other character stops at the first one."""
    return pl.col("caption").is_null() | ~pl.col("caption").str.contains(r"[^\s\p{Cc}\p{Cf}]")


def decision_exprs(chain: Chain) -> list[pl.Expr]:
    """``reason`` (first failing filter in chain order, ``empty``, or null) and ``keep``."""
    reason = pl.when(is_empty_caption()).then(pl.lit(EMPTY))
    for step in chain.steps:
        reason = reason.when(~passes(step)).then(pl.lit(step.id))
    reason = reason.otherwise(pl.lit(None, pl.String))
    return [reason.alias("reason"), reason.is_null().alias("keep")]


def decide(frame: pl.DataFrame | pl.LazyFrame, chain: Chain):
    """Add ``keep`` and ``reason`` to a frame of scores (cheap; no re-scoring)."""
    missing = [c for c in chain.score_columns if c not in frame.collect_schema().names()]
    if missing:
        raise CurateError(
            f"scores lack {', '.join(missing)}; score with a chain that has these filters first"
        )
    return frame.with_columns(decision_exprs(chain))


def step_outcomes(rows: pl.DataFrame, chain: Chain) -> pl.DataFrame:
    """Per row, ``pass__<id>`` for every step and ``empty``: the same expressions that
    decided it, for ``curate explain`` to show (columns a step needs and the rows lack
    count as null)."""
    need = {s.column for s in chain.steps} | {s.filter.label for s in chain.steps if s.filter.label}
    missing = [c for c in need if c not in rows.columns]
    rows = rows.with_columns([pl.lit(None).alias(c) for c in missing]) if missing else rows
    rows = rows.with_columns([pl.col(s.column).cast(pl.Float64) for s in chain.steps])
    return rows.select(
        is_empty_caption().alias("empty"),
        *[passes(s).alias(f"pass__{s.id}") for s in chain.steps],
    )
