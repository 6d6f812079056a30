"""DuckDB plumbing shared by the stages that query runs: connections, quoting, results.

The mixture's recipe SQL runs on a :func:`sandboxed` connection: it sees the run columns
and nothing else (DESIGN convention 15): files outside the runs, the network, extensions
and settings are closed. :mod:`curate.mix.guard` checks each expression before it runs.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import pyarrow as pa

from curate.errors import CurateError, first_line
from curate.storage.fs import is_url, protocol, query_filesystem

if TYPE_CHECKING:
    import duckdb


def sql_str(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def connect(threads: int | None = None, temp_dir: Path | None = None):
    import duckdb

    con = duckdb.connect(config={"preserve_insertion_order": True})
    try:
        con.execute("SET enable_progress_bar = false")
    except duckdb.Error:  # in a Jupyter kernel without ipywidgets DuckDB refuses the setting itself
        pass
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    if temp_dir is not None:
        con.execute(f"SET temp_directory = {sql_str(str(temp_dir))}")
    return con


def arrow_reader(con, sql: str, batch_rows: int) -> pa.RecordBatchReader:
    """A query's rows as a stream of Arrow batches (DuckDB 1.x and 2.x spell it apart)."""
    rel = con.sql(sql)
    if hasattr(rel, "to_arrow_reader"):
        return rel.to_arrow_reader(batch_rows)
    return rel.fetch_arrow_reader(batch_rows)


def first_row(con, sql: str, params: list | None = None) -> tuple | None:
    """The first row of a query (the result is read to its end: DuckDB 2 wants that)."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None


def arrow_table(con, sql: str) -> pa.Table:
    """A (small) query result as one Arrow table, on DuckDB 1.x and 2.x."""
    rel = con.sql(sql)
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):
        if hasattr(rel, name):
            return getattr(rel, name)()
    raise CurateError("this DuckDB cannot hand results to Arrow")  # pragma: no cover


def duck_error(e: Exception) -> str:
    """The first line of a DuckDB error, without its 'Binder Error:' prefix."""
    text = first_line(e)
    for prefix in ("Binder Error: ", "Parser Error: ", "Conversion Error: ", "Catalog Error: "):
        text = text.removeprefix(prefix)
    return text.rstrip("!")


# -- the sandbox: what recipe SQL may open ----------------------------------------------



def _sql_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(sql_str(i) for i in items) + "]"


def _split_allowed(allowed: Iterable[str | os.PathLike]) -> tuple[list[str], list[str]]:
    """Directories and single files.  A glob such as RUN/scores/part-*.parquet allows its
    (glob-free) parent folder; an existing file allows that file only."""
    dirs: list[str] = []
    files: list[str] = []
    for a in allowed:
        p = str(a)
        url = is_url(p)
        if any(ch in p for ch in "*?[{"):
            parts = p.split("/") if url else Path(p).parts
            i = next(i for i, part in enumerate(parts) if any(ch in part for ch in "*?[{"))
            p = "/".join(parts[:i]) if url else (str(Path(*parts[:i])) if i else ".")
            kind = dirs
        elif p.endswith(os.sep) or not url and os.path.isdir(p):
            kind = dirs
        else:
            kind = files
        if not url:
            p = os.path.realpath(p)  # DuckDB compares the real path (symlinks resolved)
        if kind is dirs:
            p = p.rstrip("/").rstrip(os.sep) + "/"  # DuckDB matches whole path components
        if p == os.sep:
            raise CurateError("refusing to allow the whole file system to recipe SQL")
        if p not in kind:
            kind.append(p)
    return dirs, files


def register_stores(con, paths: Iterable[str | os.PathLike]) -> None:
    """Let ``con`` read the URLs among ``paths`` through curate's file-system layer
    (DuckDB's ``register_filesystem`` with fsspec: no extension is downloaded)."""
    done = set()
    for p in paths:
        if is_url(p) and protocol(str(p)) not in done:
            done.add(protocol(str(p)))
            con.register_filesystem(query_filesystem(str(p)))


def lock_down(con: "duckdb.DuckDBPyConnection", allowed: Iterable[str | os.PathLike]) -> "duckdb.DuckDBPyConnection":
    """Lock an existing connection: from now on it opens only ``allowed`` (plus its
    temp_directory, which DuckDB always allows) and no SET can change that.

    Set threads, memory_limit, temp_directory etc. before calling: after it every setting
    is frozen.  Arrow tables registered before or after keep working (con.register reads
    Python memory, not files).  Views created before the lock over other files do NOT:
    DuckDB checks every file open at execution time.
    """
    dirs, files = _split_allowed(allowed)
    for stmt in (
        "SET autoinstall_known_extensions = false",
        "SET autoload_known_extensions = false",
        "SET allow_community_extensions = false",  # cannot be turned back on
        "SET allow_persistent_secrets = false",
        "SET python_enable_replacements = false",  # FROM some_python_variable
        f"SET allowed_directories = {_sql_list(dirs)}",
        f"SET allowed_paths = {_sql_list(files)}",
        "SET enable_external_access = false",  # after allowed_*: DuckDB refuses them later
        "SET lock_configuration = true",  # last: every SET/RESET/PRAGMA setting now fails
    ):
        con.execute(stmt)
    return con


def connect_sandboxed(
    allowed: list[str],
    threads: int | None = None,
    temp_dir: str | os.PathLike | None = None,
    memory_limit: int | None = None,
) -> "duckdb.DuckDBPyConnection":
    """An in-memory connection that can read ``allowed`` (folders, files or globs) and
    nothing else; :func:`connect` + :func:`lock_down`. ``memory_limit``: bytes of DuckDB's
    buffer pool (beyond it, DuckDB spills to ``temp_dir``)."""
    con = connect(threads, temp_dir)
    register_stores(con, allowed)
    if memory_limit:
        con.execute(f"SET memory_limit = '{int(memory_limit) // 2**20}MiB'")
    return lock_down(con, allowed)
