"""A run's statistics, computed from its tables at the end (DESIGN convention 9)."""
from __future__ import annotations

import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import Callable

import polars as pl

from curate.db import connect
from curate.layout import scores_glob
from curate.scoring.chain import Chain

QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
#: Openings: the first words of ``caption_clean``, lower case, punctuation dropped.
OPENING_WORDS = 3
TOP_OPENINGS = 5
#: A run where this share of captions opens with the same words has a template problem.
TEMPLATE_SHARE = 0.3


def _spilling(con, spill_root) -> str:
    spill = tempfile.mkdtemp(prefix=".spill-", dir=spill_root)
    con.execute(f"SET memory_limit = '512MB'; SET temp_directory = '{spill}'")
    return spill


#: a word of the openings: a letter, then letters, digits and apostrophes
OPENING_WORD = r"'\pL[\pL\pN''’]*'"
#: characters searched first for the opening words (a tenth of the cost of every word)
OPENING_PREFIX = 48


def openings_sql(source: str, column: str = "caption_clean") -> str:
    """DuckDB SQL for one row ``o`` per row of ``source`` (a table expression): the first
    :data:`OPENING_WORDS` words of ``column``, lower case, joined by spaces. The words are
    looked for in the first :data:`OPENING_PREFIX` characters (``h``); that gives the
    caption's own first words when the text is no longer, or when one more word starts
    inside them (the last word kept then ends before the cut); only other rows are searched
    whole."""
    whole = f"regexp_extract_all(c, {OPENING_WORD})"
    words = f"CASE WHEN len(h) > {OPENING_WORDS} OR length(c) <= {OPENING_PREFIX} THEN h ELSE {whole} END"
    return (f"SELECT lower(array_to_string(list_slice({words}, 1, {OPENING_WORDS}), ' ')) AS o FROM "
            f"(SELECT {column} AS c, regexp_extract_all(left({column}, {OPENING_PREFIX}), {OPENING_WORD}) AS h "
            f"FROM {source})")


def top_openings(run: str | os.PathLike, spill_root) -> list[tuple[str, int]]:
    """The :data:`TOP_OPENINGS` most common openings of ``caption_clean`` in a run's parts
    (see :func:`openings_sql`) and their rows: a GROUP BY, on a connection of its own (one
    thread), that spills beyond 512 MB, so memory stays bounded at any run size."""
    with closing(connect(threads=1)) as con:
        spill = _spilling(con, spill_root)
        try:
            return con.execute(
                f"SELECT o, count(*) AS n FROM ({openings_sql('read_parquet(?)')}) "
                f"WHERE o <> '' GROUP BY o ORDER BY n DESC, o LIMIT {TOP_OPENINGS}", [scores_glob(run)]).fetchall()
        finally:
            shutil.rmtree(spill, ignore_errors=True)


def cleaning_stats(con, run: str | os.PathLike, top: Callable[[], list[tuple[str, int]]]) -> dict:
    """Rows changed per transform, and the model-caption signals, from a run's parts.

    ``openings``: the most common first :data:`OPENING_WORDS` words of ``caption_clean``
    (lower case, non-letters dropped; ``top()`` gives them, as :func:`top_openings`, once
    this connection's counts are done) with their share of non-empty captions."""
    glob = scores_glob(run)
    rows, changed_any, truncated, hedging, markdown = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE len(clean_ops) > 0), "
        "count(*) FILTER (WHERE signal__truncated), count(*) FILTER (WHERE signal__hedges > 0), "
        "count(*) FILTER (WHERE signal__markdown) FROM read_parquet(?)", [glob]).fetchone()
    per = dict(con.execute(
        "SELECT op, count(*) FROM (SELECT unnest(clean_ops) AS op FROM read_parquet(?)) GROUP BY op", [glob]
    ).fetchall())
    nonempty = con.execute(
        r"SELECT count(*) FROM read_parquet(?) WHERE regexp_matches(caption_clean, '\pL')", [glob]
    ).fetchone()[0]
    share = (lambda n: round(n / rows, 4) if rows else 0.0)
    openings = [{"words": o, "rows": int(n), "share": round(n / nonempty, 4) if nonempty else 0.0} for o, n in top()]
    return {
        "cleaning": {"rows_changed": int(changed_any), "per_transform": {k: int(per.get(k, 0)) for k in sorted(per)}},
        "model_signals": {
            "truncated": share(truncated), "hedging": share(hedging), "markdown": share(markdown),
            "openings": openings,
            "template": bool(openings and openings[0]["share"] >= TEMPLATE_SHARE),
        },
    }


