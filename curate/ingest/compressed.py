"""Text inputs, plain or compressed (``.gz``, ``.zst``, ``.bz2``), read as a stream of bytes.

The compression is told by the file name (``captions.jsonl.gz``); the stream is decompressed
block by block (pyarrow's codecs), so memory does not grow with the file. A damaged stream
(a bad CRC, a truncated file) is a one-line error naming the file; the rows before it are
not written as a finished run.

CSV from a compressed stream is cut into pieces at record ends (a newline outside quotes:
an even number of ``"`` before it, found by a binary search of the newlines among the
quote positions) and each piece is parsed by the same polars reader, with
the same options, as a plain file.
"""
from __future__ import annotations

import io
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from curate.errors import CurateError, first_line
from curate.storage import is_url
from curate.storage.listing import open_object

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}
#: Decompressed bytes parsed at a time.
CHUNK_BYTES = 32 << 20
#: The longest line (one JSONL record, one CSV/TSV line) a text input may hold: a longer one
#: is a one-line error naming it, so a small compressed file that inflates to one huge
#: line (a "gzip bomb") cannot take the machine's memory.
MAX_LINE_BYTES = 16 << 20


def check_line_length(path: str, rest: bytes, line: int) -> None:
    """Raise when ``rest`` (bytes after the last newline read so far, i.e. the start of
    line number ``line``) is already longer than :data:`MAX_LINE_BYTES`."""
    if len(rest) > MAX_LINE_BYTES:
        raise CurateError(
            f"{path}: line {line:,} is longer than {MAX_LINE_BYTES >> 20} MiB, the most a line (one record) "
            "may be; split the record or shorten it"
        )


class _Stream:
    """A binary file (plain or decompressed) whose read errors name the file."""

    def __init__(self, path: str, compression: str):
        self.path, self.compression = path, compression
        if is_url(path):  # an object in a store: streamed by ranged reads
            obj = open_object(path)
            self.f = pa.input_stream(obj, compression=compression) if compression else obj
        else:
            self.f = pa.input_stream(path, compression=compression or None) if compression else open(path, "rb")

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, fewer only at the end (a codec hands over smaller pieces)."""
        try:
            out = self.f.read(n)
            if not self.compression or len(out) == n or not out:
                return out
            parts, got = [out], len(out)
            while got < n:
                more = self.f.read(n - got)
                if not more:
                    break
                parts.append(more)
                got += len(more)
            return b"".join(parts)
        except OSError as e:
            what = f"damaged {self.compression} data" if self.compression else "cannot read the file"
            raise CurateError(f"{self.path}: {what} ({first_line(e)})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def open_text(path: str, compression: str) -> _Stream:
    return _Stream(path, compression)


def head(path: str, compression: str, n: int) -> bytes:
    """The first ``n`` bytes of the (decompressed) file."""
    with open_text(path, compression) as f:
        return f.read(n)


def csv_options(sep: str, names: list[str] | None) -> dict:
    """The polars CSV options of every text table read (plain and compressed alike)."""
    opts = dict(separator=sep, infer_schema=False, encoding="utf8-lossy", empty_string_is_null=False,
                quote_char=None if sep == "\t" else '"')
    if names:
        opts.update(has_header=False, new_columns=list(names))
    return opts


def _record_end(data: bytes, quoted: bool, last: bool = True) -> int:
    """Bytes up to and including the last (or first) newline that ends a record (0 if none).

    A newline ends a record when an even number of ``"`` comes before it: the quotes before
    each newline are counted by a binary search of the newlines among the quote positions
    (no running count over every byte of the block)."""
    arr = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(arr == 10)
    if quoted and len(nl):
        quotes = np.flatnonzero(arr == 34)
        if len(quotes):
            nl = nl[np.searchsorted(quotes, nl) % 2 == 0]
    return int(nl[-1 if last else 0]) + 1 if len(nl) else 0


def field_counts(data: bytes, sep: str, quoted: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start offset, fields, blank) of every record of ``data`` (whole records), vectorised:
    separators and newlines inside quotes do not count (an odd number of ``"`` before
    them: a binary search among the quote positions, no running count over every byte)."""
    arr = np.frombuffer(data, np.uint8)
    ends, seps = np.flatnonzero(arr == 10), np.flatnonzero(arr == ord(sep))
    if quoted:
        quotes = np.flatnonzero(arr == 34)
        if len(quotes):
            ends = ends[np.searchsorted(quotes, ends) % 2 == 0]
            seps = seps[np.searchsorted(quotes, seps) % 2 == 0]
    if not len(ends) or ends[-1] != len(arr) - 1:
        ends = np.append(ends, len(arr))  # the last record has no newline
    starts = np.concatenate([[0], ends[:-1] + 1])
    fields = np.searchsorted(seps, ends) - np.searchsorted(seps, starts) + 1
    length = ends - starts
    blank = (length == 0) | ((length == 1) & (arr[np.minimum(starts, len(arr) - 1)] == 13))
    return starts, fields, blank


