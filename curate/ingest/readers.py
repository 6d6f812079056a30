"""Reading caption inputs as a stream of batches: ``caption`` (+ ``id``, + carried columns).

Files are read in batches, so memory does not grow with the size of the corpus. Bad bytes
and lone surrogates become U+FFFD (the junk filter's ``encoding`` kind), never an error.
"""
from __future__ import annotations

import io
from typing import Iterator

import polars as pl

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


