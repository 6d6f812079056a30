"""Proposed speed-ups of curate's filters, applied by monkeypatching, to measure them.

Temporary: each function here re-implements one ``score`` (or part of one) of the package
as it stood when measured, with the same output, faster. Once the package adopts a change,
delete its patch. ``profile_score.py --patch NAME`` and ``bench_score.py --patch NAME`` use
them (the latter through ``patched_cli.py``, which applies them in the worker processes too).

Each patch is checked (``profile_score.py``) to leave the scored output unchanged.
"""
from __future__ import annotations

import numpy as np
import polars as pl


def lid_skip_script() -> None:
    """language: ask fastText only about the rows whose label or score the model decides.

    Where the script rules settle both ``lang`` and ``score`` (kana, Hangul, mostly-Han
    text, empty text), the model's answer is discarded; skipping those rows saves their share
    of the fastText call, the largest single cost of the chain."""
    from curate.filters import language as LG

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        model = LG.load_fasttext(self.model_path())
        text = batch[LG.TEXT].fill_null("").str.slice(0, LG.LID_CHARS)
        t = pl.col("t")
        east = pl.when(t.str.contains(LG._EAST_ASIAN)).then(t)
        probe = pl.DataFrame({"t": text}).select(
            cjk=east.str.count_matches(LG._CJK).fill_null(0).cast(pl.Float64) / 2,
            hangul=east.str.count_matches(r"\p{Hangul}+").fill_null(0).cast(pl.Float64),
            other=east.str.count_matches(LG._OTHER_WORD).fill_null(0).cast(pl.Float64),
            kana=east.str.contains(LG._KANA).fill_null(False),
            empty=t.str.strip_chars() == "",
        )
        words = pl.col("cjk") + pl.col("hangul") + pl.col("other")
        share = pl.when(words > 0).then(pl.col("cjk") / words).otherwise(0.0)
        settled = probe.select(
            pl.col("empty") | pl.col("kana") | (pl.col("hangul") > 0) | (share >= 0.5)
        ).to_series()
        need = (~settled).arg_true()
        sub = text.gather(need)
        lines = (sub.str.to_lowercase().str.replace_all("\n", " ", literal=True) + "\n").to_list()
        lab_n, p_n = LG.predict_top1(model, lines)
        lab = pl.Series("lab", [None] * len(text), dtype=pl.String).scatter(need, lab_n)
        p = pl.Series("p", np.zeros(len(text))).scatter(need, p_n)
        out = LG._decide(pl.DataFrame({"t": text, "lab": lab, "p": p}))
        return out.rename({"score": column})

    LG.Language.score = score


def specificity_table_cache() -> None:
    """specificity: keep each language's keyed word table in an Arrow IPC file (here under
    bench-out/, in the package a user cache folder named by the wordfreq version), so that a
    worker reads it in milliseconds instead of rebuilding it from wordfreq (about 4.5 CPU-s
    per worker for the ~40 lists a web batch touches, in every worker of every run)."""
    import os
    from pathlib import Path

    from curate.filters import specificity as SP

    folder = Path(__file__).resolve().parent.parent / "bench-out" / "spec-cache"
    for name in ("_keyed", "_han_keyed"):
        build = getattr(SP, name).__wrapped__

        def cached(lang: str, _build=build, _name=name) -> pl.DataFrame:
            path = folder / f"{_name}-{SP.Specificity.version}-{lang}.arrow"
            if path.exists():
                return pl.read_ipc(path)
            table = _build(lang)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            table.write_ipc(tmp)
            os.replace(tmp, path)
            return table

        from functools import lru_cache

        setattr(SP, name, lru_cache(maxsize=None)(cached))


def dedup_batch() -> None:
    """score_frame: score each distinct normalised caption once per batch, then join the
    scores back to every row (scores depend only on the text, so this changes nothing).
    The gain is the batch's duplicate rate: web alt-text repeats a lot; the benchmark input
    (N draws from ~35k real captions) repeats far more than real data, so do not read its
    gain as typical."""
    from curate import scoring as S
    from curate.chain import decision_exprs
    from curate.filters import TEXT

    original = S.score_frame

    def score_frame(batch: pl.DataFrame, chain) -> pl.DataFrame:
        norm = batch.with_columns(S.normalise_text())
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
    "lid-skip": lid_skip_script,
    "spec-cache": specificity_table_cache,
    "dedup": dedup_batch,
}


def apply(names: list[str]) -> None:
    for name in names:
        if name == "all":
            for fn in PATCHES.values():
                fn()
        else:
            PATCHES[name]()