def check_fields(path: str, data: bytes, sep: str, quoted: bool, want: int, line: int) -> None:
    """Raise naming the first record of ``data`` (which starts at line number ``line``)
    whose number of fields is not ``want`` (a ragged CSV/TSV line)."""
    if not data:
        return
    starts, fields, blank = field_counts(data, sep, quoted)
    bad = np.flatnonzero((fields != want) & ~blank)
    if len(bad):
        i = int(bad[0])
        at = line + data[: int(starts[i])].count(b"\n")
        raise CurateError(f"{path}: line {at:,} has {int(fields[i])} fields, the header has {want}"
                          + (" (a tab inside a caption?)" if sep == "\t" else " (an unquoted separator?)"))


def csv_batches(path: str, compression: str, sep: str, names: list[str] | None,
                batch_rows: int) -> Iterator[pl.DataFrame]:
    """A CSV/TSV (plain or compressed) as DataFrames of string columns (at most
    ``batch_rows`` rows each). A line longer than :data:`MAX_LINE_BYTES`, or with more or
    fewer fields than the header, is a one-line error naming its line number."""
    quoted = sep != "\t"
    opts = csv_options(sep, names)
    header = b""
    rest = b""
    lines = 0  # lines before ``data``
    want = len(names) if names else 0
    with open_text(path, compression) as f:
        first = True  # nothing parsed yet: a byte order mark and the header lie ahead
        while True:
            block = f.read(CHUNK_BYTES)
            data = rest + block
            if first:
                data = data.removeprefix(b"\xef\xbb\xbf")
            if block:
                cut = _record_end(data, quoted)
                data, rest = data[:cut], data[cut:]
                check_line_length(path, rest, lines + data.count(b"\n") + 1)
                if first and not data:  # no whole record yet (a header longer than a block)
                    continue
            else:
                rest = b""
            if first and not names:
                end = _record_end(data, quoted, last=False) or len(data)
                header, data = data[:end], data[end:]
                want = int(field_counts(header.rstrip(b"\r\n"), sep, quoted)[1][0]) if header.strip() else 0
                lines += header.count(b"\n")
            first = False
            if want:
                check_fields(path, data, sep, quoted, want, lines + 1)
            lines += data.count(b"\n")
            if data.strip():
                try:
                    df = pl.read_csv(io.BytesIO(header + data), **opts)
                except Exception as e:
                    raise CurateError(f"{path}: cannot read CSV ({first_line(e)})") from None
                for i in range(0, df.height, batch_rows):
                    yield df.slice(i, batch_rows)
            if not block:
                break


def first_lines(path: str, compression: str, size: int = 1 << 20) -> bytes:
    """The file's first whole lines (decompressed): about ``size`` bytes, cut after the last
    newline, or more when the first line is longer (at most :data:`MAX_LINE_BYTES`); the
    whole file when it is shorter."""
    with open_text(path, compression) as f:
        data = f.read(size)
        if len(data) < size:
            return data
        while b"\n" not in data:
            check_line_length(path, data, 1)
            more = f.read(size)
            if not more:
                return data
            data += more
    return data[:data.rfind(b"\n") + 1]


def csv_columns(path: str, compression: str, sep: str, names: list[str] | None) -> list[str]:
    data = first_lines(path, compression).removeprefix(b"\xef\xbb\xbf")
    if not data.strip():
        return []
    cut = _record_end(data, sep != "\t", last=False) or len(data)  # the header record alone
    try:
        return pl.read_csv(io.BytesIO(data[:cut]), n_rows=1, **csv_options(sep, names)).columns
    except Exception as e:
        raise CurateError(f"{path}: not a readable CSV file ({first_line(e)})") from None
