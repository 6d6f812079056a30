"""Arrow helpers shared by the stages that write fixed-size shards and row groups."""
from __future__ import annotations

from typing import Iterator

import pyarrow as pa


def exact_tables(batches, size: int, schema: pa.Schema | None = None) -> Iterator[pa.Table]:
    """Re-cut a stream of Arrow record batches into tables of exactly ``size`` rows (the
    last may be shorter): fixed-size shards and row groups."""
    pending: list[pa.RecordBatch] = []
    held = 0
    for b in batches:
        pending.append(b)
        held += b.num_rows
        while held >= size:
            t = pa.Table.from_batches(pending, schema)
            yield t.slice(0, size)
            rest = t.slice(size)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield pa.Table.from_batches(pending, schema)

