"""Reading caption inputs as a stream of Arrow batches with provenance.

Inputs are Parquet (a file, a folder or a glob), JSONL or CSV/TSV. Every row gets
``sample_id`` (stable across reruns), ``source`` (the input file as given, normalised) and
``row`` (0-based index within that file). Files are read in batches, so memory does not
grow with the size of the corpus.
"""
from __future__ import annotations

import glob as globmod
import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import CurateError, first_line

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
}
#: Extra input columns carried into every output table when present (a trainer needs them
#: to find the image); more can be named with ``carry``.
AUTO_CARRY = ("url", "image_url", "image_path", "image_id", "key")
JSONL_CHUNK_BYTES = 32 << 20
BOM = b"\xef\xbb\xbf"


@dataclass
class InputFile:
    path: str  # as given, normalised; this is the ``source`` column
    format: str
    size: int
    mtime_ns: int
    fingerprint: str = ""
    columns: list[str] = field(default_factory=list)
    empty: bool = False  # a text file with nothing but white space: zero rows

    def describe(self) -> dict:
        return {
            "source": self.path,
            "format": self.format,
            "bytes": self.size,
            "blake2b": self.fingerprint,
        }


def file_fingerprint(path: str | os.PathLike) -> str:
    """blake2b-128 of the file's bytes, read in 4 MiB blocks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_toml(path: Path, what: str) -> dict:
    """A TOML file (a chain, a recipe) as a dict; unreadable or invalid TOML is a one-line error."""
    import tomllib

    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise CurateError(f"{path}: invalid TOML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CurateError(f"{path}: cannot read {what} ({e})") from None


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes (model files, export shards), read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return h.hexdigest()


def exact_tables(batches, size: int, schema: pa.Schema | None = None) -> Iterator[pa.Table]:
    """Re-cut a stream of Arrow record batches into tables of exactly ``size`` rows (the
    last may be shorter): fixed-size shards and row groups."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for b in batches:
        pending.append(b)
        held += b.num_rows
        while held >= size:
            t = pa.Table.from_batches(pending, schema)
            yield t.slice(0, size)
            rest = t.slice(size)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending, schema)


def _format_of(path: str) -> str:
    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise CurateError(
            f"{path}: unsupported input type {ext or '(no extension)'!r}; "
            f"use one of {', '.join(sorted(FORMATS))}"
        )
    return FORMATS[ext]


def _is_input(path: Path) -> bool:
    """A file that a folder or glob contributes: a supported type, not hidden."""
    return path.suffix.lower() in FORMATS and not path.name.startswith(".")


def resolve_inputs(specs: list[str]) -> list[InputFile]:
    """Expand files, folders and globs into a sorted, de-duplicated list of input files."""
    if not specs:
        raise CurateError("no inputs given")
    paths: list[str] = []
    for spec in specs:
        if any(ch in spec for ch in "*?["):
            matched = sorted(p for p in globmod.glob(spec, recursive=True) if os.path.isfile(p))
            if not matched:
                raise CurateError(f"no files match {spec!r}")
            # like a folder, a glob reads the input files it matches (`data/*` skips a README)
            found = [p for p in matched if _is_input(Path(p))]
            if not found:
                raise CurateError(
                    f"{spec!r} matches no input files ({', '.join(sorted(FORMATS))}), "
                    f"only e.g. {matched[0]!r}"
                )
            paths += found
        elif os.path.isdir(spec):
            found = sorted(str(p) for p in Path(spec).rglob("*") if p.is_file() and _is_input(p))
            if not found:
                raise CurateError(
                    f"folder {spec!r} holds no input files ({', '.join(sorted(FORMATS))})"
                )
            paths += found
        elif os.path.isfile(spec):
            paths.append(spec)
        else:
            raise CurateError(f"input {spec!r} does not exist")
    seen: dict[str, str] = {}  # one file named two ways (relative and absolute) is read once
    for p in paths:
        seen.setdefault(os.path.realpath(p), os.path.normpath(p))
    out = []
    for p in seen.values():
        st = os.stat(p)
        out.append(InputFile(p, _format_of(p), st.st_size, st.st_mtime_ns))
    return out