def _repeated_ids(con, run: str | os.PathLike, spill_root: str | os.PathLike) -> int:
    """Rows that repeat another row's sample_id (duplicate --id-column values). A query of
    its own that reads only sample_id (inside the quantiles' query the distinct set took
    2.5 times the memory), as a GROUP BY that DuckDB spills to a temporary folder beyond
    512 MB, so memory stays bounded at any run size."""
    spill = tempfile.mkdtemp(prefix=".spill-", dir=spill_root)
    try:
        con.execute(f"SET memory_limit = '512MB'; SET temp_directory = '{spill}'")
        n = con.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM read_parquet(?) "
            "GROUP BY sample_id HAVING count(*) > 1)", [scores_glob(run)]
        ).fetchone()[0]
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return int(n)


def _spilled_counts(run, names: list[str], ids_given: bool, spill_root) -> tuple[list, int]:
    """(:func:`top_openings`, repeated ids): the two GROUP BYs that spill, one after the other."""
    top = top_openings(run, spill_root) if "caption_clean" in names else []
    if not ids_given:
        return top, 0
    with closing(connect(threads=1)) as con:
        return top, _repeated_ids(con, run, spill_root)


def _quantiles(con, run, cols: list[str]) -> dict:
    """:data:`QUANTILES` of each score column: DuckDB's t-digest (memory stays flat at any
    run size; exact quantiles would hold every score of the run in memory)."""
    if not cols:
        return {}
    sel = ", ".join(f'approx_quantile("{c}", [{", ".join(map(str, QUANTILES))}])' for c in cols)
    row = con.execute(f"SELECT {sel} FROM read_parquet(?)", [scores_glob(run)]).fetchone()
    return {c: {str(q): (None if v is None else round(float(v), 4))
                for q, v in zip(QUANTILES, values or [None] * len(QUANTILES))} for c, values in zip(cols, row)}


def run_stats(run: str | os.PathLike, chain: Chain, ids_given: bool = False,
              spill_root: str | os.PathLike | None = None) -> dict:
    """Counts per reason and score quantiles of the parts under ``run`` (a run folder or one
    of its versions).

    ``ids_given``: the ids come from an input column, so rows may repeat one; derived ids
    (source and row) are unique by construction and are not counted again."""
    lf = pl.scan_parquet(scores_glob(run))
    counts = lf.group_by("reason").agg(pl.len().alias("n")).collect()
    by_reason = {r: int(n) for r, n in counts.iter_rows() if r is not None}  # one row per reason
    rows = int(counts["n"].sum())
    kept = rows - sum(by_reason.values())
    ordered = {s: by_reason[s] for s in ["empty"] + [st.id for st in chain.steps] if s in by_reason}
    ordered.update({k: v for k, v in by_reason.items() if k not in ordered})
    names = lf.collect_schema().names()
    cols = [c for c in chain.score_columns if c in names]
    # two connections of one thread each, side by side: the GROUP BYs that may spill (the
    # openings, repeated ids) in one, the counts and the quantiles' digest in the other (one
    # thread: the digest, and so run.json, is deterministic)
    with ThreadPoolExecutor(1) as ex, closing(connect(threads=1)) as con:
        spilled = ex.submit(_spilled_counts, run, names, ids_given, spill_root or run)
        quant = _quantiles(con, run, cols)
        # a run scored before the clean stage existed has no caption_clean
        cleaning = cleaning_stats(con, run, lambda: spilled.result()[0]) if "caption_clean" in names else {}
        duplicates = spilled.result()[1]
    langs = (lf.group_by("lang").agg(pl.len().alias("n"))  # ties by name: the same 20 on any engine
             .sort(["n", "lang"], descending=[True, False], nulls_last=True).head(20).collect())
    return {
        "rows": rows,
        "kept": kept,
        "dropped": ordered,
        "quantiles": quant,
        "languages": {str(k): int(v) for k, v in langs.iter_rows()},  # the 20 largest
        "duplicate_sample_ids": int(duplicates),
        **cleaning,
    }
