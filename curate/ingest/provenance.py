"""Provenance: every row read gets ``sample_id``, ``source`` and ``row`` (DESIGN convention 5).

``sample_id`` is stable across reruns: a hash of the id column's value when one is given,
else of the source file's name and the row's index in it. ``source`` is the input file as
given (normalised); ``row`` is the 0-based index within that file.
"""
from __future__ import annotations

from typing import Iterator

import polars as pl

from curate.errors import CurateError
from curate.hashing import derived_ids, text_hash64
from curate.ingest.carry import cast_carried
from curate.ingest.inputs import InputFile
from curate.ingest.readers import read_batches


def with_provenance(batch: pl.DataFrame, inp: InputFile, start: int, id_column: str | None,
                    carry: list[str]) -> pl.DataFrame:
    """``sample_id``, ``source``, ``row``, ``caption`` (+ ``id``, + carried columns) of one
    batch whose first row is row ``start`` of ``inp``."""
    n = batch.height
    if id_column:
        nulls = batch["id"].null_count()
        if nulls:
            first = start + int(batch["id"].is_null().arg_max())
            raise CurateError(
                f"{inp.path}: id column {id_column!r} is empty in {nulls} rows of a batch "
                f"(first at row {first}); every row needs an id"
            )
        sid = text_hash64(batch["id"]).alias("sample_id")
    else:
        sid = pl.Series("sample_id", derived_ids(inp.path, start, n), dtype=pl.UInt64)
    cols = [
        sid,
        pl.Series("source", [inp.path], dtype=pl.String).new_from_index(0, n) if n else pl.Series("source", [], dtype=pl.String),
        pl.Series("row", range(start, start + n), dtype=pl.Int64),
        batch["caption"],
    ]
    if id_column:
        cols.append(batch["id"])
    for c in carry:
        # a number or boolean column keeps its type where every input declares it so
        # (``InputFile.keep_types``); others are text
        t = getattr(pl, inp.keep_types.get(c, "String"))
        cols.append(cast_carried(batch[c], t, inp.path, start) if c in batch.columns
                    else pl.Series(c, [None] * n, dtype=t))
    return pl.DataFrame(cols)


def read_with_provenance(inp: InputFile, caption: str, id_column: str | None, carry: list[str],
                         batch_rows: int, batches: Iterator[pl.DataFrame] | None = None,
                         start: int = 0, first: int = 0) -> Iterator[tuple[int, pl.DataFrame]]:
    """(batch index, batch with provenance) for each batch of one input; ``batches`` (first
    row ``start``, first batch index ``first``) defaults to the whole file."""
    if batches is None:
        batches = read_batches(inp, caption, id_column, carry, batch_rows)
    rows = start
    for bi, batch in enumerate(batches, first):
        yield bi, with_provenance(batch, inp, rows, id_column, carry)
        rows += batch.height
