"""What every input format shares: the input file as the run sees it and a format's hooks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import polars as pl

from curate.hashing import FINGERPRINT

#: The UTF-8 byte order mark a text file may open with (read past, never a caption's).
BOM = b"\xef\xbb\xbf"


@dataclass
class InputFile:
    path: str  # as given, normalised; this is the ``source`` column
    format: str
    size: int
    mtime_ns: int
    fingerprint: str = ""  # curate.hashing.FINGERPRINT of the file
    columns: list[str] = field(default_factory=list)
    empty: bool = False  # a text file with nothing but white space: zero rows
    compression: str = ""  # gzip, zstd or bz2 for a compressed text file
    etag: str = ""  # an object in a store (``path`` a URL): its ETag as listed
    names: tuple[str, ...] = ()  # CSV/TSV without a header row: the columns' names, in order
    dtypes: dict[str, str] = field(default_factory=dict)  # column -> type the format declares
    keep_types: dict[str, str] = field(default_factory=dict)  # carried column -> type it keeps
    carry_names: dict[str, str] = field(default_factory=dict)  # carried column -> this file's column

    def describe(self) -> dict:
        d = {
            "source": self.path,
            "format": self.format,
            "bytes": self.size,
            FINGERPRINT: self.fingerprint or None,
        }
        if self.etag:  # an object in a store: its content identity there (read again by verify)
            d["etag"] = self.etag
        if self.compression:
            d["compression"] = self.compression
        return d


def select_columns(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``df`` with exactly ``columns``, in order: a column it lacks (a key missing from some
    lines, or a column carried from another input of the run) is null."""
    missing = [c for c in columns if c not in df.columns]
    return df.with_columns(pl.lit(None, pl.String).alias(c) for c in missing).select(columns)


@dataclass(frozen=True)
class InputFormat:
    """An input format: the file suffixes that name it, and its hooks.

    ``inspect(inp)`` fills ``inp.columns`` (and ``dtypes``, ``empty``) without reading rows;
    ``batches(inp, columns, batch_rows, row_groups, block_bytes)`` yields frames of those
    columns, at most ``batch_rows`` rows each (``row_groups``: only these groups, for formats
    with ``row_groups``; ``block_bytes``: the read size of formats read in blocks);
    ``row_groups(inp)``, where the format's metadata knows them, gives the rows of each group
    a reader can read on its own (the row count before reading, the Ray engine's units)."""

    description: str
    suffixes: tuple[str, ...]
    inspect: Callable[[InputFile], None]
    batches: Callable[..., Iterator[pl.DataFrame]]
    row_groups: Callable[[InputFile], list[int]] | None = None
    compressible: bool = False  # also read as .gz, .zst, .bz2
    header_names: bool = False  # --columns names the columns of a file without a header row
    images: bool = False  # rows index image members (offsets, hashes) that exports copy
    noun: str = ""  # how a run's summary line names one file ("JSONL file"); default "<name> file"
