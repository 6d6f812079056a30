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

from curate.tables import spread

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
    parts = [_buffers(values[n]) for n in names]
    n = len(values[names[0]])
    lens = np.stack([np.diff(offs) for _, offs in parts], axis=1) if names else np.zeros((n, 0), np.int64)
    k = len(names)
    sample_len = 4 * k + lens.sum(axis=1)
    head = 4 + 4 * (n + 1) + len(cfg)
    starts = head + np.concatenate([[0], np.cumsum(sample_len)]).astype(np.int64)
    if starts[-1] >= 1 << 32:
        raise ValueError("an MDS shard must stay under 4 GiB: export with fewer rows per shard")
    buf = np.zeros(int(starts[-1]), np.uint8)
    buf[:4] = np.frombuffer(np.uint32(n).tobytes(), np.uint8)
    buf[4:4 + 4 * (n + 1)] = np.frombuffer(starts.astype("<u4").tobytes(), np.uint8)
    buf[4 + 4 * (n + 1):head] = np.frombuffer(cfg, np.uint8)
    # the size header of every sample: k uint32 little-endian numbers
    sizes = np.frombuffer(lens.astype("<u4").tobytes(), np.uint8).reshape(n, 4 * k)
    buf[spread(starts[:-1], np.full(n, 4 * k, np.int64))] = sizes.reshape(-1)
    at = starts[:-1] + 4 * k
    for j, (data, offs) in enumerate(parts):  # a loop over columns, not rows
        ls = lens[:, j]
        if ls.sum():
            buf[spread(at, ls)] = data[spread(offs[:-1], ls)]
        at = at + ls
    return buf.tobytes()


def shard_entry(columns: dict[str, str], basename: str, rows: int, size: int) -> dict:
    """The shard's entry in ``index.json``."""
    return {**config(columns), "raw_data": {"basename": basename, "bytes": size, "hashes": {}},
            "samples": rows, "zip_data": None}


def index(entries: list[dict]) -> dict:
    return {"shards": entries, "version": 2}


def _buffers(a: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 or binary values and int64 offsets of an Arrow column (nulls as empty)."""
    if isinstance(a, pa.ChunkedArray):
        a = a.combine_chunks()
    a = a.cast(pa.large_binary()).fill_null(b"")
    _, offs, data = a.buffers()
    offsets = np.frombuffer(offs, np.int64)[a.offset:a.offset + len(a) + 1]
    values = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return values, offsets

