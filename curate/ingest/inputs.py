"""Which files a run reads: inputs as given (files, folders, globs), their formats and columns.

Inputs are Parquet (a file, a folder or a glob), JSONL or CSV/TSV (plain or compressed:
``.gz``, ``.zst``, ``.bz2``), WebDataset ``.tar`` shards and Arrow IPC / Feather files (a
Hugging Face ``save_to_disk`` folder holds ``.arrow`` files). Nothing here reads rows;
:mod:`curate.ingest.readers` streams them and :mod:`curate.ingest.provenance` gives each
row its ``sample_id``, ``source`` and ``row``.
"""
from __future__ import annotations

import glob as globmod
import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from curate.errors import CurateError, first_line
from curate.ingest import arrow as arrow_ipc
from curate.ingest import compressed
from curate.ingest import webdataset as wds
from curate.ingest.text import lone_surrogates_replaced
from curate.layout import HF_STATE

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tar": "webdataset",
    ".arrow": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}
#: Text formats that may be compressed (``captions.jsonl.gz``).
TEXT_FORMATS = ("jsonl", "csv", "tsv")
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
    compression: str = ""  # gzip, zstd or bz2 for a compressed text file
    names: tuple[str, ...] = ()  # CSV/TSV without a header row: the columns' names, in order
    dtypes: dict[str, str] = field(default_factory=dict)  # column -> type the format declares
    keep_types: dict[str, str] = field(default_factory=dict)  # carried column -> type it keeps
    carry_names: dict[str, str] = field(default_factory=dict)  # carried column -> this file's column

    def describe(self) -> dict:
        d = {
            "source": self.path,
            "format": self.format,
            "bytes": self.size,
            "blake2b": self.fingerprint,
        }
        if self.compression:
            d["compression"] = self.compression
        return d


def _suffixes(path: str) -> tuple[str, str]:
    """(format suffix, compression suffix): ``a.jsonl.gz`` -> (".jsonl", ".gz")."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext in compressed.COMPRESSIONS:
        return Path(p.stem).suffix.lower(), ext
    return ext, ""


def _format_of(path: str) -> tuple[str, str]:
    ext, comp = _suffixes(path)
    fmt = FORMATS.get(ext)
    if fmt is None or (comp and fmt not in TEXT_FORMATS):
        shown = ext + comp
        raise CurateError(
            f"{path}: unsupported input type {shown or '(no extension)'!r}; "
            f"use one of {', '.join(sorted(FORMATS))} (.jsonl, .ndjson, .csv and .tsv also as "
            f"{', '.join(compressed.COMPRESSIONS)})"
        )
    return fmt, compressed.COMPRESSIONS.get(comp, "")


def _is_input(path: Path) -> bool:
    """A file that a folder or glob contributes: a supported type, not hidden."""
    ext, comp = _suffixes(str(path))
    ok = ext in FORMATS and (not comp or FORMATS[ext] in TEXT_FORMATS)
    return ok and not path.name.startswith(".")


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
    check_hf_folders(seen.values())
    out = []
    for p in seen.values():
        st = os.stat(p)
        fmt, comp = _format_of(p)
        out.append(InputFile(p, fmt, st.st_size, st.st_mtime_ns, compression=comp))
    return out


def check_hf_folders(paths) -> None:
    """A Hugging Face ``save_to_disk`` folder (``state.json`` beside ``.arrow`` files) must
    hold every file its ``state.json`` lists: a missing shard is an error, not fewer rows."""
    import json

    for folder in sorted({os.path.dirname(p) for p in paths if p.endswith(arrow_ipc.ARROW_EXTS)}):
        state = Path(folder or ".") / HF_STATE
        if not state.is_file():
            continue
        try:
            listed = [d["filename"] for d in json.loads(state.read_text()).get("_data_files", [])]
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise CurateError(f"{state}: not a readable Hugging Face dataset state ({first_line(e)})") from None
        missing = [f for f in listed if not (state.parent / f).is_file()]
        if missing:
            raise CurateError(
                f"{state.parent}: {missing[0]} is missing ({len(missing)} of the {len(listed)} files "
                "its state.json lists); restore it, or save the dataset again"
            )


def parquet_file(inp: InputFile) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(inp.path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise CurateError(f"{inp.path}: not a readable Parquet file ({first_line(e)})") from None


def inspect_input(inp: InputFile, names: tuple[str, ...] | list[str] = ()) -> None:
    """Read the input's column names (and check it opens) without reading its rows.

    ``names``: the columns of a CSV/TSV file without a header row, in order."""
    if inp.format in ("csv", "tsv") and names:
        if len(set(names)) != len(names) or not all(names):
            raise CurateError(f"--columns {','.join(names)}: names must be distinct and not empty")
        inp.names = tuple(names)
    if inp.format == "parquet":
        sch = parquet_file(inp).schema_arrow
        inp.columns = list(sch.names)
        inp.dtypes = {f.name: str(pl.from_arrow(sch.empty_table()).schema[f.name]) for f in sch}
    elif inp.format == "arrow":
        sch = arrow_ipc.schema(inp.path)
        inp.columns = list(sch.names)
        inp.dtypes = {k: str(v) for k, v in pl.from_arrow(sch.empty_table()).schema.items()}
    elif inp.format == "webdataset":
        try:
            inp.columns, inp.empty, inp.dtypes = wds.inspect(inp.path)
        except CurateError as e:
            raise CurateError(f"{inp.path}: {e}") from None
    elif inp.format == "jsonl":
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
    elif inp.compression:
        sep = "\t" if inp.format == "tsv" else ","
        inp.columns = compressed.csv_columns(inp.path, inp.compression, sep, list(inp.names) or None)
        inp.empty = not inp.columns
    else:
        sep = "\t" if inp.format == "tsv" else ","
        try:
            opts = compressed.csv_options(sep, list(inp.names) or None)
            inp.columns = pl.scan_csv(inp.path, **opts).collect_schema().names()
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



def check_columns(inp: InputFile, caption: str, id_column: str | None) -> None:
    """The caption (and id) column exists; a caption column the format declares as numbers
    or booleans (Parquet, Arrow) is refused: scored as text, it would be numbers in words."""
    if inp.empty:
        return  # an empty text file: zero rows
    for name, what in ((caption, "caption"), (id_column, "id")):
        if name is not None and name not in inp.columns:
            cols = ", ".join(inp.columns) or "(none)"
            raise CurateError(
                f"{inp.path}: no {what} column {name!r}; columns are: {cols}"
                + (" (choose one with --caption-column)" if what == "caption" else "")
            )
    declared = inp.dtypes.get(caption, "String")
    if declared.startswith(("Int", "UInt", "Float", "Decimal", "Boolean")):
        text = [c for c, t in inp.dtypes.items() if t in ("String", "Utf8", "LargeUtf8")]
        raise CurateError(f"{inp.path}: caption column {caption!r} holds {declared} values, not text; "
                          f"choose the caption column with --caption-column (text columns: {', '.join(text) or '(none)'})")
