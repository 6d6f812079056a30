"""JSON lines inputs (``.jsonl``, ``.ndjson``), plain or compressed: one JSON object a line.

A file is read in blocks cut at the last newline; a blank line is a row with a null caption,
so ``row`` always equals the line's index; a line that is not a JSON object is named.
"""
from __future__ import annotations

import io
import re
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from curate.errors import CurateError, first_line
from curate.ingest import compressed
from curate.ingest.formats.base import BOM, InputFile, InputFormat, select_columns
from curate.ingest.text import lone_surrogates_replaced

#: The default read size of a block (the reader passes its own).
CHUNK_BYTES = 32 << 20


def inspect(inp: InputFile) -> None:
    head = compressed.first_lines(inp.path, inp.compression).removeprefix(BOM)
    head_lines = head.split(b"\n")[:5000]
    lines = [ln for ln in head_lines if ln.strip()]
    if not lines:
        inp.columns, inp.empty = [], not head.strip()
        return
    try:
        sample = lone_surrogates_replaced(b"\n".join(lines[:1000]).decode("utf-8", "replace"))
        df = pl.read_ndjson(io.BytesIO(sample.encode()))
    except Exception as e:
        text = [ln.decode("utf-8", "replace") for ln in head_lines]
        raise CurateError(f"{inp.path}: {json_error(text, 0, e)}") from None
    inp.columns = df.columns


def json_error(lines: list[str], start: int, e: BaseException) -> str:
    """Name the first line that is not a JSON object (only called once reading failed)."""
    import json

    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            ok = isinstance(json.loads(line), dict)
            why = "not a JSON object"
        except ValueError as err:
            ok, why = False, str(err)
        if not ok:
            return f"line {start + i + 1} is not valid JSON ({why})"
    return f"invalid JSON lines near line {start + 1} ({first_line(e)})"


def batches(inp: InputFile, cols: list[str], batch_rows: int, row_groups=None,
            block_bytes: int = CHUNK_BYTES) -> Iterator[pl.DataFrame]:
    if inp.empty:
        return
    pending: list[pl.DataFrame] = []
    pending_rows = 0
    line_no = 0
    with compressed.open_text(inp.path, inp.compression) as f:
        rest = f.read(len(BOM))
        rest = b"" if rest == BOM else rest
        while True:
            block = f.read(block_bytes)
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
            pending.append(select_columns(df, cols))
            pending_rows += df.height
            while pending_rows >= batch_rows:
                allp = pl.concat(pending, how="diagonal_relaxed")
                yield allp.head(batch_rows)
                tail = allp.slice(batch_rows)
                pending, pending_rows = [tail], tail.height
    if pending_rows:
        yield pl.concat(pending, how="diagonal_relaxed")


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


FORMAT = InputFormat("JSON lines", (".jsonl", ".ndjson"), inspect, batches, compressible=True,
                     noun="JSONL file")
