"""MosaicML streaming's MDS shards, written with numpy for a whole shard at once.

The format is the one ``streaming.MDSWriter`` writes (``streaming/base/format/mds``), so
``streaming.StreamingDataset`` / ``Stream`` read it: a shard file is

* ``uint32`` sample count ``n``; ``uint32`` offsets ``[n + 1]`` of each sample in the file;
* the shard's configuration as JSON (column names sorted, their encodings and sizes);
* the samples: per sample, the ``uint32`` byte sizes of its variable-size columns, then the
  bytes of every column in column order.

``index.json`` lists the shards (``version: 2``, no compression, no hashes). Every column
written here is variable-size: ``str`` (UTF-8), ``bytes`` and ``json`` (a JSON document).
MDSWriter writes one sample at a time; this writer lays out the same bytes for a whole
shard with one gather per column.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa


ENCODINGS = ("str", "bytes", "json")


def config(columns: dict[str, str]) -> dict:
    """A shard's configuration (what MDSWriter stores in the shard and in ``index.json``)."""
    names = sorted(columns)
    for n in names:
        if columns[n] not in ENCODINGS:
            raise ValueError(f"MDS column {n!r}: encoding {columns[n]!r} is not one of {ENCODINGS}")
    return {"column_encodings": [columns[n] for n in names], "column_names": names,
            "column_sizes": [None] * len(names), "compression": None, "format": "mds", "hashes": [],
            "size_limit": None, "version": 2}


def shard_bytes(columns: dict[str, str], values: dict[str, pa.Array]) -> bytes:
    """One shard: ``values[name]`` is a string or binary Arrow array per column (a null is
    written as empty bytes; a ``json`` column holds each sample's JSON text)."""
    cfg = json.dumps(config(columns), sort_keys=True).encode()
    names = sorted(columns)
    cols = [_binary(values[n]) for n in names]
    n, k = len(cols[0]), len(cols)
    lens = np.stack([np.diff(_offsets(c)) for c in cols], axis=1)
    # every sample's size header (k uint32 numbers) as one more binary column
    heads = pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, [
        None, pa.py_buffer(np.arange(n + 1, dtype=np.int64) * 4 * k), pa.py_buffer(lens.astype("<u4").tobytes())])
    # the body: header, column 0, column 1 ... of sample 0, then of sample 1, ...: one take
    order = (np.arange(k + 1, dtype=np.int64)[None, :] * n + np.arange(n, dtype=np.int64)[:, None]).ravel()
    body = pa.concat_arrays([heads, *cols]).take(pa.array(order))
    first, end = (int(x) for x in _offsets(body)[[0, -1]])
    head = 4 + 4 * (n + 1) + len(cfg)
    starts = head + np.concatenate([[0], np.cumsum(4 * k + lens.sum(axis=1))]).astype(np.int64)
    if starts[-1] >= 1 << 32:
        raise ValueError("an MDS shard must stay under 4 GiB: export with fewer rows per shard")
    data = body.buffers()[2]
    return b"".join([np.uint32(n).tobytes(), starts.astype("<u4").tobytes(), cfg,
                     memoryview(data)[first:end] if data is not None else b""])


def shard_entry(columns: dict[str, str], basename: str, rows: int, size: int) -> dict:
    """The shard's entry in ``index.json``."""
    return {**config(columns), "raw_data": {"basename": basename, "bytes": size, "hashes": {}},
            "samples": rows, "zip_data": None}


def index(entries: list[dict]) -> dict:
    return {"shards": entries, "version": 2}


def _binary(a) -> pa.Array:
    """A column as one ``large_binary`` chunk, nulls as empty bytes."""
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    return a.cast(pa.large_binary()).fill_null(b"")


def _offsets(a: pa.Array) -> np.ndarray:
    return np.frombuffer(a.buffers()[1], np.int64)[a.offset:a.offset + len(a) + 1]