def _parquet_file(inp: InputFile) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(inp.path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise CurateError(f"{inp.path}: not a readable Parquet file ({first_line(e)})") from None


def inspect_input(inp: InputFile) -> None:
    """Read the input's column names (and check it opens) without reading its rows."""
    if inp.format == "parquet":
        inp.columns = list(_parquet_file(inp).schema_arrow.names)
    elif inp.format == "jsonl":
        with open(inp.path, "rb") as f:
            head = f.read(1 << 20).removeprefix(BOM)
        head_lines = head.split(b"\n")[:-1 if len(head) == (1 << 20) else None][:5000]
        lines = [ln for ln in head_lines if ln.strip()]
        if not lines:
            inp.columns, inp.empty = [], not head.strip()
            return
        try:
            df = pl.read_ndjson(io.BytesIO(b"\n".join(lines[:1000]).decode("utf-8", "replace").encode()))
        except Exception as e:
            text = [ln.decode("utf-8", "replace") for ln in head_lines]
            raise CurateError(f"{inp.path}: {_json_error(text, 0, e)}") from None
        inp.columns = df.columns
    else:
        sep = "\t" if inp.format == "tsv" else ","
        try:
            lf = pl.scan_csv(inp.path, separator=sep, infer_schema=False, encoding="utf8-lossy")
            inp.columns = lf.collect_schema().names()
        except pl.exceptions.NoDataError:
            inp.columns, inp.empty = [], True
        except Exception as e:
            raise CurateError(f"{inp.path}: not a readable CSV file ({first_line(e)})") from None


def _json_error(lines: list[str], first_line: int, e: BaseException) -> str:
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
            return f"line {first_line + i + 1} is not valid JSON ({why})"
    return f"invalid JSON lines near line {first_line + 1} ({first_line(e)})"


def check_columns(inp: InputFile, caption: str, id_column: str | None) -> None:
    if inp.empty:
        return  # an empty text file: zero rows
    for name, what in ((caption, "caption"), (id_column, "id")):
        if name is not None and name not in inp.columns:
            cols = ", ".join(inp.columns) or "(none)"
            raise CurateError(
                f"{inp.path}: no {what} column {name!r}; columns are: {cols}"
                + (" (choose one with --caption-column)" if what == "caption" else "")
            )


def _to_text(s: pl.Series, what: str = "caption") -> pl.Series:
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
        pf = _parquet_file(inp)
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
            text = data.decode("utf-8", "replace").replace("\r\n", "\n")
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
                raise CurateError(f"{inp.path}: {_json_error(lines, line_no, e)}") from None
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
    out = {"caption": _to_text(df[caption])}
    if id_column:
        out["id"] = _to_text(df[id_column], "id")
    for c in df.columns:
        if c not in (caption, id_column):
            out[c] = _carried(df[c])
    return pl.DataFrame(out)


_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fixed, documented 64-bit mix (stable across library versions)."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        x ^= x >> np.uint64(31)
    return x


def key64(text: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little"))


def derived_ids(source: str, start_row: int, n: int) -> np.ndarray:
    """sample_id = splitmix64(blake2b64(source) + row): stable for the same file name and row."""
    base = key64(source)
    with np.errstate(over="ignore"):
        rows = np.arange(start_row, start_row + n, dtype=np.uint64) + base
    return splitmix64(rows)


def text_hash64(s: pl.Series) -> pl.Series:
    """Stable 64-bit hash of each string (lower 64 bits of MD5, computed by DuckDB).

    Used for ids taken from an id column and for content hashes. MD5 is fixed by its
    standard, so the value does not change with library versions.
    """
    import duckdb

    con = duckdb.connect()
    tbl = pa.table({"v": s.cast(pl.String).to_arrow()})
    con.register("t", tbl)
    rel = con.sql("SELECT md5_number_lower(v) AS h FROM t")
    # DuckDB 2 renamed the relation's arrow() to to_arrow_table().
    res = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    con.close()
    return pl.Series(s.name, res.column("h"), dtype=pl.UInt64)
