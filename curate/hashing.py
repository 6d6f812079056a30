"""Stable hashes: 64-bit keys for ids and texts, and fingerprints of files.

Each is fixed by its standard (SplitMix64, blake2b, MD5, sha256, XXH3), so a value never changes
with a library version: sample ids, content hashes and model hashes stay valid across runs.
"""
from __future__ import annotations

import hashlib
import os
import threading

import numpy as np
import polars as pl
import pyarrow as pa

from curate.storage.fs import is_url, open_file


#: The fingerprint ``curate score`` records for each input file (``run.json``'s ``inputs``,
#: under this key): XXH3-128, fixed by the xxHash specification (stable since xxHash 0.8).
#: It detects a changed file (any accidental change alters it, but for a 2**-128 chance);
#: it is not a defence against someone forging a collision. Runs recorded before it hold
#: ``blake2b`` (blake2b-128) instead, which :func:`fingerprint_matches` still checks.
FINGERPRINT = "xxh3_128"
#: The fingerprints a run's input record may hold, newest first.
FINGERPRINT_KINDS = (FINGERPRINT, "blake2b")


class Stopped(Exception):
    """Hashing was stopped (its ``stop`` event set) before the end of the file."""


def _hash_file(path: str | os.PathLike, h, stop: threading.Event | None = None) -> str:
    """``h`` updated with the file's bytes, read into one reused 4 MiB buffer; raises
    :class:`Stopped` when ``stop`` is set (checked before each read)."""
    buf = bytearray(4 << 20)
    view = memoryview(buf)
    with (open_file(path) if is_url(path) else open(path, "rb", buffering=0)) as f:
        while not (stop is not None and stop.is_set()) and (n := f.readinto(buf)):
            h.update(view[:n])
    if stop is not None and stop.is_set():
        raise Stopped(str(path))
    return h.hexdigest()


def file_fingerprint(path: str | os.PathLike) -> str:
    """blake2b-128 of the file's bytes (cache files; the inputs of runs recorded before
    :data:`FINGERPRINT`)."""
    return _hash_file(path, hashlib.blake2b(digest_size=16))


def input_fingerprint(path: str | os.PathLike, kind: str = FINGERPRINT, stop: threading.Event | None = None) -> str:
    """The :data:`FINGERPRINT` (or ``kind``, one of :data:`FINGERPRINT_KINDS`) of an input
    (``stop``: see :func:`input_fingerprints`)."""
    if kind == "blake2b":
        return file_fingerprint(path)
    import xxhash

    return _hash_file(path, xxhash.xxh3_128(), stop)


def input_fingerprints(paths: list[str], stop: threading.Event | None = None) -> list[str]:
    """:func:`input_fingerprint` of each file, several at once (threads: the hash releases
    the GIL on large blocks). Setting ``stop`` (from another thread) ends the hashing within
    one block: :class:`Stopped` is raised."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max(1, min(len(paths), os.cpu_count() or 1))) as ex:
        return list(ex.map(lambda p: input_fingerprint(p, stop=stop), paths))


def recorded_fingerprint(record: dict) -> tuple[str, str] | None:
    """(kind, value) of the fingerprint an input record of ``run.json`` holds, or None."""
    return next(((k, record[k]) for k in FINGERPRINT_KINDS if record.get(k)), None)


def fingerprint_matches(path: str | os.PathLike, record: dict) -> bool:
    """Whether the file still has the fingerprint ``record`` holds (computed the way it was
    recorded: XXH3-128, or blake2b-128 for older runs); False where none is recorded."""
    rec = recorded_fingerprint(record)
    return rec is not None and input_fingerprint(path, rec[0]) == rec[1]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of the file's bytes (model files, export shards), read in 4 MiB blocks."""
    return _hash_file(path, hashlib.sha256())


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


#: Bytes of members hashed at a time by :func:`member_hashes` (its temporary arrays stay in
#: the CPU's cache).
HASH_CHUNK = 2 << 20


