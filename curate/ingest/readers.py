"""Reading caption inputs as a stream of batches: ``caption`` (+ ``id``, + carried columns).

Files are read in batches, so memory does not grow with the size of the corpus. Bad bytes
and lone surrogates become U+FFFD (the junk filter's ``encoding`` kind), never an error.
"""
from __future__ import annotations

from typing import Iterator

import polars as pl

from curate.errors import CurateError
from curate.ingest.formats import FORMATS, InputFile
from curate.ingest.text import decode_binary_lossy, to_text

#: Formats read in blocks (JSON lines) read this many bytes at a time, cut at the last newline.
JSONL_CHUNK_BYTES = 32 << 20


def _carried(s: pl.Series) -> pl.Series:
    """A carried column that the outputs can hold as text (they cast it): bytes are decoded
    like a caption's, lists and structs become JSON text; other types are left as they are."""
    if s.dtype == pl.Binary:
        return decode_binary_lossy(s)
    if not s.dtype.is_nested():
        return s
    if "Binary" in str(s.dtype):  # polars cannot write bytes inside a list or struct as JSON
        raise CurateError(f"carried column {s.name!r} holds {s.dtype} values, which have no text form")
    wrapped = pl.select(pl.struct(s.alias("v")).struct.json_encode()).to_series()  # {"v":...}
    text = wrapped.str.strip_prefix('{"v":').str.strip_suffix("}")
    return pl.select(pl.when(s.is_not_null()).then(text)).to_series().alias(s.name)


def read_batches(
    inp: InputFile, caption: str, id_column: str | None, carry: list[str], batch_rows: int,
    row_groups: list[int] | None = None,
) -> Iterator[pl.DataFrame]:
    """Yield DataFrames with ``caption`` (+ ``id``, + carried columns) of at most batch_rows.

    ``row_groups``: for Parquet, read only these row groups (the Ray engine's read tasks).
    A carried column is read under the file's name for it and named as in the run
    (``InputFile.carry_names``: ``URL`` is read and becomes ``url``)."""
    names = {c: c for c in carry}
    if inp.carry_names:
        names = {inp.carry_names[c]: c for c in carry if c in inp.carry_names}
    renamed = {k: v for k, v in names.items() if k != v}
    try:
        for b in _read_batches(inp, caption, id_column, list(names), batch_rows, row_groups):
            yield b.rename({k: v for k, v in renamed.items() if k in b.columns}) if renamed else b
    except CurateError as e:
        msg = str(e)
        raise CurateError(msg if msg.startswith(inp.path) else f"{inp.path}: {msg}") from None


def _read_batches(inp, caption, id_column, carry, batch_rows, row_groups=None) -> Iterator[pl.DataFrame]:
    cols = [caption] + ([id_column] if id_column else []) + [c for c in carry if c != caption]
    for df in FORMATS[inp.format].batches(inp, cols, batch_rows, row_groups, JSONL_CHUNK_BYTES):
        yield _shape(df, caption, id_column)


def _shape(df: pl.DataFrame, caption: str, id_column: str | None) -> pl.DataFrame:
    out = {"caption": to_text(df[caption])}
    if id_column:
        out["id"] = to_text(df[id_column], "id")
    for c in df.columns:
        if c not in (caption, id_column):
            out[c] = _carried(df[c])
    return pl.DataFrame(out)


