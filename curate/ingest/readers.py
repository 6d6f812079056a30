"""Reading caption inputs as a stream of batches: ``caption`` (+ ``id``, + carried columns).

Files are read in batches, so memory does not grow with the size of the corpus. Bad bytes
and lone surrogates become U+FFFD (the junk filter's ``encoding`` kind), never an error.
"""
from __future__ import annotations

import io
import re
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from curate.errors import CurateError, first_line
from curate.ingest import arrow as arrow_ipc
from curate.ingest import compressed
from curate.ingest import webdataset as wds
from curate.ingest.inputs import BOM, InputFile, json_error, parquet_file
from curate.ingest.text import decode_binary_lossy, lone_surrogates_replaced, to_text
from curate.tables import exact_tables

#: JSONL is read in blocks of this many bytes, cut at the last newline.
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
    if inp.format == "parquet":
        pf = parquet_file(inp)
        try:
            for rb in pf.iter_batches(batch_size=batch_rows, columns=cols, row_groups=row_groups):
                yield _shape(pl.from_arrow(rb), caption, id_column)
        except CurateError:
            raise
        except Exception as e:
            raise CurateError(f"{inp.path}: damaged Parquet data ({first_line(e)})") from None
    elif inp.format == "arrow":
        for t in exact_tables(arrow_ipc.batches(inp.path, cols), batch_rows):
            yield _shape(pl.from_arrow(t), caption, id_column)
    elif inp.format == "webdataset":
        if inp.empty:
            return
        for df in wds.read(inp.path, cols, batch_rows):
            yield _shape(df, caption, id_column)
    elif inp.format == "jsonl":
        yield from _read_jsonl(inp, cols, caption, id_column, batch_rows)
    else:
        if not inp.columns:
            return
        sep = "\t" if inp.format == "tsv" else ","
        names = list(inp.names) or None
        # plain or compressed, one reader: lines bounded, ragged lines named
        for df in compressed.csv_batches(inp.path, inp.compression, sep, names, batch_rows):
            yield _shape(df.select(cols), caption, id_column)


def _read_jsonl(inp, cols, caption, id_column, batch_rows) -> Iterator[pl.DataFrame]:
    if inp.empty:
        return
    pending: list[pl.DataFrame] = []
    pending_rows = 0
    line_no = 0
    with compressed.open_text(inp.path, inp.compression) as f:
        rest = f.read(len(BOM))
        rest = b"" if rest == BOM else rest
        while True:
            block = f.read(JSONL_CHUNK_BYTES)
            if not block and not rest:
                break
            data = rest + block
            if block:
                cut = data.rfind(b"\n") + 1
                data, rest = data[:cut], data[cut:]
                compressed.check_line_length(inp.path, rest, line_no + data.count(b"\n") + 1)
            else:
                rest = b""
            # A chunk of blank lines still holds rows; only white space after the last
            # newline of the file is not a line.
            if not data or (not block and not data.strip()):
                continue
            try:
                df, n_lines = _read_ndjson(data)
            except Exception as e:
                lines = data.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
                raise CurateError(f"{inp.path}: {json_error(lines, line_no, e)}") from None
            if df.height != n_lines:
                raise CurateError(f"{inp.path}: {n_lines} lines near line {line_no + 1} gave {df.height} rows")
            line_no += n_lines
            for c in cols:
                if c not in df.columns:
                    df = df.with_columns(pl.lit(None, pl.String).alias(c))
            pending.append(df.select(cols))
            pending_rows += df.height
            while pending_rows >= batch_rows:
                allp = pl.concat(pending, how="diagonal_relaxed")
                yield _shape(allp.head(batch_rows), caption, id_column)
                tail = allp.slice(batch_rows)
                pending, pending_rows = [tail], tail.height
    if pending_rows:
        yield _shape(pl.concat(pending, how="diagonal_relaxed"), caption, id_column)


#: A JSON escape of a UTF-16 surrogate (``lone_surrogates_replaced`` is needed only then).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _json_lines(data: bytes, lossy: bool = False) -> tuple[bytes, int]:
    """A block of JSON lines (ending at a newline, or at the end of the file) made ready for
    polars, and its number of lines: lone surrogate escapes become ``\ufffd``, ``\r\n`` a
    newline, a blank line ``{}`` (a row with a null caption, so that ``row`` always equals
    the line's index) and, with ``lossy``, invalid UTF-8 U+FFFD (polars checks the bytes
    and refuses invalid UTF-8: :func:`_read_ndjson` then asks again with ``lossy``). Each step
    looks at the whole block at once and rewrites it only where the block needs it (valid
    lines without blank ones, the usual case, are passed on as they are)."""
    if lossy:
        data = data.decode("utf-8", "replace").encode()
    if (b"\\ud" in data or b"\\uD" in data) and _SURROGATE_ESCAPE.search(data):
        data = lone_surrogates_replaced(data.decode("utf-8", "replace")).encode()
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    arr = np.frombuffer(data, np.uint8)
    ends = np.flatnonzero(arr == 10)
    if not len(ends) or ends[-1] != len(data) - 1:
        ends = np.append(ends, len(data))
    n = len(ends)
    starts = np.concatenate([[0], ends[:-1] + 1])
    # a line is blank when empty or white space only: only lines that are empty or start with
    # white space are looked at (a JSON object starts with "{")
    maybe = (ends == starts) | np.isin(arr[np.minimum(starts, len(arr) - 1)], _SPACE)
    if not maybe.any():
        return data, n
    if not lossy:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return _json_lines(data, lossy=True)
    offsets = np.append(starts, len(data)).astype(np.int64)
    lines = pl.from_arrow(pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data)))
    blank = lines.str.strip_chars() == ""
    if not blank.any():
        return data, n
    filled = lines.str.strip_chars_end("\n").zip_with(~blank, pl.Series(["{}"] * n))
    return (filled.str.join("\n").item() + "\n").encode(), n


def _read_ndjson(data: bytes) -> tuple[pl.DataFrame, int]:
    """The rows of a block of JSON lines (see :func:`_json_lines`) and its number of lines."""
    ready, n = _json_lines(data)
    try:
        return pl.read_ndjson(io.BytesIO(ready), infer_schema_length=None), n
    except pl.exceptions.ComputeError as e:
        if "UTF-8" not in str(e):
            raise
    ready, n = _json_lines(data, lossy=True)
    return pl.read_ndjson(io.BytesIO(ready), infer_schema_length=None), n


#: the ASCII white space bytes a blank line may hold (and a line may start with)
_SPACE = np.frombuffer(b" \t\r\n\x0b\x0c", np.uint8)


def _shape(df: pl.DataFrame, caption: str, id_column: str | None) -> pl.DataFrame:
    out = {"caption": to_text(df[caption])}
    if id_column:
        out["id"] = to_text(df[id_column], "id")
    for c in df.columns:
        if c not in (caption, id_column):
            out[c] = _carried(df[c])
    return pl.DataFrame(out)