_K1, _K2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xBF58476D1CE4E5B9)


def member_hashes(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """A 64-bit content hash of each byte range ``buf[start:start + len]`` (tar members: every
    start a multiple of 8 bytes from ``buf``'s first byte, ranges in ascending order).

    The range is read as little-endian 64-bit words ``w_j`` (the last one zero-padded), each
    mixed by the bijection ``m_j = f(w_j)``, ``f(w) = ((w K1) ^ ((w K1) >> 29)) K2``; with
    ``S = sum m_j`` and ``T = sum j m_j`` (mod 2**64) the hash is
    ``splitmix64(S ^ splitmix64(T ^ len))``. Any change of one word changes ``S``; moved or
    swapped words change ``T``. It finds edits, not an adversary forging a collision.
    Computed with numpy, :data:`HASH_CHUNK` bytes at a time; fixed by this definition, so
    stored values stay valid across versions."""
    starts, lens = np.asarray(starts, np.int64), np.asarray(lens, np.int64)
    out = np.zeros(len(starts), np.uint64)
    if not len(starts):
        return out
    if (starts % 8).any() or (np.diff(starts) < 0).any():
        raise ValueError("member_hashes needs ascending starts at multiples of 8 bytes")
    ws, nw, tail = starts // 8, (lens + 7) // 8, lens % 8
    if int((ws + nw).max()) * 8 > len(buf):  # the last word runs past the buffer: pad it
        buf = np.concatenate([np.asarray(buf[: int((starts + lens).max())]), np.zeros(8, np.uint8)])
    words = np.asarray(buf[: len(buf) // 8 * 8]).view("<u8")
    # the last word of a member whose length is not a multiple of 8, masked, mixed up front
    cut = np.flatnonzero(tail)
    last = ws[cut] + nw[cut] - 1
    mask = (np.uint64(1) << (np.uint64(8) * tail[cut].astype(np.uint64))) - np.uint64(1)
    masked = words[last] & mask
    _mix(masked, masked.copy(), masked)
    group = (ws - ws[0]) // (HASH_CHUNK // 8)
    first = np.flatnonzero(np.r_[True, np.diff(group) > 0])
    bounds = [*first.tolist(), len(ws)]
    lo_of, hi_of = ws[first], np.maximum.reduceat(ws + nw, first)
    span = int((hi_of - lo_of).max()) + 1
    m_all, tmp_all = np.empty(span, np.uint64), np.empty(span, np.uint64)
    index = np.arange(span, dtype=np.uint64)
    at_cut = np.searchsorted(cut, bounds)
    with np.errstate(over="ignore"):
        for g, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):  # a loop over chunks of members
            w, n = ws[a:b], nw[a:b]
            lo, hi = int(lo_of[g]), int(hi_of[g])
            m = m_all[:hi - lo + 1]
            m[-1] = 0  # reduceat's end index of the last member
            _mix(words[lo:hi], tmp_all[:hi - lo], m[:-1])
            c0, c1 = at_cut[g], at_cut[g + 1]
            m[last[c0:c1] - lo] = masked[c0:c1]
            at = np.empty(2 * len(w), np.int64)
            at[0::2], at[1::2] = w - lo, w - lo + n
            s = np.add.reduceat(m, at)[0::2]
            np.multiply(m, index[:len(m)], out=m)
            j = np.add.reduceat(m, at)[0::2] - (w - lo).astype(np.uint64) * s
            s[n == 0], j[n == 0] = 0, 0
            out[a:b] = splitmix64(s ^ splitmix64(j ^ lens[a:b].astype(np.uint64)))
    return out


def _mix(w: np.ndarray, tmp: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``f(w)`` of :func:`member_hashes` into ``out`` (``tmp``: scratch of the same length)."""
    np.multiply(w, _K1, out=out)
    np.right_shift(out, np.uint64(29), out=tmp)
    np.bitwise_xor(out, tmp, out=out)
    np.multiply(out, _K2, out=out)
    return out


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
