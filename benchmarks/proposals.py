"""Proposed speed-ups of curate's filters, applied by monkeypatching, to measure them.

Temporary: each function here re-implements one ``score`` (or part of one) of the package
as it stood when measured, with the same output, faster. Once the package adopts a change,
delete its patch. ``profile_score.py --patch NAME`` and ``bench_score.py --patch NAME`` use
them (the latter through ``patched_cli.py``, which applies them in the worker processes too).

Each patch is checked (``profile_score.py``) to leave the scored output unchanged.
"""
from __future__ import annotations

import polars as pl


def dedup_batch() -> None:
    """score_frame: score each distinct normalised caption once per batch, then join the
    scores back to every row (scores depend only on the text, so this changes nothing).
    The gain is the batch's duplicate rate: web alt-text repeats a lot; the benchmark input
    (N draws from ~35k real captions) repeats far more than real data, so do not read its
    gain as typical."""
    from curate.scoring import frame as S
    from curate.scoring.decision import decision_exprs
    from curate.scoring.filters import TEXT

    original = S.score_frame

    def score_frame(batch: pl.DataFrame, chain) -> pl.DataFrame:
        norm = batch.with_columns(S.normalised(batch["caption"]))
        uniq = norm.select(TEXT).unique(maintain_order=True)
        if uniq.height > 0.9 * norm.height:
            return original(batch, chain)
        df = uniq
        order = sorted((s for s in chain.steps if not s.filter.external),
                       key=lambda s: 0 if s.filter.name in S.FIRST else 1)
        for step in order:
            df = df.with_columns(step.filter.score(df, step.column))
        out = norm.join(df, on=TEXT, how="left", maintain_order="left", nulls_equal=True)
        if "lang" not in out.columns:
            out = out.with_columns(pl.lit(None, pl.String).alias("lang"))
        for step in chain.steps:
            if step.filter.external and step.column not in out.columns:
                out = out.with_columns(pl.lit(None, pl.Float64).alias(step.column))
        return out.drop(TEXT).with_columns(decision_exprs(chain))

    S.score_frame = score_frame


def lazy_cse() -> None:
    """Every eager ``DataFrame.select`` / ``with_columns`` runs as ``lazy()...collect()``.

    Eager calls run with no optimisations at all (``QueryOptFlags._eager()``), so with no
    common-subexpression elimination: a regex used by two output columns or two branches of
    a ``when/then`` chain runs twice. The lazy engine's CSE runs it once. In the package the
    change is local: ``frame.lazy().select(...).collect()`` where a filter builds one big
    expression (or materialise the shared columns first)."""
    select, with_columns = pl.DataFrame.select, pl.DataFrame.with_columns

    def lazy_select(self, *exprs, **named):
        return self.lazy().select(*exprs, **named).collect()

    def lazy_with_columns(self, *exprs, **named):
        return self.lazy().with_columns(*exprs, **named).collect()

    pl.DataFrame.select = lazy_select
    pl.DataFrame.with_columns = lazy_with_columns
    lazy_cse.originals = (select, with_columns)


PATCHES = {
    "lazy-cse": lazy_cse,
    "dedup": dedup_batch,
}


def apply(names: list[str]) -> None:
    for name in names:
        if name == "all":
            for fn in PATCHES.values():
                fn()
        else:
            PATCHES[name]()
