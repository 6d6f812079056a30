"""The input formats, looked up in one explicit dictionary, as the filters are.

Each format is a module with an :class:`InputFormat` (its file suffixes, ``inspect`` and
``batches`` hooks, and ``row_groups`` where its metadata counts rows): a new input format
is a module and one line in ``FORMATS``. :mod:`curate.ingest.inputs` detects a file's
format by its suffix (folders and globs contribute the files with a registered suffix),
:mod:`curate.ingest.readers` reads it, the runner and the Ray engine plan by its row groups.
"""
from __future__ import annotations

from curate.ingest.formats import arrow, delimited, jsonl, parquet, webdataset
from curate.ingest.formats.base import BOM, InputFile, InputFormat

FORMATS: dict[str, InputFormat] = {
    "parquet": parquet.FORMAT,
    "jsonl": jsonl.FORMAT,
    "csv": delimited.CSV,
    "tsv": delimited.TSV,
    "webdataset": webdataset.FORMAT,
    "arrow": arrow.FORMAT,
}

#: file suffix -> format name
SUFFIXES: dict[str, str] = {s: name for name, f in FORMATS.items() for s in f.suffixes}


def known_rows(inp: InputFile) -> int | None:
    """The input's rows from its format's metadata; None where they are known only by reading."""
    groups = FORMATS[inp.format].row_groups
    return sum(groups(inp)) if groups else None


__all__ = ["BOM", "FORMATS", "SUFFIXES", "InputFile", "InputFormat", "known_rows"]
