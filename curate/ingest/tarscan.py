"""The members of a tar file, read with numpy a window at a time (no Python loop over members).

The tar is read in windows of :data:`WINDOW` bytes: every 512-byte block that carries the
ustar magic and a valid checksum is a candidate header, and the chain of member sizes from
the first header decides which candidates are real (a block inside an image that looks like
a header is skipped). The header kinds that ``tarfile``, ``webdataset.TarWriter``,
img2dataset and GNU tar write are read here:

* ustar headers, with the ``prefix`` field of names over 100 bytes (``prefix/name``);
* pax extended headers (``x``: ``webdataset.TarWriter`` writes one before every member, for
  its fractional ``mtime``); a ``path`` record names the member that follows;
* GNU long names (``L``, the member ``././@LongLink``): its data names the member that
  follows; GNU long link names (``K``) and pax global headers (``g``) are skipped.

So a member's name is the one Python's :mod:`tarfile` gives it. A tar with anything else
(links, sparse files, base-256 sizes, a pax ``size`` record, pre-POSIX headers) is read with
:mod:`tarfile` instead, one member at a time (slower: about 10 microseconds a member).

Each frame holds a member's ``name`` (split into sample ``key`` and lower-case ``ext``), the
``offset`` of its data and its ``size``; ``data``
for text members (:data:`TEXT_EXTS`); ``hash`` (:func:`curate.hashing.member_hashes`, the
content hash of the bytes) for image members (:data:`IMAGE_EXTS`), computed from the same
window, so an image is read once.
"""
from __future__ import annotations

import mmap
import tarfile
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from curate.errors import CurateError, first_line
from curate.hashing import member_hashes
from curate.ingest.text import decode_binary_lossy
from curate.storage import is_url
from curate.storage.listing import open_object
from curate.storage.listing import size as object_size

#: Bytes of the tar read at a time.
WINDOW = 64 << 20
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "jxl", "avif", "heic")
TEXT_EXTS = ("txt", "json")
#: webdataset's split of a member name into key and extension
KEY = r"^((?:.*/|)[^./]+)\.([^/]*)$"
_USTAR = np.frombuffer(b"ustar", np.uint8)
#: bytes 256-263 of a block as one little-endian word: the magic's 5 bytes (257-261) masked
_MAGIC_MASK, _MAGIC = np.frombuffer(b"\x00\xff\xff\xff\xff\xff\x00\x00\x00ustar\x00\x00", "<u8")
_FILE, _DIR = (0, 48, 55), 53  # regular ("0", NUL, contiguous "7"), folder ("5")
_PAX, _GLOBAL, _LONGNAME, _LONGLINK = 120, 103, 76, 75  # "x", "g", "L", "K"
_EXTENSIONS = (_PAX, _GLOBAL, _LONGNAME, _LONGLINK)
#: pax records that change what the fast scan reads: the tarfile path reads such tars
_PAX_UNREAD = r"(?:^|\n)\d+ (?:size|hdrcharset|GNU\.sparse\.[^=\n]*)="
_PAX_PATH = r"(?:^|\n)(\d+) path=([^\n]*)\n"


class Fallback(Exception):
    """The fast scan met a header it does not read; tarfile reads this file."""


def _octal(h: np.ndarray, at: int, width: int) -> np.ndarray:
    f = h[:, at:at + width].astype(np.int64)
    digit = (f >= 48) & (f <= 55)
    v = np.zeros(len(h), np.int64)
    for k in range(width):  # a loop over the field's digit positions, not over rows
        v = np.where(digit[:, k], v * 8 + (f[:, k] - 48), v)
    return v


def _binary(values: np.ndarray, offsets: np.ndarray) -> pa.Array:
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(values)])


