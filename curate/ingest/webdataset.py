"""WebDataset shards (img2dataset's layout): one row per sample key, images indexed, not read.

A shard is a tar file whose members are grouped into samples by key: ``00042.jpg``,
``00042.txt`` and ``00042.json`` are one sample (the key is the member's path up to the
first dot of its base name, as in ``webdataset``). Each sample becomes one row:

* ``caption``: the ``.txt`` member (or, where a sample has none, the ``.json``'s
  ``caption`` field); ``--caption-column FIELD`` takes a field of the ``.json`` instead;
* ``key``: the sample key; every field of the ``.json`` member as a column;
* ``image_member``, ``image_offset``, ``image_size``: the first image member's name, the
  byte offset of its data in the tar and its length, so that ``curate export`` can copy it
  byte for byte. Images are never decoded or held in memory.

``row`` is the sample's index in the tar. The tar is scanned in windows of
:data:`WINDOW` bytes with numpy: every 512-byte block that carries the ustar magic and a
valid checksum is a candidate header, and the chain of member sizes from the first header
decides which candidates are real (a block inside an image that looks like a header is
skipped). A tar with other header kinds (pax or GNU long names, base-256 sizes, pre-POSIX
headers) is read with Python's :mod:`tarfile` instead, one member at a time (slower: about
10 microseconds a member).
"""
from __future__ import annotations

import os
import tarfile
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa

from curate.errors import CurateError, first_line
from curate.ingest.text import decode_binary_lossy, lone_surrogates_replaced, to_text

#: Bytes of the tar read at a time (text members are gathered from it, image members skipped).
WINDOW = 64 << 20
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff", "jxl", "avif", "heic")
TEXT_EXTS = ("txt", "json")
#: Columns every WebDataset input has (besides the ``.json`` fields).
INDEX_COLUMNS = ("caption", "key", "image_member", "image_offset", "image_size")
INDEX_TYPES = {"image_offset": "Int64", "image_size": "Int64"}
_USTAR = np.frombuffer(b"ustar", np.uint8)
_KEY = r"^((?:.*/|)[^./]+)\.([^/]*)$"  # webdataset's split of a member name into key and ext


class _Fallback(Exception):
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
    """The byte ranges ``buf[start:start+len]`` as one binary array (one numpy gather)."""
    offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    idx = np.repeat(starts - offs[:-1], lens) + np.arange(offs[-1], dtype=np.int64)
    return _binary(buf[idx], offs)


def fixed_text(a: np.ndarray) -> pl.Series:
    """Rows of a uint8 matrix as NUL-padded text (a tar header field); bytes that are not
    UTF-8 become U+FFFD."""
    arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(a.shape[1]), len(a), [None, pa.py_buffer(np.ascontiguousarray(a))])
    return decode_binary_lossy(pl.from_arrow(arr.cast(pa.binary()))).str.strip_chars_end("\x00")


def _names(h: np.ndarray) -> pl.Series:
    out = fixed_text(h[:, :100])
    prefix = h[:, 345:500] * (h[:, 262:263] != 32)  # GNU headers keep other fields there
    if prefix.any():
        pre = fixed_text(prefix)
        out = pl.select(pl.when(pre.str.len_bytes() > 0).then(pre + "/" + out).otherwise(out)).to_series()
    return out.alias("name")


