"""img2dataset's output folders as they are: shards with their sidecar files.

img2dataset writes, per shard, ``00000.tar`` (the samples), ``00000.parquet`` (one row per
URL it tried: the input's columns, ``key``, ``status``, ``error_message``, ``width``,
``height``, ...) and ``00000_stats.json`` (counts). The Parquet file is metadata about the
tar, not more captions: read as an input it would count every downloaded sample twice. So a
``.parquet`` input with img2dataset's columns beside a ``.tar`` input of the same name is set
aside (its statuses are counted for the summary line; each sample's ``.json`` in the tar
holds the same fields). ``_stats.json`` files are never inputs.
"""
from __future__ import annotations

import os
from collections import Counter

import polars as pl

from curate.ingest.formats import FORMATS, InputFile
from curate.ingest.formats.parquet import parquet_file
from curate.storage import is_url
from curate.storage.listing import is_file

#: The columns img2dataset's downloader adds to every sidecar row.
SIDECAR_COLUMNS = ("key", "status", "error_message")


def _stem(path: str) -> str:
    return os.path.splitext(path if is_url(path) else os.path.normpath(path))[0]


def set_aside_sidecars(files: list[InputFile]) -> tuple[list[InputFile], list[InputFile]]:
    """(inputs to read, img2dataset sidecars set aside)."""
    tars = {_stem(f.path) for f in files if f.format == "webdataset"}
    side = [f for f in files if f.format == "parquet" and _stem(f.path) in tars
            and set(SIDECAR_COLUMNS) <= set(parquet_file(f).schema_arrow.names)]
    keep = [f for f in files if f not in side]
    return keep, side


def read_line(files: list[InputFile], sidecars: list[InputFile]) -> str | None:
    """One line saying what a run read, where its inputs mix formats or sidecars were set
    aside: ``read 3 .tar shards; 3 img2dataset sidecars (.parquet, _stats.json) used as
    metadata, not as captions (9,000 URLs tried: 7,043 success, 1,957 failed_to_download)``."""
    kinds = Counter(f.format for f in files)
    if len(kinds) < 2 and not sidecars:
        return None
    shown = {k: FORMATS[k].noun or f"{k} file" for k in kinds}
    parts = [f"{n:,} {shown[k]}{'s' if n != 1 else ''}" for k, n in kinds.items()]
    line = "read " + ", ".join(parts)
    if sidecars:
        counts = [pl.from_arrow(parquet_file(f).read(columns=["status"]))["status"].value_counts() for f in sidecars]
        status = pl.concat(counts).group_by("status").agg(pl.col("count").sum())
        status = status.sort("count", "status", descending=True)
        stats = sum(is_file(_stem(f.path) + "_stats.json") for f in sidecars)
        what = ".parquet" + (", _stats.json" if stats else "")
        tried = ", ".join(f"{n:,} {s}" for s, n in status.iter_rows())  # a few distinct statuses
        line += (f"; {len(sidecars):,} img2dataset sidecar{'s' if len(sidecars) != 1 else ''} ({what}) used as "
                 f"metadata, not as captions ({int(status['count'].sum()):,} URLs tried: {tried})")
    return line
