"""WebDataset tar shards, built with numpy for a whole shard at once (no per-sample loop).

Every sample is ``<key>.txt`` (the caption), ``<key>.json`` (every other manifest column)
and, where its source is a WebDataset shard, ``<key>.<ext>``: the original image member,
copied byte for byte from the source tar by the offset and size that ``curate score``
indexed. Only the selected members are read (a local source is memory-mapped and gathered in
512-byte blocks; a source in a store is read by byte range, :mod:`curate.export.ranges`);
the member's header in the source must still carry the member's name and size, and the
copied bytes must have the content hash that ``curate score`` recorded
(``image_hash``), else the source changed since it was scored and the export stops.
"""
from __future__ import annotations

import os

import numpy as np
import polars as pl
import pyarrow as pa

from curate.errors import CurateError
from curate.export import ranges
from curate.export.ranges import spread
from curate.hashing import member_hashes
from curate.ingest.tarscan import header_matches
from curate.storage.fs import is_url
from curate.storage.listing import size as object_size

IMAGE_COLUMNS = ("image_member", "image_offset", "image_size")

_HEADER = np.zeros(512, np.uint8)
for _at, _text in ((100, b"0000644\0"), (108, b"0000000\0"), (116, b"0000000\0"),
                   (136, b"00000000000\0"), (148, b"        "), (156, b"0"), (257, b"ustar\0"),
                   (263, b"00"), (329, b"0000000\0"), (337, b"0000000\0")):
    _HEADER[_at:_at + len(_text)] = np.frombuffer(_text, np.uint8)


def _octal(h: np.ndarray, at: int, values: np.ndarray, digits: int) -> None:
    """Write ``values`` as ``digits`` octal digits at column ``at`` of every header row."""
    v = values.astype(np.int64)
    for k in range(digits):  # a loop over digit positions, not rows
        h[:, at + k] = 48 + ((v >> (3 * (digits - 1 - k))) & 7)