def _members_fast(f, size: int) -> Iterator[pl.DataFrame]:
    """Member frames (name, offset, size, data) window by window; data only for text members."""
    pos = 0
    while pos < size:
        f.seek(pos)
        raw = f.read(WINDOW)
        nb = len(raw) // 512
        if nb == 0:
            raise CurateError(f"truncated tar: the file ends inside a header at byte {pos}")
        buf = np.frombuffer(raw, np.uint8, nb * 512)
        blocks = buf.reshape(nb, 512)
        if not blocks[0].any():
            return  # the end-of-archive blocks
        cand = np.flatnonzero((blocks[:, 257:262] == _USTAR).all(axis=1))
        h = blocks[cand]
        chk = h.sum(axis=1, dtype=np.int64) - h[:, 148:156].sum(axis=1, dtype=np.int64) + 256
        ok = chk == _octal(h, 148, 8)
        cand, h = cand[ok], h[ok]
        if not len(cand) or cand[0] != 0 or (h[:, 124] & 0x80).any():
            raise _Fallback
        sizes = _octal(h, 124, 12)
        nxt = cand + 1 + (sizes + 511) // 512
        path = np.arange(len(cand))
        if len(cand) > 1 and not np.array_equal(nxt[:-1], cand[1:]):
            path = _chain(cand, nxt, nb)  # rare: blocks inside a member that look like headers
        cand, h, sizes, nxt = cand[path], h[path], sizes[path], nxt[path]
        kind = h[:, 156]
        if not np.isin(kind, (0, 48, 53)).all():  # regular files and folders only
            raise _Fallback
        names = _names(h)
        ext = names.str.extract(_KEY, 2).str.to_lowercase()
        text = ext.is_in(TEXT_EXTS).fill_null(False).to_numpy()
        inside = nxt <= nb
        # a member whose data runs past the window: drop it (and what follows) unless it is
        # the first, or an image (its data is not needed)
        cut = len(cand)
        late = np.flatnonzero(~inside & text)
        if len(late) and late[0] > 0:
            cut = int(late[0])
        elif len(late):
            cut = 1
        end = pos + int(nxt[cut - 1]) * 512
        last_end = pos + int(cand[cut - 1] + 1) * 512 + int(sizes[cut - 1])
        if last_end > size:
            raise CurateError(
                f"truncated tar: member {names[cut - 1]!r} at byte {pos + int(cand[cut - 1]) * 512} "
                f"needs {int(sizes[cut - 1]):,} bytes, the file ends at byte {size:,}")
        if cut == len(cand) and nxt[-1] < nb and blocks[nxt[-1]].any():
            raise _Fallback  # the next header is of a kind the scan does not read
        starts = (cand[:cut] + 1) * 512
        lens = np.where(text[:cut] & (kind[:cut] != 53), sizes[:cut], 0)
        if cut == 1 and not inside[0] and text[0]:
            f.seek(pos + 512)
            big = np.frombuffer(f.read(int(sizes[0])), np.uint8)
            data = _binary(big, np.array([0, len(big)]))
        else:
            data = _gather(buf, starts, lens)
        frame = pl.DataFrame({
            "name": names[:cut], "offset": starts + pos, "size": sizes[:cut],
            "data": pl.Series("data", data), "dir": kind[:cut] == 53,
        }, schema_overrides={"offset": pl.Int64, "size": pl.Int64})
        yield frame.filter(~pl.col("dir")).drop("dir")
        pos = end


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
    """The same member frames through Python's tarfile (one member at a time)."""
    cols: dict[str, list] = {"name": [], "offset": [], "size": [], "data": []}
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
                    yield _frame(cols)
                    cols = {k: [] for k in cols}
    except tarfile.TarError as e:
        raise CurateError(f"not a readable tar file ({first_line(e)})") from None
    if cols["name"]:
        yield _frame(cols)


def _frame(cols: dict[str, list]) -> pl.DataFrame:
    return pl.DataFrame(cols, schema={"name": pl.String, "offset": pl.Int64, "size": pl.Int64, "data": pl.Binary})


def members(path: str) -> Iterator[pl.DataFrame]:
    """Every regular member of the tar as frames of (name, offset, size, data)."""
    size = os.path.getsize(path)
    done = 0
    try:
        with open(path, "rb") as f:
            for frame in _members_fast(f, size):
                done += frame.height
                yield frame
        return
    except _Fallback:
        pass
    for frame in _members_tarfile(path, size):
        if done >= frame.height:  # members the fast scan already gave
            done -= frame.height
            continue
        yield frame.slice(done)
        done = 0


def samples(path: str, batch_rows: int = 100_000, max_rows: int | None = None) -> Iterator[pl.DataFrame]:
    """Rows of one shard: caption (from .txt), key, the image index and each .json field."""
    held = None
    rows = 0
    for frame in members(path):
        if held is not None:
            frame = pl.concat([held, frame])
        keys = frame["name"].str.extract(_KEY, 1)
        new = (keys != keys.shift(1)).fill_null(True)
        last = int(new.cast(pl.Int64).cum_sum().max() or 0)
        sample = new.cast(pl.Int64).cum_sum() - 1
        frame = frame.with_columns(sample=sample, key=keys)
        # the last sample may go on in the next window
        held = frame.filter(pl.col("sample") == last - 1).drop("sample", "key")
        done = frame.filter(pl.col("sample") < last - 1)
        if done.height:
            out = _sample_rows(path, done)
            rows += out.height
            yield out
        if max_rows is not None and rows >= max_rows:
            return
    if held is not None and held.height:
        keys = held["name"].str.extract(_KEY, 1)
        sample = (keys != keys.shift(1)).fill_null(True).cast(pl.Int64).cum_sum() - 1
        yield _sample_rows(path, held.with_columns(sample=sample, key=keys))


