"""Text from input bytes: lossy UTF-8 decoding and lone surrogate escapes (shared by the readers).

Bad bytes and lone surrogates become U+FFFD (the junk filter's ``encoding`` kind), never an
error.
"""
from __future__ import annotations

import re

import polars as pl
import pyarrow as pa

from curate.errors import CurateError


def to_text(s: pl.Series, what: str = "caption") -> pl.Series:
    """Any caption (or id) column type as UTF-8 text; invalid bytes become U+FFFD."""
    if s.dtype == pl.String:
        return s
    if s.dtype == pl.Binary:
        # Arrow's binary->string cast rejects invalid UTF-8, so decode lossily via Python's
        # codec, one call for the whole column's buffer.
        return decode_binary_lossy(s)
    if s.dtype.is_nested():
        raise CurateError(f"{what} column {s.name!r} holds {s.dtype} values, not text")
    return s.cast(pl.String)


def decode_binary_lossy(s: pl.Series) -> pl.Series:
    """Decode a binary column as UTF-8, replacing invalid bytes with U+FFFD.

    The values are joined with an ASCII separator, decoded by one codec call and split again,
    so there is no per-row Python work. (An ASCII byte is never swallowed by the replacement
    of an invalid sequence, so the split gives back exactly one piece per row.)
    """
    try:  # the common case: valid UTF-8 (polars raises on invalid bytes even when not strict)
        return s.cast(pl.String)
    except (pl.exceptions.ComputeError, pl.exceptions.InvalidOperationError):
        pass
    sep = "\x00\x1f\x00"
    arr = s.fill_null(b"").to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    arr = arr.cast(pa.large_binary())
    lists = pa.LargeListArray.from_arrays(pa.array([0, len(arr)], pa.int64()), arr)
    import pyarrow.compute as pc

    joined = pc.binary_join(lists, pa.scalar(sep.encode(), pa.large_binary()))[0].as_py()
    if joined.count(sep.encode()) != len(arr) - 1:
        raise CurateError("caption column holds bytes that cannot be decoded as text")
    text = pl.Series(s.name, joined.decode("utf-8", "replace").split(sep), dtype=pl.String)
    return pl.select(pl.when(s.is_not_null()).then(text)).to_series().alias(s.name)


#: A JSON escape of a UTF-16 surrogate that is not half of a pair (``\udc80``, or
#: ``\ud800`` with no low half after it): JSON readers reject it or store U+0000.
_LONE_HIGH = re.compile(r"(?<!\\)((?:\\\\)*)\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})")
_LONE_LOW = re.compile(r"(?<!\\u[dD][89abAB][0-9a-fA-F]{2})(?<!\\)((?:\\\\)*)\\u[dD][c-fC-F][0-9a-fA-F]{2}")
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def lone_surrogates_replaced(text: str) -> str:
    """JSON text with every lone surrogate escape replaced by ``\ufffd`` (U+FFFD, which the
    junk filter reports as kind ``encoding``); pairs are left as they are. One regex pass
    over the whole chunk, only when it holds a surrogate escape at all."""
    if not _SURROGATE.search(text):
        return text
    text = _LONE_HIGH.sub(lambda m: m.group(1) + "\\ufffd", text)
    return _LONE_LOW.sub(lambda m: m.group(1) + "\\ufffd", text)
