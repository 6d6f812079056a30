"""Parquet inputs: a file, a folder of parts or a glob; read by row group."""
from __future__ import annotations

from typing import Iterator

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import CurateError, first_line
from curate.ingest.formats.base import InputFile, InputFormat
from curate.storage import is_url
from curate.storage.listing import open_object


#: footers read in this process, by input (path, size, mtime, ETag), up to FOOTER_BYTES of
#: them: a file is inspected, then read (and a sidecar checked), each by a new ParquetFile
#: that need not fetch the footer again (for an object in a store: no second ranged GET).
#: Reading a file's rows is its last use: its footer is let go then.
_FOOTERS: dict[tuple, pq.FileMetaData] = {}
FOOTER_BYTES = 64 << 20
_HELD = {"bytes": 0}


def parquet_file(inp: InputFile, last_use: bool = False) -> pq.ParquetFile:
    key = (inp.path, inp.size, inp.mtime_ns, inp.etag)
    md = _FOOTERS.pop(key, None) if last_use else _FOOTERS.get(key)
    if last_use and md is not None:
        _HELD["bytes"] -= md.serialized_size
    # an object in a store: the footer, then each column chunk, by ranged reads
    source = open_object(inp.path, cache_type="none") if is_url(inp.path) else inp.path
    try:
        pf = pq.ParquetFile(source, metadata=md)
    except CurateError:
        raise
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise CurateError(f"{inp.path}: not a readable Parquet file ({first_line(e)})") from None
    size = pf.metadata.serialized_size
    if md is None and not last_use and _HELD["bytes"] + size <= FOOTER_BYTES:
        _FOOTERS[key] = pf.metadata
        _HELD["bytes"] += size
    return pf


def inspect(inp: InputFile) -> None:
    sch = parquet_file(inp).schema_arrow
    inp.columns = list(sch.names)
    # an empty table made from no batches (sch.empty_table() would import pandas)
    polars_schema = pl.from_arrow(pa.Table.from_batches([], schema=sch)).schema
    inp.dtypes = {f.name: str(polars_schema[f.name]) for f in sch}


def batches(inp: InputFile, cols: list[str], batch_rows: int, row_groups: list[int] | None = None,
            block_bytes: int = 0) -> Iterator[pl.DataFrame]:
    pf = parquet_file(inp, last_use=True)
    try:
        for rb in pf.iter_batches(batch_size=batch_rows, columns=cols, row_groups=row_groups):
            yield pl.from_arrow(rb)
    except CurateError:
        raise
    except Exception as e:
        raise CurateError(f"{inp.path}: damaged Parquet data ({first_line(e)})") from None


def row_groups(inp: InputFile) -> list[int]:
    md = parquet_file(inp).metadata
    return [md.row_group(g).num_rows for g in range(md.num_row_groups)]


FORMAT = InputFormat("Apache Parquet", (".parquet", ".pq"), inspect, batches, row_groups=row_groups,
                     noun=".parquet file")