def _sample_rows(path: str, m: pl.DataFrame) -> pl.DataFrame:
    """One row per sample from its members (vectorised: filters, group-bys and joins)."""
    m = m.with_columns(ext=pl.col("name").str.extract(_KEY, 2).str.to_lowercase())
    rows = m.group_by("sample", maintain_order=True).agg(pl.col("key").first())
    one = lambda e: m.filter(pl.col("ext") == e).group_by("sample", maintain_order=True).first()  # noqa: E731
    txt = one("txt")
    txt = txt.select("sample", to_text(txt["data"]).alias("caption"))
    img = (m.filter(pl.col("ext").is_in(IMAGE_EXTS)).group_by("sample", maintain_order=True).first()
           .select("sample", pl.col("name").alias("image_member"), pl.col("offset").alias("image_offset"),
                   pl.col("size").alias("image_size")))
    out = rows.join(txt, on="sample", how="left").join(img, on="sample", how="left")
    js = one("json")
    if js.height:
        fields = _json_fields(path, js)
        if "caption" in fields.columns:
            fields = fields.rename({"caption": "__json_caption"})
        fields = fields.drop([c for c in INDEX_COLUMNS if c in fields.columns])
        out = out.join(fields, on="sample", how="left")
        if "__json_caption" in out.columns:
            jc = out["__json_caption"]
            jc = jc if jc.dtype == pl.String else jc.cast(pl.String, strict=False)
            out = out.with_columns(pl.coalesce(pl.col("caption"), jc).alias("caption"),
                                   jc.alias("caption_json")).drop("__json_caption")
    if out.height and out["sample"][-1] != out.height - 1 + out["sample"][0]:
        raise CurateError("internal error: samples out of order")
    return out.drop("sample").with_columns(
        pl.col("image_offset").cast(pl.Int64), pl.col("image_size").cast(pl.Int64),
        pl.col("caption").cast(pl.String), pl.col("image_member").cast(pl.String))


def _json_fields(path: str, js: pl.DataFrame) -> pl.DataFrame:
    """The .json members parsed in one call (raw newlines, which JSON allows only as white
    space, become spaces, so each document is one line)."""
    text = to_text(js["data"]).str.replace_all(r"[\r\n]", " ")
    text = pl.select(pl.when(text.str.strip_chars() == "").then(pl.lit("{}")).otherwise(text)).to_series()
    blob = lone_surrogates_replaced(text.str.join("\n").item() + "\n")
    try:
        parsed = pl.read_ndjson(blob.encode(), infer_schema_length=None)
    except Exception as e:
        import json

        for name, doc in zip(js["name"], text):  # only after a failure: name the member
            try:
                if not isinstance(json.loads(doc), dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                raise CurateError(f"member {name!r} is not valid JSON ({first_line(err)})") from None
        raise CurateError(f"the .json members are not valid JSON ({first_line(e)})") from None
    if parsed.height != js.height:
        raise CurateError("a .json member is not one JSON object")
    return parsed.with_columns(js["sample"])


def inspect(path: str) -> tuple[list[str], bool]:
    """(columns, empty) from the first samples of a shard."""
    for batch in samples(path, max_rows=1):
        return list(dict.fromkeys([*INDEX_COLUMNS, *batch.columns])), False
    return list(INDEX_COLUMNS), True


def read(path: str, cols: list[str], batch_rows: int) -> Iterator[pl.DataFrame]:
    """Batches of at most ``batch_rows`` samples with the columns ``cols`` (null where absent)."""
    for frame in samples(path):
        for c in cols:
            if c not in frame.columns:
                frame = frame.with_columns(pl.lit(None, pl.String).alias(c))
        frame = frame.select(cols)
        for i in range(0, frame.height, batch_rows):
            yield frame.slice(i, batch_rows)
