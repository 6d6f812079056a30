"""WebDataset ``.tar`` shards: one sample per key, the caption a text member."""
from __future__ import annotations

from typing import Iterator

import polars as pl

from curate.errors import CurateError
from curate.ingest import webdataset as wds
from curate.ingest.formats.base import InputFile, InputFormat


def inspect(inp: InputFile) -> None:
    try:
        inp.columns, inp.empty, inp.dtypes = wds.inspect(inp.path)
    except CurateError as e:
        raise CurateError(f"{inp.path}: {e}") from None


def batches(inp: InputFile, cols: list[str], batch_rows: int, row_groups=None, block_bytes: int = 0
            ) -> Iterator[pl.DataFrame]:
    if inp.empty:
        return
    yield from wds.read(inp.path, cols, batch_rows)


FORMAT = InputFormat("WebDataset tar shards", (".tar",), inspect, batches, images=True,
                     noun=".tar shard")