def _gather(buf: np.ndarray, starts: np.ndarray, lens: np.ndarray) -> pa.Array:
    """The byte ranges ``buf[start:start+len]`` as one binary array. Member data starts at a
    512-byte block: the blocks are copied whole (at most the longest range's bytes of each)
    and their used bytes kept, with no per-byte index."""
    lens = np.asarray(lens, np.int64)
    offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    if len(buf) % 512 or (np.asarray(starts) % 512).any():
        idx = np.repeat(starts - offs[:-1], lens) + np.arange(offs[-1], dtype=np.int64)
        return _binary(buf[idx], offs)
    width = int(min(512, lens.max(initial=0)))
    nblk = (lens + 511) // 512
    before = np.concatenate([[0], np.cumsum(nblk)])
    k = np.arange(before[-1], dtype=np.int64) - np.repeat(before[:-1], nblk)  # block within member
    rows = np.asarray(buf).reshape(-1, 512)[np.repeat(starts // 512, nblk) + k, :width]
    used = np.repeat(lens, nblk) - 512 * k
    return _binary(rows[np.arange(width) < used[:, None]], offs)


def fixed_text(a: np.ndarray) -> pl.Series:
    """Rows of a uint8 matrix as NUL-padded text (a tar header field); bytes that are not
    UTF-8 become U+FFFD."""
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(a.shape[1]), len(a), [None, pa.py_buffer(np.ascontiguousarray(a))])
    return decode_binary_lossy(pl.from_arrow(arr.cast(pa.binary()))).str.strip_chars_end("\x00")


def header_names(h: np.ndarray) -> pl.Series:
    """The names that ustar headers hold: ``prefix/name`` where the prefix field is set
    (GNU headers keep other fields there)."""
    out = fixed_text(h[:, :100])
    prefix = h[:, 345:500] * (h[:, 262:263] != 32)
    if prefix.any():
        pre = fixed_text(prefix)
        out = pl.select(pl.when(pre.str.len_bytes() > 0).then(pre + "/" + out).otherwise(out)).to_series()
    return out.alias("name")


def header_matches(h: np.ndarray, names: pl.Series, sizes: np.ndarray) -> np.ndarray:
    """Whether each header block still describes the member ``names`` of ``sizes`` bytes that
    the scan found there: its size field, and its name (``prefix/name``), or for a longer name
    carried by a pax or GNU header before it, the first 100 bytes that the name field keeps."""
    ok = h[:, 257:262] == _USTAR
    ok = ok.all(axis=1) & (_octal(h, 124, 12) == sizes) & np.isin(h[:, 156], _FILE)
    field = fixed_text(h[:, :100]).str.strip_chars_end("\ufffd")
    same = (header_names(h) == names) | (
        (names.str.len_bytes() > 100) & (field.str.len_bytes() > 0) & names.str.starts_with(field))
    return ok & same.fill_null(False).to_numpy()


def key_ext(names: pl.Series) -> tuple[pl.Series, pl.Series]:
    """Each member name's sample ``key`` and its extension ``ext`` (lower case), as
    ``webdataset`` splits them (:data:`KEY`, one regex pass); null where the base name has no
    dot."""
    parts = names.str.extract_groups(KEY)
    return parts.struct.field("1").alias("key"), parts.struct.field("2").str.to_lowercase().alias("ext")


def _long_names(kind: np.ndarray, data: pl.Series, names: pl.Series) -> pl.Series:
    """``names`` with each member that follows a pax ``path`` or a GNU long name renamed
    (``data``: the data of each pax, global pax and GNU header, in order)."""
    hdr = np.flatnonzero(np.isin(kind, _EXTENSIONS))
    read = np.isin(kind[hdr], (_PAX, _LONGNAME))
    if not read.any():
        return names
    # byte searches first: most pax headers hold an mtime only (webdataset.TarWriter's), and
    # only the few that may hold a record read below are decoded and parsed
    maybe = [data.bin.contains(r).to_numpy() for r in (b"size=", b"hdrcharset=", b"GNU.sparse.")]
    unread = np.flatnonzero(read & np.logical_or.reduce(maybe))
    if len(unread) and decode_binary_lossy(data.gather(unread)).str.contains(_PAX_UNREAD).any():
        raise Fallback
    named = np.flatnonzero(read & ((kind[hdr] == _LONGNAME) | data.bin.contains(b" path=").to_numpy()))
    if not len(named):
        return names
    ext, text = hdr[named], decode_binary_lossy(data.gather(named))
    pax = text.str.extract_groups(_PAX_PATH)
    path = pax.struct.field("2")
    record = 2 + 5 + path.str.len_bytes() + pax.struct.field("1").str.len_chars()
    bad = path.is_not_null() & (record != pax.struct.field("1").cast(pl.Int64, strict=False))
    if bad.any():
        raise Fallback  # a path with a newline in it
    gnu = text.str.extract(r"^([^\x00]*)", 1)
    new = pl.select(pl.when(pl.Series(kind[ext] == _LONGNAME)).then(gnu).otherwise(path)).to_series()
    members = np.flatnonzero(~np.isin(kind, _EXTENSIONS))
    at = np.searchsorted(members, ext)
    target = np.append(members, -1)[at]  # -1: no member after it in this window
    # one name per member; a pax path wins over a GNU long name
    new = pl.DataFrame({"t": target, "pax": kind[ext] == _PAX, "name": new})
    new = new.filter(pl.col("t") >= 0).drop_nulls("name").sort(
        "t", "pax").unique("t", keep="last", maintain_order=True)
    return names.scatter(new["t"], new["name"])


def _members_fast(f, size: int, window: int) -> Iterator[pl.DataFrame]:
    """Member frames (name, offset, size, data, hash, key, ext), ``window`` bytes at a time."""
    pos, name = 0, None
    while pos < size:
        raw = _mapped(f, pos, min(window, size - pos))
        nb = len(raw) // 512
        if nb == 0:
            raise CurateError(f"truncated tar: the file ends inside a header at byte {pos}")
        buf = raw[: nb * 512]
        blocks = buf.reshape(nb, 512)
        if not blocks[0].any():
            return  # the end-of-archive blocks
        # one word per block compared (not five bytes): the candidate headers
        cand = np.flatnonzero((buf.view("<u8").reshape(nb, 64)[:, 32] & _MAGIC_MASK) == _MAGIC)
        h = blocks[cand]
        chk = h.sum(axis=1, dtype=np.uint32).astype(np.int64) - h[:, 148:156].sum(axis=1, dtype=np.int64) + 256
        ok = chk == _octal(h, 148, 8)
        if not ok.all():  # copies of the headers only where a candidate is not one
            cand, h = cand[ok], h[ok]
        if not len(cand) or cand[0] != 0 or (h[:, 124] & 0x80).any():
            raise Fallback
        sizes = _octal(h, 124, 12)
        nxt = cand + 1 + (sizes + 511) // 512
        if len(cand) > 1 and not np.array_equal(nxt[:-1], cand[1:]):
            path = _chain(cand, nxt, nb)  # rare: blocks inside a member that look like headers
            cand, h, sizes, nxt = cand[path], h[path], sizes[path], nxt[path]
        kind = h[:, 156]
        if not np.isin(kind, (*_FILE, _DIR, *_EXTENSIONS)).all():
            raise Fallback  # links, devices, sparse files
        inside = nxt <= nb
        extension = np.isin(kind, _EXTENSIONS)
        # pax and GNU headers name the member after them: read those names first
        gone = np.flatnonzero(extension & ~inside)
        upto = int(gone[0]) if len(gone) else len(cand)
        headers = np.flatnonzero(extension[:upto])
        ext_data = pl.Series("data", _gather(buf, (cand[headers] + 1) * 512, sizes[headers]))
        own = np.flatnonzero(~extension[:upto])  # the names of pax and GNU headers are not read
        names = pl.repeat(None, upto, dtype=pl.String, eager=True).scatter(own, header_names(h[own]))
        names = _long_names(kind[:upto], ext_data, names.alias("name"))
        key, ext = key_ext(names)
        regular = np.isin(kind[:upto], _FILE)
        text = ext.is_in(TEXT_EXTS).fill_null(False).to_numpy() & regular
        image = ext.is_in(IMAGE_EXTS).fill_null(False).to_numpy() & regular
        # the window ends before the first member whose data it does not hold (unless that is
        # the first: read on its own), and never between a pax or GNU header and its member
        late = np.flatnonzero(~inside[:upto] & (text | image))
        cut = int(late[0]) if len(late) else upto
        if cut == len(cand) and nxt[-1] < nb and blocks[nxt[-1]].any():
            raise Fallback  # the next header is of a kind the scan does not read
        while cut > 0 and kind[cut - 1] in _EXTENSIONS:
            cut -= 1
        if cut == 0 and kind[0] in _EXTENSIONS:
            raise Fallback  # a pax or GNU header before a member larger than the window
        last = max(cut, 1) - 1
        end = pos + int(nxt[last]) * 512
        if pos + int(cand[last] + 1) * 512 + int(sizes[last]) > size:
            raise CurateError(
                f"truncated tar: member {names[last]!r} at byte {pos + int(cand[last]) * 512} "
                f"needs {int(sizes[last]):,} bytes, the file ends at byte {size:,}")
        if cut == 0:  # one member larger than the window
            buf = _mapped(f, pos + 512, int(sizes[0]))
            starts, cut, base = np.zeros(1, np.int64), 1, pos + 512
        else:
            starts, base = (cand[:cut] + 1) * 512, pos
        n, text, image, names, key, ext = sizes[:cut], text[:cut], image[:cut], names[:cut], key[:cut], ext[:cut]
        data = _gather(buf, starts, np.where(text, n, 0))
        digest = np.zeros(cut, np.uint64)
        digest[image] = member_hashes(buf, starts[image], n[image])
        frame = pl.DataFrame({
            "name": names, "offset": starts + base, "size": n,
            "data": pl.Series("data", data), "hash": digest, "key": key, "ext": ext,
            "image": image, "file": np.isin(kind[:cut], _FILE),
        }, schema_overrides={"offset": pl.Int64, "size": pl.Int64})
        frame = frame.filter("file").with_columns(pl.when("image").then("hash").alias("hash"))
        yield frame.drop("file", "image")
        pos, name = end, names[max(cut, 1) - 1]
    if name is not None:
        raise cut_short(name, size)


def cut_short(name: str, size: int) -> CurateError:
    """The error for a tar that ends right after a member, without the end-of-archive blocks
    every tar writer puts last: a copy or download cut between two members."""
    return CurateError(f"truncated tar: the file ends at byte {size:,}, right after member {name!r}, without "
                       "the end-of-archive blocks (cut between members?); get the whole file again")


def _mapped(f, at: int, length: int) -> np.ndarray:
    """Bytes ``at .. at + length`` of the file, memory-mapped (read from the page cache
    without a copy; unmapped when the last view goes)."""
    start = at - at % mmap.ALLOCATIONGRANULARITY
    if length <= 0:
        return np.zeros(0, np.uint8)
    if is_url(getattr(f, "url", "")):  # an object in a store: one ranged read
        f.seek(at)
        return np.frombuffer(f.read(length), np.uint8)
    return np.memmap(f, np.uint8, "r", offset=start, shape=(at - start + length,))[at - start:]


def _chain(cand: np.ndarray, nxt: np.ndarray, nb: int) -> np.ndarray:
    """Indices of the candidates reachable from the first by member sizes (a loop over the
    members of this window, taken only when a block inside a member looks like a header)."""
    where = {int(c): i for i, c in enumerate(cand)}
    path, i = [], 0
    while True:
        path.append(i)
        n = int(nxt[i])
        if n >= nb or n not in where:
            return np.array(path)
        i = where[n]


def _members_tarfile(path: str, size: int, every: int = 10_000) -> Iterator[pl.DataFrame]:
    """The same member frames through Python's tarfile (one member at a time); image hashes
    from the file, memory-mapped, a batch at a time."""
    cols: dict[str, list] = {"name": [], "offset": [], "size": [], "data": []}
    mm = np.memmap(path, np.uint8, "r") if size else np.zeros(0, np.uint8)
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:  # per member: the slow path for headers the fast scan does not read
                if not m.isfile():
                    continue
                if m.offset_data + m.size > size:
                    raise CurateError(f"truncated tar: member {m.name!r} at byte {m.offset} needs "
                                      f"{m.size:,} bytes, the file ends at byte {size:,}")
                ext = m.name.rsplit("/", 1)[-1].partition(".")[2].lower()
                data = tf.extractfile(m).read() if ext in TEXT_EXTS else b""
                for k, v in zip(cols, (m.name, m.offset_data, m.size, data)):
                    cols[k].append(v)
                if len(cols["name"]) >= every:
                    yield _frame(cols, mm)
                    cols = {k: [] for k in cols}
            last = tf.members[-1] if tf.members else None
            if last is not None and last.offset_data + (last.size + 511) // 512 * 512 >= size:
                raise cut_short(last.name, size)
    except tarfile.TarError as e:
        raise CurateError(f"not a readable tar file ({first_line(e)})") from None
    if cols["name"]:
        yield _frame(cols, mm)


def _frame(cols: dict[str, list], mm: np.ndarray) -> pl.DataFrame:
    df = pl.DataFrame(cols, schema={"name": pl.String, "offset": pl.Int64, "size": pl.Int64, "data": pl.Binary})
    key, ext = key_ext(df["name"])
    image = ext.is_in(IMAGE_EXTS).fill_null(False).to_numpy()
    digest = np.zeros(df.height, np.uint64)
    digest[image] = member_hashes(mm, df["offset"].to_numpy()[image], df["size"].to_numpy()[image])
    return df.with_columns(pl.Series("hash", digest), key, ext).with_columns(
        pl.when(pl.Series(image)).then("hash").alias("hash"))


def members(path: str, window: int | None = None) -> Iterator[pl.DataFrame]:
    """Every regular member of the tar as frames of (name, offset, size, data, hash, key, ext), read
    ``window`` bytes (default :data:`WINDOW`) at a time."""
    import os

    url = is_url(path)  # an object in a store: each window one ranged read
    size = object_size(path) if url else os.path.getsize(path)
    done = 0
    try:
        with open_object(path, cache_type="none") if url else open(path, "rb") as f:
            for frame in _members_fast(f, size, window or WINDOW):
                done += frame.height
                yield frame
        return
    except Fallback:
        if url:
            raise CurateError("a tar with links, sparse files or long sizes is read from a local copy only; "
                              "copy it to local disk") from None
    for frame in _members_tarfile(path, size):
        if done >= frame.height:  # members the fast scan already gave
            done -= frame.height
            continue
        yield frame.slice(done)
        done = 0
