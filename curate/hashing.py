"""Stable hashes: 64-bit keys for ids and texts, and fingerprints of files.

Each is fixed by its standard (SplitMix64, blake2b, MD5, sha256), so a value never changes
with a library version: sample ids, content hashes and model hashes stay valid across runs.
"""
from __future__ import annotations

import hashlib
import os

import numpy as np
import polars as pl
import pyarrow as pa


def file_fingerprint(path: str | os.PathLike) -> str:
    """blake2b-128 of the file's bytes, read in 4 MiB blocks."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return h.hexdigest()



def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes (model files, export shards), read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(4 << 20), b""):
            h.update(block)
    return h.hexdigest()





_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser: a fixed, documented 64-bit mix (stable across library versions)."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * _M1
        x = (x ^ (x >> np.uint64(27))) * _M2
        x ^= x >> np.uint64(31)
    return x


def key64(text: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little"))


def derived_ids(source: str, start_row: int, n: int) -> np.ndarray:
    """sample_id = splitmix64(blake2b64(source) + row): stable for the same file name and row."""
    base = key64(source)
    with np.errstate(over="ignore"):
        rows = np.arange(start_row, start_row + n, dtype=np.uint64) + base
    return splitmix64(rows)


def text_hash64(s: pl.Series) -> pl.Series:
    """Stable 64-bit hash of each string (lower 64 bits of MD5, computed by DuckDB).

    Used for ids taken from an id column and for content hashes. MD5 is fixed by its
    standard, so the value does not change with library versions.
    """
    import duckdb

    con = duckdb.connect()
    tbl = pa.table({"v": s.cast(pl.String).to_arrow()})
    con.register("t", tbl)
    rel = con.sql("SELECT md5_number_lower(v) AS h FROM t")
    # DuckDB 2 renamed the relation's arrow() to to_arrow_table().
    res = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
    con.close()
    return pl.Series(s.name, res.column("h"), dtype=pl.UInt64)
