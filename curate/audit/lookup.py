"""Lookups shared by explain, verify and diff: rows by sample id, a mixture's recipe, and
the sandboxed connection that recipe SQL runs on.

Lookups push ``sample_id = X`` down into the Parquet scans; nothing is loaded whole.
"""
from __future__ import annotations

import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from curate.db import connect_sandboxed, sql_str
from curate.errors import CurateError
from curate.layout import MANIFEST, RECIPE, concepts_path, groups_path, scores_glob
from curate.mix.build import inspect_sources
from curate.mix.recipe import Recipe, load_recipe
from curate.mix.sql import RunSource
from curate.storage.fs import is_url, join

#: How many changed rows ``verify`` and ``diff`` list in full.
LIST_LIMIT = 1000


def parse_sample_id(text: str | int) -> int:
    try:
        v = int(str(text).strip(), 0)
    except ValueError:
        raise CurateError(f"sample id must be a whole number (as in the sample_id column), got {text!r}") from None
    if not 0 <= v < 2**64:
        raise CurateError(f"sample id {text!r} is out of range (0 to 2^64-1)")
    return v


def query_rows(con, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def lookup(con, glob: str, sid: int) -> list[dict]:
    return query_rows(con, f"SELECT * FROM read_parquet({sql_str(glob)}) WHERE sample_id = ?::UBIGINT", [sid])



def _recipe(path: Path) -> Recipe:
    """A mixture's resolved recipe, parsed and checked once per file and version of it
    (the sandbox and the lookups of one command both need it)."""
    st = path.stat()
    return _parsed(str(path), st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _parsed(path: str, mtime_ns: int, size: int) -> Recipe:
    return load_recipe(Path(path))


def mixture_recipe(mix: Path, con) -> tuple[Recipe, list[RunSource]]:
    recipe = _recipe(mix / RECIPE)
    return recipe, inspect_sources(recipe, con)



def sandboxed(mixes: list[Path] = (), runs: list[Path] = (), temp_dir: str | None = None,
              memory_limit: int | None = None):
    """A connection that may read these mixtures' manifests and the scores and groups of
    their sources and of ``runs``, and nothing else (recipe SQL runs on it); DuckDB holds
    ``memory_limit`` bytes at most and spills the rest to ``temp_dir``."""
    allowed = []
    for mix in mixes:
        allowed.append(mix / MANIFEST)
        if (mix / RECIPE).is_file():
            runs = [*runs, *(s.path for s in _recipe(mix / RECIPE).sources)]
    for run in runs:  # a run on a store: every version under its prefix (the pointer may move)
        allowed += [join(run, "")] if is_url(run) else [scores_glob(run), groups_path(run), concepts_path(run)]
    return connect_sandboxed(allowed, temp_dir=temp_dir, memory_limit=memory_limit)


@contextmanager
def spilled_connection(memory_limit: str | int | None = None, mixes: list[Path] | None = None):
    """A DuckDB connection for a command over whole manifests (verify, diff), that spills
    to a temporary folder (removed afterwards) beyond a share of ``memory_limit`` (default:
    half the machine's memory); sandboxed to ``mixes`` and their runs when given."""
    from curate.db import connect
    from curate.mix.bounded import DUCKDB_SHARE, default_memory, parse_size

    limit = int((parse_size(memory_limit) if memory_limit else default_memory()) * DUCKDB_SHARE)
    with tempfile.TemporaryDirectory(prefix="curate-spill-") as tmp:
        if mixes is None:
            con = connect(temp_dir=Path(tmp))
            con.execute(f"SET memory_limit = '{limit // 2**20}MiB'")
        else:
            con = sandboxed(mixes, temp_dir=tmp, memory_limit=limit)
        try:
            yield con
        finally:
            con.close()
