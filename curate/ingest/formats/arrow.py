"""Arrow IPC / Feather inputs (a Hugging Face ``save_to_disk`` folder holds ``.arrow`` files)."""
from __future__ import annotations

from typing import Iterator

import polars as pl

from curate.ingest import arrow as arrow_ipc
from curate.ingest.formats.base import InputFile, InputFormat
from curate.tables import exact_tables


def inspect(inp: InputFile) -> None:
    sch = arrow_ipc.schema(inp.path)
    inp.columns = list(sch.names)
    inp.dtypes = {k: str(v) for k, v in pl.from_arrow(sch.empty_table()).schema.items()}


def batches(inp: InputFile, cols: list[str], batch_rows: int, row_groups=None, block_bytes: int = 0
            ) -> Iterator[pl.DataFrame]:
    for t in exact_tables(arrow_ipc.batches(inp.path, cols), batch_rows):
        yield pl.from_arrow(t)


FORMAT = InputFormat("Arrow IPC / Feather", (".arrow", ".feather", ".ipc"), inspect, batches, noun="Arrow file")