def strings(s: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes and int64 offsets of a string column (nulls as empty strings)."""
    arr = s.fill_null("").to_arrow().cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    _, offs, data = arr.buffers()
    offsets = np.frombuffer(offs, np.int64)[arr.offset:arr.offset + len(arr) + 1]
    values = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return values, offsets


def _headers(names: pl.Series, sizes: np.ndarray) -> np.ndarray:
    data, offs = strings(names)
    lens = np.diff(offs)
    if len(lens) and lens.max() > 100:
        raise CurateError(f"tar member name longer than 100 bytes: {names[int(lens.argmax())]!r}")
    h = np.tile(_HEADER, (len(sizes), 1))
    flat = h.reshape(-1)
    flat[spread(np.arange(len(sizes), dtype=np.int64) * 512, lens)] = data[offs[0]:offs[-1]]
    _octal(h, 124, sizes, 11)
    _octal(h, 148, h.sum(axis=1, dtype=np.int64), 6)
    h[:, 154] = 0
    h[:, 155] = 32
    return h


def tar_bytes(t: pa.Table, expand: bool, meta: pl.DataFrame) -> bytes:
    """A POSIX ustar archive with ``<key>.txt``, ``<key>.json`` (``meta`` as JSON) and, where
    the row has a WebDataset image, ``<key>.<ext>`` per row, in row order.

    ``key`` is the sample id, zero-padded to 20 digits (and ``_<copy>`` with repeats
    expanded). Every member has mode 0644 and mtime 0, so the same rows give the same bytes.
    """
    df = pl.from_arrow(t)
    n = df.height
    key = pl.col("sample_id").cast(pl.String).str.zfill(20)
    if expand and "copy" in df.columns:
        width = len(str(max(int(df["copy"].max() or 0), 0)))
        key = key + "_" + pl.col("copy").cast(pl.String).str.zfill(width)
    keys = df.select(key.alias("k")).to_series()
    txt, txt_off = strings(df["caption"])
    js, js_off = strings(meta.select(pl.struct(pl.all()).struct.json_encode().alias("j")).to_series())
    has_img = all(c in df.columns for c in IMAGE_COLUMNS)
    if has_img:
        img = df.select(
            pl.col("image_member").str.extract(r"^(?:.*/)?[^./]+\.([^/]*)$", 1).alias("ext"),
            pl.col("image_offset").cast(pl.Int64, strict=False).alias("offset"),
            pl.col("image_size").cast(pl.Int64, strict=False).alias("size"),
        )
        img_ok = (img["ext"].is_not_null() & img["offset"].is_not_null() & img["size"].is_not_null()).to_numpy()
        img_len = np.where(img_ok, img["size"].fill_null(0).to_numpy(), 0).astype(np.int64)
        img_names = keys + "." + img["ext"].fill_null("")
    else:
        img_ok, img_len, img_names = np.zeros(n, bool), np.zeros(n, np.int64), keys
    # members in order: row 0's txt, json, image; row 1's ...; absent images are left out
    lens = np.stack([np.diff(txt_off), np.diff(js_off), img_len], axis=1)
    present = np.stack([np.ones(n, bool), np.ones(n, bool), img_ok], axis=1)
    names = pl.DataFrame({"a": keys + ".txt", "b": keys + ".json", "c": img_names}).select(
        pl.concat_list("a", "b", "c").alias("n")).explode("n")["n"].filter(pl.Series(present.ravel()))
    m_len = lens.ravel()[present.ravel()]
    m_blocks = 1 + (m_len + 511) // 512
    m_start = np.concatenate([[0], np.cumsum(m_blocks)[:-1]]).astype(np.int64)  # header block
    buf = np.zeros((int(m_blocks.sum()) + 2) * 512, np.uint8)  # two zero blocks end the archive
    blocks = buf.reshape(-1, 512)
    blocks[m_start] = _headers(names, m_len)
    slot = np.full(present.shape, -1, np.int64)
    slot[present] = np.arange(int(present.sum()))
    for col, values, offs in ((0, txt, txt_off), (1, js, js_off)):
        ls = np.diff(offs)
        if ls.sum():
            buf[spread((m_start[slot[:, col]] + 1) * 512, ls)] = values[spread(offs[:-1], ls)]
    if img_ok.any():
        _copy_images(df, img, img_ok, blocks, buf, m_start[slot[img_ok, 2]] + 1)
    return buf.tobytes()


def _copy_images(df: pl.DataFrame, img: pl.DataFrame, ok: np.ndarray, blocks: np.ndarray,
                 buf: np.ndarray, dest_block: np.ndarray) -> None:
    """Copy each image member's bytes from its source tar (a loop over source files)."""
    src = df["source"].filter(pl.Series(ok))
    off = img["offset"].filter(pl.Series(ok)).to_numpy()
    size = img["size"].filter(pl.Series(ok)).to_numpy()
    member = df["image_member"].filter(pl.Series(ok))
    for path in src.unique(maintain_order=True).to_list():
        sel = (src == path).to_numpy()
        u, first, back = np.unique(off[sel], return_index=True, return_inverse=True)
        mm, at = source_members(path, u, size[sel][first], member.filter(pl.Series(sel)).gather(first))
        o, s, d = at[back.ravel()], size[sel], dest_block[sel]
        src_blocks = mm[: len(mm) // 512 * 512].reshape(-1, 512)
        full = s // 512
        if full.sum():
            blocks[spread(d, full)] = src_blocks[spread(o // 512, full)]
        tail = s % 512
        if tail.sum():
            buf[spread((d + full) * 512, tail)] = mm[spread(o + full * 512, tail)]
        del mm, src_blocks
        if "image_hash" in df.columns:
            rows = df.filter(pl.Series(ok)).filter(pl.Series(sel))
            check_copied_images(buf, d * 512, s, rows["image_hash"], rows["sample_id"], path)


def source_members(path: str, o: np.ndarray, s: np.ndarray, members: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """The bytes that hold the image members of the source tar ``path`` (data at offsets
    ``o``, ascending and distinct; sizes ``s``) and where each member's data lies in them:
    a tar on local disk memory-mapped whole (the offsets as given); a tar in a store, only the
    members' blocks, read by byte range (:mod:`curate.export.ranges`). Each member's header
    must still carry its name (:func:`header_matches`) and size."""
    o, s = np.asarray(o, np.int64), np.asarray(s, np.int64)
    url = is_url(path)
    if not url and not os.path.isfile(path):
        raise CurateError(f"image source {path!r} is not there (export from the folder where "
                          f"`curate score` ran, or keep the shards where they were)")
    total = object_size(path) if url else os.path.getsize(path)
    if (o % 512).any() or (o < 512).any() or (o + s > total).any():
        raise CurateError(f"{path}: the tar changed since it was scored (an image member lies "
                          f"outside the file); score it again")
    if (o[1:] < o[:-1] + s[:-1]).any():
        raise CurateError(f"{path}: two image members overlap; score it again")
    mm, at = ranges.read_members(path, o, s, total) if url else (np.memmap(path, np.uint8, "r"), o)
    if not header_matches(mm[: len(mm) // 512 * 512].reshape(-1, 512)[at // 512 - 1], members, s).all():
        raise CurateError(f"{path}: the tar changed since it was scored (a member is not where it "
                          f"was); score it again")
    return mm, at


def check_copied_images(buf: np.ndarray, starts: np.ndarray, sizes: np.ndarray, want: pl.Series,
                        sample_ids: pl.Series, path: str) -> None:
    """Stop the export where an image copied into ``buf`` (at ``starts``, ascending) is not the
    one scored: its content hash differs from ``want`` (the run's ``image_hash``; null: not
    recorded, not checked). One line names the first such sample and the tar."""
    got = pl.Series(member_hashes(buf, starts, sizes), dtype=pl.UInt64)
    bad = (got != want.cast(pl.UInt64, strict=False)).fill_null(False)
    if bad.any():
        i = int(bad.arg_max())
        raise CurateError(f"{path}: the image of sample {sample_ids[i]} ({int(bad.sum()):,} of {len(bad):,} "
                          f"images from this tar) changed since it was scored; score it again")
