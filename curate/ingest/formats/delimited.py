"""CSV and TSV inputs, plain or compressed, with or without a header row (``--columns``)."""
from __future__ import annotations

from functools import partial
from typing import Iterator

import polars as pl

from curate.errors import CurateError, first_line
from curate.ingest import compressed
from curate.ingest.formats.base import InputFile, InputFormat, select_columns
from curate.storage import is_url


def inspect(inp: InputFile, sep: str = ",") -> None:
    if inp.compression or is_url(inp.path):
        inp.columns = compressed.csv_columns(inp.path, inp.compression, sep, list(inp.names) or None)
        inp.empty = not inp.columns
        return
    try:
        opts = compressed.csv_options(sep, list(inp.names) or None)
        inp.columns = pl.scan_csv(inp.path, **opts).collect_schema().names()
    except pl.exceptions.NoDataError:
        inp.columns, inp.empty = [], True
    except Exception as e:
        raise CurateError(f"{inp.path}: not a readable CSV file ({first_line(e)})") from None


def batches(inp: InputFile, cols: list[str], batch_rows: int, row_groups=None, block_bytes: int = 0,
            sep: str = ",") -> Iterator[pl.DataFrame]:
    if not inp.columns:
        return
    names = list(inp.names) or None
    # plain or compressed, one reader: lines bounded, ragged lines named
    for df in compressed.csv_batches(inp.path, inp.compression, sep, names, batch_rows):
        yield select_columns(df, cols)


def delimited(description: str, suffix: str, sep: str, noun: str) -> InputFormat:
    return InputFormat(description, (suffix,), partial(inspect, sep=sep), partial(batches, sep=sep),
                       compressible=True, header_names=True, noun=noun)


CSV = delimited("comma-separated values", ".csv", ",", "CSV file")
TSV = delimited("tab-separated values", ".tsv", "\t", "TSV file")
