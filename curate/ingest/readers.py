"""Reading caption inputs as a stream of batches: ``caption`` (+ ``id``, + carried columns).

Files are read in batches, so memory does not grow with the size of the corpus. Bad bytes
and lone surrogates become U+FFFD (the junk filter's ``encoding`` kind), never an error.
"""
from __future__ import annotations

import io
from typing import Iterator

import polars as pl
import pyarrow as pa

from curate.errors import CurateError, first_line
from curate.ingest.inputs import BOM, InputFile, json_error, lone_surrogates_replaced, parquet_file

#: JSONL is read in blocks of this many bytes, cut at the last newline.
JSONL_CHUNK_BYTES = 32 << 20


def to_text(s: pl.Series, what: str = "caption") -> pl.Series:
    """Any caption (or id) column type as UTF-8 text; invalid bytes become U+FFFD."""
    if s.dtype == pl.String:
        return s
    if s.dtype == pl.Binary:
        # Arrow's binary->string cast rejects invalid UTF-8, so decode lossily via Python's
        # codec, one call for the whole column's buffer.
        return _decode_binary_lossy(s)
    if s.dtype.is_nested():
        raise CurateError(f"{what} column {s.name!r} holds {s.dtype} values, not text")
    return s.cast(pl.String)


def _carried(s: pl.Series) -> pl.Series:
    """A carried column that the outputs can hold as text (they cast it): bytes are decoded
    like a caption's, lists and structs become JSON text; other types are left as they are."""
    if s.dtype == pl.Binary:
        return _decode_binary_lossy(s)
    if not s.dtype.is_nested():
        return s
    if "Binary" in str(s.dtype):  # polars cannot write bytes inside a list or struct as JSON
        raise CurateError(f"carried column {s.name!r} holds {s.dtype} values, which have no text form")
    wrapped = pl.select(pl.struct(s.alias("v")).struct.json_encode()).to_series()  # {"v":...}
    text = wrapped.str.strip_prefix('{"v":').str.strip_suffix("}")
    return pl.select(pl.when(s.is_not_null()).then(text)).to_series().alias(s.name)


def _decode_binary_lossy(s: pl.Series) -> pl.Series:
    """Decode a binary column as UTF-8, replacing invalid bytes with U+FFFD.

    The values are joined with an ASCII separator, decoded by one codec call and split again,
    so there is no per-row Python work. (An ASCII byte is never swallowed by the replacement
    of an invalid sequence, so the split gives back exactly one piece per row.)
    """
    try:  # the common case: valid UTF-8 (polars raises on invalid bytes even when not strict)
        return s.cast(pl.String)
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError):
        pass
    sep = "\x00\x1f\x00"
    arr = s.fill_null(b"").to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_binary())
    lists = pa.LargeListArray.from_arrays(pa.array([0, len(arr)], pa.int64()), arr)
    import pyarrow.compute as pc

    joined = pc.binary_join(lists, pa.scalar(sep.encode(), pa.large_binary()))[0].as_py()
    if joined.count(sep.encode()) != len(arr) - 1:
        raise CurateError("caption column holds bytes that cannot be decoded as text")
    text = pl.Series(s.name, joined.decode("utf-8", "replace").split(sep), dtype=pl.String)
    return pl.select(pl.when(s.is_not_null()).then(text)).to_series().alias(s.name)


def read_batches(
    inp: InputFile, caption: str, id_column: str | None, carry: list[str], batch_rows: int,
    row_groups: list[int] | None = None,
) -> Iterator[pl.DataFrame]:
    """Yield DataFrames with ``caption`` (+ ``id``, + carried columns) of at most batch_rows.

    ``row_groups``: for Parquet, read only these row groups (the Ray engine's read tasks)."""
    try:
        yield from _read_batches(inp, caption, id_column, carry, batch_rows, row_groups)
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
    elif inp.format == "jsonl":
        yield from _read_jsonl(inp, cols, caption, id_column, batch_rows)
    else:
        if not inp.columns:
            return
        sep = "\t" if inp.format == "tsv" else ","
        try:
            lf = pl.scan_csv(
                inp.path, separator=sep, infer_schema=False, encoding="utf8-lossy",
                empty_string_is_null=False, quote_char=None if sep == "\t" else '"',
            ).select(cols)
            for df in lf.collect_batches(chunk_size=batch_rows):
                yield _shape(df, caption, id_column)
        except Exception as e:
            raise CurateError(f"{inp.path}: cannot read CSV ({first_line(e)})") from None


def _read_jsonl(inp, cols, caption, id_column, batch_rows) -> Iterator[pl.DataFrame]:
    if inp.empty:
        return
    pending: list[pl.DataFrame] = []
    pending_rows = 0
    line_no = 0
    with open(inp.path, "rb") as f:
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
            else:
                rest = b""
            # A chunk of blank lines still holds rows; only white space after the last
            # newline of the file is not a line.
            if not data or (not block and not data.strip()):
                continue
            # Blank lines would shift row numbers in some readers: treat them as rows with a
            # null caption so that ``row`` always equals the line's index.
            text = lone_surrogates_replaced(data.decode("utf-8", "replace").replace("\r\n", "\n"))
            lines = text.split("\n")
            if lines and lines[-1] == "":
                lines.pop()
            blank = pl.Series(lines).str.strip_chars() == ""
            filled = pl.Series(lines).zip_with(~blank, pl.Series(["{}"] * len(lines)))
            try:
                df = pl.read_ndjson(
                    io.BytesIO(("\n".join(filled.to_list()) + "\n").encode()),
                    infer_schema_length=None,
                )
            except Exception as e:
                raise CurateError(f"{inp.path}: {json_error(lines, line_no, e)}") from None
            line_no += len(lines)
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


def _shape(df: pl.DataFrame, caption: str, id_column: str | None) -> pl.DataFrame:
    out = {"caption": to_text(df[caption])}
    if id_column:
        out["id"] = to_text(df[id_column], "id")
    for c in df.columns:
        if c not in (caption, id_column):
            out[c] = _carried(df[c])
    return pl.DataFrame(out)


