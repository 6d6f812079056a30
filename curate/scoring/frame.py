"""Scoring one batch: clean the captions, normalise the text, run every filter, decide.

Scoring only adds columns (DESIGN conventions 2 and 16): ``caption_clean`` (the chain's
``[[clean]]`` transforms applied; the text the filters score and the trainer gets),
``clean_ops`` (the transforms that changed the row), the model-caption signals
(``signal__truncated``, ``signal__hedges``, ``signal__markdown``), ``lang``,
``score__<id>`` per filter and the filters' label columns. ``caption`` stays as read.
Nothing is dropped; ``keep`` and ``reason`` come from :func:`curate.scoring.decision.decision_exprs`.
"""
from __future__ import annotations

import polars as pl

from curate.clean import CLEAN, clean_captions
from curate.clean.signals import signals
from curate.scoring.chain import Chain
from curate.scoring.decision import decision_exprs
from curate.scoring.filters import TEXT

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


#: Rows that normalisation changes have one of these: white space other than a plain space,
#: a control/format character, or two spaces in a row (or a space at either end).
_UNNORMAL = r"[[\s\p{Cc}\p{Cf}\p{Zl}\p{Zp}]--[ ]]|  "


#: After the ``whitespace`` transform only these are left for normalisation to change.
_JOINERS = ["\u200c", "\u200d"]


def normalised(caption: pl.Series, after_whitespace: bool = False) -> pl.Series:
    """``normalise_text()`` of a column, computed only on the rows it changes (a few
    percent of real captions): the same result at a tenth of the cost.

    ``after_whitespace``: the column is the ``whitespace`` transform's output, in which only
    the zero-width (non-)joiners it keeps differ from normalised text."""
    text = caption.cast(pl.String).fill_null("")
    if after_whitespace:
        fix = text.str.contains_any(_JOINERS).arg_true()
    else:
        fix = (text.str.contains(_UNNORMAL) | text.str.starts_with(" ") | text.str.ends_with(" ")).arg_true()
    text = text.alias(TEXT)
    if len(fix) == 0:
        return text
    done = text.gather(fix).to_frame("caption").select(normalise_text()).to_series()
    return text.clone().scatter(fix, done)


def score_frame(batch: pl.DataFrame, chain: Chain) -> pl.DataFrame:
    """Score a frame with a ``caption`` column; returns it with ``caption_clean``,
    ``clean_ops``, the signals, scores, ``keep`` and ``reason``."""
    clean, ops = clean_captions(batch["caption"], chain.clean)
    df = batch.with_columns(clean, ops, *signals(clean))
    last_ws = bool(chain.clean) and chain.clean[-1].name == "whitespace"
    df = df.with_columns(normalised(df[CLEAN], after_whitespace=last_ws))
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
