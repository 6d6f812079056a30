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


def spread(dest, lens):
    """Flat indices ``dest[i] + 0 .. dest[i] + lens[i] - 1`` for every i, in order: the
    positions of variable-length pieces laid out (or gathered) with one numpy index."""
    import numpy as np

    offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return np.repeat(np.asarray(dest, np.int64) - offs[:-1], lens) + np.arange(offs[-1], dtype=np.int64)
