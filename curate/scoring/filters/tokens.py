"""Words of a whole batch at once, found in its UTF-8 bytes (no regular expression).

:func:`words_of` gives exactly the matches of ``[\\p{L}\\p{N}]+(?:'[\\p{L}\\p{N}]+)*`` in
every row (runs of letters and digits, joined by single apostrophes), in order, as one
column, and the number of words of each row. It costs about two thirds of polars'
``str.extract_all`` followed by ``explode`` (which builds one list per row): every byte of
the batch is classified by a table (ASCII letters and digits; the code point of each
multi-byte character is decoded with NumPy and looked up in :data:`_CLASS`, which polars'
own ``\\p{L}`` / ``\\p{N}`` fill on first sight of a character), word boundaries are the
changes of class, and the words are cut out of the batch's buffer by their offsets.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from curate.errors import CurateError

#: ASCII letters and digits
_ASCII = np.zeros(256, dtype=bool)
for _lo, _hi in ((48, 57), (65, 90), (97, 122)):
    _ASCII[_lo:_hi + 1] = True
#: Per code point: 1 a letter or digit (``[\p{L}\p{N}]``), 0 not, -1 not looked at yet.
_CLASS = np.full(0x110000, -1, dtype=np.int8)
APOSTROPHE = 0x27


def _word_chars(cps: np.ndarray) -> np.ndarray:
    """True for the code points that are letters or digits, by polars' regular expressions
    (the same Unicode tables as every pattern of the filters), each looked at once."""
    known = _CLASS[cps]
    new = np.unique(cps[known < 0])
    if len(new):
        chars = pl.Series([new.astype("<u4").tobytes().decode("utf-32-le")]).str.split("").explode()
        if len(chars) != len(new):
            raise CurateError("cannot classify the characters of a caption batch")
        _CLASS[new] = chars.str.contains(r"^[\p{L}\p{N}]$").to_numpy()
        known = _CLASS[cps]
    return known.astype(bool)


def _code_points(b: np.ndarray, lead: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Code points and byte lengths of the multi-byte characters that start at ``lead``
    (valid UTF-8: polars strings are)."""
    p = b[np.minimum(lead[:, None] + np.arange(4), len(b) - 1)].astype(np.uint32)
    b0, b1, b2, b3 = p[:, 0], p[:, 1] & 0x3F, p[:, 2] & 0x3F, p[:, 3] & 0x3F
    size = np.where(b0 < 0xE0, 2, np.where(b0 < 0xF0, 3, 4))
    cp = np.where(size == 2, ((b0 & 0x1F) << 6) | b1,
                  np.where(size == 3, ((b0 & 0x0F) << 12) | (b1 << 6) | b2,
                           ((b0 & 0x07) << 18) | (b1 << 12) | (b2 << 6) | b3))
    return cp, size


def words_of(text: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """(every word of every row, in order; the number of words of each row). A null row
    has none."""
    # a space after every row: no word runs on into the next row
    arr = (text.cast(pl.String).fill_null("") + " ").rechunk().to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if n == 0:
        return pl.Series([], dtype=pl.String), np.zeros(0, dtype=np.int64)
    _, offsets, data = arr.buffers()
    offs = np.frombuffer(offsets, np.int64)[arr.offset: arr.offset + n + 1]
    size = int(offs[-1] - offs[0])
    b = np.frombuffer(data, np.uint8)[int(offs[0]): int(offs[-1])]
    offs = offs - offs[0]
    word = _ASCII[b]
    lead = np.flatnonzero(b >= 0xC0)
    if len(lead):
        cps, width = _code_points(b, lead)
        every = np.repeat(lead, width) + (np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width))
        word[every] = np.repeat(_word_chars(cps), width)
    ap = np.flatnonzero(b == APOSTROPHE)
    ap = ap[ap > 0]  # (the last byte is a space)
    if len(ap):  # an apostrophe between two letters or digits joins them
        word[ap[word[ap - 1] & word[ap + 1]]] = True
    edge = np.diff(word.view(np.int8), prepend=np.int8(0))
    starts, ends = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    cuts = np.empty(2 * len(starts) + 2, dtype=np.int64)  # words and the gaps between them
    cuts[0], cuts[-1] = 0, size
    cuts[1:-1:2], cuts[2:-1:2] = starts, ends
    pieces = pa.LargeStringArray.from_buffers(len(cuts) - 1, pa.py_buffer(cuts), pa.py_buffer(b))
    words = pl.Series(pieces).gather_every(2, offset=1)
    return words, np.diff(np.searchsorted(starts, offs))
