"""Which files a run reads: inputs as given (files, folders, globs), their formats and columns.

Inputs are Parquet (a file, a folder or a glob), JSONL or CSV/TSV (plain or compressed:
``.gz``, ``.zst``, ``.bz2``), WebDataset ``.tar`` shards and Arrow IPC / Feather files (a
Hugging Face ``save_to_disk`` folder holds ``.arrow`` files). Nothing here reads rows;
:mod:`curate.ingest.readers` streams them and :mod:`curate.ingest.provenance` gives each
row its ``sample_id``, ``source`` and ``row``. A file's format is found by its suffix in
:data:`curate.ingest.formats.FORMATS`, which also holds each format's ``inspect`` hook.
"""
from __future__ import annotations

import glob as globmod
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from curate.errors import CurateError, first_line
from curate.hashing import input_fingerprints
from curate.ingest import arrow as arrow_ipc
from curate.ingest import compressed
from curate.ingest.formats import FORMATS, SUFFIXES, InputFile
from curate.layout import HF_STATE
from curate.storage import is_url, join
from curate.storage import listing as store
from curate.storage.listing import StoredObject, list_objects, pin


def _suffixes(path: str) -> tuple[str, str]:
    """(format suffix, compression suffix): ``a.jsonl.gz`` -> (".jsonl", ".gz")."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext in compressed.COMPRESSIONS:
        return Path(p.stem).suffix.lower(), ext
    return ext, ""


def _format_of(path: str) -> tuple[str, str]:
    ext, comp = _suffixes(path)
    fmt = SUFFIXES.get(ext)
    if fmt is None or (comp and not FORMATS[fmt].compressible):
        shown = ext + comp
        plain = [s for f in FORMATS.values() if f.compressible for s in f.suffixes]
        raise CurateError(
            f"{path}: unsupported input type {shown or '(no extension)'!r}; "
            f"use one of {', '.join(sorted(SUFFIXES))} ({', '.join(plain[:-1])} and {plain[-1]} also as "
            f"{', '.join(compressed.COMPRESSIONS)})"
        )
    return fmt, compressed.COMPRESSIONS.get(comp, "")


def _is_input(path: Path) -> bool:
    """A file that a folder or glob contributes: a supported type, not hidden."""
    ext, comp = _suffixes(str(path))
    ok = ext in SUFFIXES and (not comp or FORMATS[SUFFIXES[ext]].compressible)
    return ok and not path.name.startswith(".")


def resolve_inputs(specs: list[str]) -> list[InputFile]:
    """Expand files, folders and globs into a sorted, de-duplicated list of input files."""
    if not specs:
        raise CurateError("no inputs given")
    paths: list[str] = []
    stored: dict[str, StoredObject] = {}  # URL inputs: what their listing gave
    for spec in specs:
        if is_url(spec):
            objs = list_objects(spec)
            if len(objs) > 1 or objs[0].url.rstrip("/") != spec.rstrip("/"):  # a prefix or glob: its inputs
                objs = [o for o in objs if _is_input(Path(o.url))]
                if not objs:
                    raise CurateError(f"{spec!r} holds no input files ({', '.join(sorted(SUFFIXES))})")
            stored.update((o.url, o) for o in objs)
            paths += [o.url for o in objs]
        elif any(ch in spec for ch in "*?["):
            matched = sorted(p for p in globmod.glob(spec, recursive=True) if os.path.isfile(p))
            if not matched:
                raise CurateError(f"no files match {spec!r}")
            # like a folder, a glob reads the input files it matches (`data/*` skips a README)
            found = [p for p in matched if _is_input(Path(p))]
            if not found:
                raise CurateError(
                    f"{spec!r} matches no input files ({', '.join(sorted(SUFFIXES))}), "
                    f"only e.g. {matched[0]!r}"
                )
            paths += found
        elif os.path.isdir(spec):
            found = sorted(str(p) for p in Path(spec).rglob("*") if p.is_file() and _is_input(p))
            if not found:
                raise CurateError(
                    f"folder {spec!r} holds no input files ({', '.join(sorted(SUFFIXES))})"
                )
            paths += found
        elif os.path.isfile(spec):
            paths.append(spec)
        else:
            raise CurateError(f"input {spec!r} does not exist")
    seen: dict[str, str] = {}  # one file named two ways (relative and absolute) is read once
    for p in paths:
        seen.setdefault(p if p in stored else os.path.realpath(p), p if p in stored else os.path.normpath(p))
    check_hf_folders(seen.values())
    out = []
    for p in seen.values():
        fmt, comp = _format_of(p)
        if p in stored:
            o = stored[p]
            pin(o)
            out.append(InputFile(p, fmt, o.size, o.mtime_ns, compression=comp, etag=o.etag))
            continue
        st = os.stat(p)
        out.append(InputFile(p, fmt, st.st_size, st.st_mtime_ns, compression=comp))
    return out


def fingerprint_inputs(files: list[InputFile], stop: threading.Event | None = None) -> None:
    """Each local file's fingerprint (XXH3-128, several at once); an object in a store keeps
    its ETag as listed (hashing it would read it twice; the store's ETag changes with its bytes).
    ``stop``: see :func:`curate.hashing.input_fingerprints`."""
    local = [f for f in files if not is_url(f.path)]
    for f, fp in zip(local, input_fingerprints([f.path for f in local], stop)):
        f.fingerprint = fp


@contextmanager
def fingerprinting(files: list[InputFile]) -> Iterator[None]:
    """:func:`fingerprint_inputs` in a thread while the block runs (reading the inputs'
    headers, say): when the block ends, every fingerprint is set, or the hashing's error is
    raised. An error in the block stops the hashing (within one block of the file) and is
    the error raised."""
    from concurrent.futures import ThreadPoolExecutor

    stop = threading.Event()
    ex = ThreadPoolExecutor(1)
    hashed = ex.submit(fingerprint_inputs, files, stop)
    try:
        yield
    except BaseException:
        stop.set()
        raise
    finally:
        ex.shutdown(wait=True)
    hashed.result()


def check_hf_folders(paths) -> None:
    """A Hugging Face ``save_to_disk`` folder (``state.json`` beside ``.arrow`` files) must
    hold every file its ``state.json`` lists: a missing shard is an error, not fewer rows."""
    import json

    paths = list(paths)
    for folder in sorted({store.dirname(p) for p in paths if p.endswith(arrow_ipc.ARROW_EXTS)}):
        state = join(folder or ".", HF_STATE)
        if not store.is_file(state):
            continue
        try:
            listed = [d["filename"] for d in json.loads(store.read_text(state)).get("_data_files", [])]
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise CurateError(f"{state}: not a readable Hugging Face dataset state ({first_line(e)})") from None
        missing = [f for f in listed if join(folder or ".", f) not in paths
                   and not store.is_file(join(folder or ".", f))]
        if missing:
            raise CurateError(
                f"{folder}: {missing[0]} is missing ({len(missing)} of the {len(listed)} files "
                "its state.json lists); restore it, or save the dataset again"
            )


def inspect_input(inp: InputFile, names: tuple[str, ...] | list[str] = ()) -> None:
    """Read the input's column names (and check it opens) without reading its rows.

    ``names``: the columns of a CSV/TSV file without a header row, in order."""
    fmt = FORMATS[inp.format]
    if fmt.header_names and names:
        if len(set(names)) != len(names) or not all(names):
            raise CurateError(f"--columns {','.join(names)}: names must be distinct and not empty")
        inp.names = tuple(names)
    fmt.inspect(inp)


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
