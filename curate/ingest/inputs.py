"""Which files a run reads: inputs as given (files, folders, globs), their formats and columns.

Inputs are Parquet (a file, a folder or a glob), JSONL or CSV/TSV. Nothing here reads rows;
:mod:`curate.ingest.readers` streams them and :mod:`curate.ingest.provenance` gives each
row its ``sample_id``, ``source`` and ``row``.
"""
from __future__ import annotations

import glob as globmod
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from curate.errors import CurateError, first_line

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


def parquet_file(inp: InputFile) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(inp.path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise CurateError(f"{inp.path}: not a readable Parquet file ({first_line(e)})") from None


def inspect_input(inp: InputFile) -> None:
    """Read the input's column names (and check it opens) without reading its rows."""
    if inp.format == "parquet":
        inp.columns = list(parquet_file(inp).schema_arrow.names)
    elif inp.format == "jsonl":
        with open(inp.path, "rb") as f:
            head = f.read(1 << 20).removeprefix(BOM)
        head_lines = head.split(b"\n")[:-1 if len(head) == (1 << 20) else None][:5000]
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
    else:
        sep = "\t" if inp.format == "tsv" else ","
        try:
            lf = pl.scan_csv(inp.path, separator=sep, infer_schema=False, encoding="utf8-lossy")
            inp.columns = lf.collect_schema().names()
        except pl.exceptions.NoDataError:
            inp.columns, inp.empty = [], True
        except Exception as e:
            raise CurateError(f"{inp.path}: not a readable CSV file ({first_line(e)})") from None


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



#: A JSON escape of a UTF-16 surrogate that is not half of a pair (``\udc80``, or
#: ``\ud800`` with no low half after it): JSON readers reject it or store U+0000.
_LONE_HIGH = re.compile(r"(?<!\\)((?:\\\\)*)\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
_LONE_LOW = re.compile(r"(?<!\\u[dD][89abAB][0-9a-fA-F]{2})(?<!\\)((?:\\\\)*)\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def lone_surrogates_replaced(text: str) -> str:
    """JSON text with every lone surrogate escape replaced by ``\ufffd`` (U+FFFD, which the
    junk filter reports as kind ``encoding``); pairs are left as they are. One regex pass
    over the whole chunk, only when it holds a surrogate escape at all."""
    if not _SURROGATE.search(text):
        return text
    text = _LONE_HIGH.sub(lambda m: m.group(1) + "\\ufffd", text)
    return _LONE_LOW.sub(lambda m: m.group(1) + "\\ufffd", text)


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

