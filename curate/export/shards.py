"""Export a mixture as shards a trainer's data loader reads, with an index.

``curate export MIX --format parquet|jsonl|webdataset --out DIR`` writes the manifest rows
in manifest order, ``shard_rows`` samples per shard, and ``DIR/index.json`` (shards, row
counts, sha256 of each shard, the mixture id and how to load them):

* ``parquet``: ``part-00000.parquet`` ... (``datasets.load_dataset("parquet", ...)``);
* ``jsonl``: ``part-00000.jsonl`` ... (``datasets.load_dataset("json", ...)``);
* ``webdataset``: ``shard-00000.tar`` ... with ``<key>.txt`` (the caption) and
  ``<key>.json`` (everything else) per sample (``webdataset.WebDataset``).

Images are not part of a mixture: the shards carry ``url``/``image_path``/``image_id``
where the inputs had them, for a later download step (e.g. img2dataset).

In JSON (jsonl and the tar's .json members) the 64-bit ``sample_id`` and ``caption_hash``
are written as strings: JSON readers (pyarrow's, JavaScript's) lose or reject integers
above 2^63. With ``expand_repeats`` a sample with ``repeat = k`` is written k times (with
``copy`` = 0..k-1); otherwise once, with its ``repeat`` count.

Tar members are built with numpy for a whole shard at once (no per-sample Python loop).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.atomic import atomic_path, write_json
from curate.db import arrow_reader, connect, sql_str
from curate.errors import CurateError
from curate.hashing import file_sha256
from curate.layout import (
    MANIFEST,
    discard_staging,
    lock_output,
    replace_folder,
    staging_folder,
)
from curate.mix.manifest import load_mixture
from curate.tables import exact_tables

FORMATS = {"parquet": ("part", ".parquet"), "jsonl": ("part", ".jsonl"), "webdataset": ("shard", ".tar")}
BIG_INTS = ("sample_id", "caption_hash")
IMAGES_NOTE = ("images are not included: a mixture holds captions and provenance; use the url / "
               "image_path / image_id columns (where the inputs had them) to fetch images")


def export(mix: str | os.PathLike, fmt: str, out: str | os.PathLike, shard_rows: int = 10_000,
           expand_repeats: bool = False, overwrite: bool = False) -> dict:
    if fmt not in FORMATS:
        raise CurateError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    if shard_rows < 1:
        raise CurateError(f"shard size must be at least 1, got {shard_rows}")
    mix = Path(mix)
    m = load_mixture(mix)
    out = Path(out)
    if (out / "index.json").exists() and not overwrite:
        raise CurateError(f"{out} already holds an export; use another --out, or --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise CurateError(f"--out {out} is a file; give a folder")
    if out.resolve() == mix.resolve():
        raise CurateError("--out must not be the mixture folder itself")
    if out.exists() and not (out / "index.json").exists() and any(out.iterdir()):
        raise CurateError(f"{out} holds other files; export into a new or empty folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CurateError(f"cannot write to {out}: {e.strerror or e}") from None
    with lock_output(out):
        if (out / "index.json").exists() and not overwrite:
            raise CurateError(f"{out} already holds an export; use another --out, or --overwrite to replace it")
        stage = staging_folder(out)
        try:
            index = _export(mix, m, fmt, out, stage, shard_rows, expand_repeats)
        except BaseException:
            discard_staging(stage)
            raise
        replace_folder(stage, out)
    return index


def _export(mix: Path, m: dict, fmt: str, out: Path, stage: Path, shard_rows: int, expand_repeats: bool) -> dict:
    """Write every shard and, last, ``index.json`` into ``stage`` (named for ``out``)."""
    prefix, ext = FORMATS[fmt]
    shards = []
    rows = 0
    for i, table in enumerate(_shards(mix / MANIFEST, shard_rows, expand_repeats)):
        name = f"{prefix}-{i:05d}{ext}"
        with atomic_path(stage / name) as tmp:
            if fmt == "parquet":
                pq.write_table(table, tmp, compression="zstd")
            elif fmt == "jsonl":
                _json_frame(table).write_ndjson(tmp)
            else:
                tmp.write_bytes(tar_bytes(table, expand_repeats))
        shards.append({"file": name, "rows": table.num_rows, "bytes": (stage / name).stat().st_size,
                       "sha256": file_sha256(stage / name)})
        rows += table.num_rows
    last = len(shards) - 1
    index = {
        "mixture": m["mixture"],
        "content_hash": m["content_hash"],
        "from": str(mix),
        "format": fmt,
        "rows": rows,
        "samples": m["counts"]["samples"],
        "expand_repeats": expand_repeats,
        "shard_rows": shard_rows,
        "shards": shards,
        "columns": m["columns"] + (["copy"] if expand_repeats else []),
        "images": IMAGES_NOTE,
        "load_with": {
            "parquet": f'datasets.load_dataset("parquet", data_files="{out}/part-*.parquet", split="train")',
            "jsonl": f'datasets.load_dataset("json", data_files="{out}/part-*.jsonl", split="train")',
            "webdataset": f'webdataset.WebDataset("{out}/shard-{{00000..{last:05d}}}.tar")',
        }[fmt],
    }
    if fmt != "parquet":
        index["json_strings"] = list(BIG_INTS)
    write_json(index, stage / "index.json")
    return index


def _shards(manifest: Path, shard_rows: int, expand: bool) -> Iterator[pa.Table]:
    """The manifest's rows in order, re-cut into tables of exactly ``shard_rows`` rows."""
    if expand:
        con = connect()
        sql = (f"SELECT m.* EXCLUDE (file_row_number), CAST(c.copy AS INTEGER) AS copy "
               f"FROM read_parquet({sql_str(str(manifest))}, file_row_number = true) AS m, "
               f"range(m.repeat) AS c(copy) ORDER BY m.file_row_number, c.copy")
        batches = arrow_reader(con, sql, 65_536)
    else:
        con = None
        batches = pq.ParquetFile(manifest).iter_batches(batch_size=65_536)
    try:
        for t in exact_tables(batches, shard_rows):
            yield _plain(t)
    finally:
        if con is not None:
            con.close()


def _plain(t: pa.Table) -> pa.Table:
    """Plain string columns (DuckDB may hand over string views) in one chunk."""
    fields = [pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f for f in t.schema]
    return t.cast(pa.schema(fields)).combine_chunks()


def _json_frame(t: pa.Table) -> pl.DataFrame:
    df = pl.from_arrow(t)
    return df.with_columns([pl.col(c).cast(pl.String) for c in BIG_INTS if c in df.columns])


# -- WebDataset tar shards -----------------------------------------------------------------

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


def _strings(s: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """UTF-8 bytes and int64 offsets of a string column (nulls as empty strings)."""
    arr = s.fill_null("").to_arrow().cast(pa.large_string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    _, offs, data = arr.buffers()
    offsets = np.frombuffer(offs, np.int64)[arr.offset:arr.offset + len(arr) + 1]
    values = np.frombuffer(data, np.uint8) if data is not None else np.zeros(0, np.uint8)
    return values, offsets


def _headers(names: pl.Series, sizes: np.ndarray) -> np.ndarray:
    data, offs = _strings(names)
    width = int(offs[1] - offs[0]) if len(offs) > 1 else 0
    if len(offs) > 1 and not np.all(np.diff(offs) == width):
        raise CurateError("internal error: tar member names must have one length per shard")
    if width > 100:
        raise CurateError("internal error: tar member name longer than 100 bytes")
    h = np.tile(_HEADER, (len(sizes), 1))
    h[:, :width] = data[offs[0]:offs[-1]].reshape(len(sizes), width)
    _octal(h, 124, sizes, 11)
    _octal(h, 148, h.sum(axis=1, dtype=np.int64), 6)
    h[:, 154] = 0
    h[:, 155] = 32
    return h


def tar_bytes(t: pa.Table, expand: bool) -> bytes:
    """A POSIX ustar archive with ``<key>.txt`` and ``<key>.json`` per row, in row order.

    ``key`` is the sample id, zero-padded to 20 digits (and ``_<copy>`` with repeats
    expanded). Every member has mode 0644 and mtime 0, so the same rows give the same bytes.
    """
    df = pl.from_arrow(t)
    n = df.height
    key = pl.col("sample_id").cast(pl.String).str.zfill(20)
    if expand and "copy" in df.columns:
        width = len(str(max(int(df["copy"].max() or 0), 0)))
        key = key + "_" + pl.col("copy").cast(pl.String).str.zfill(width)
    meta = _json_frame(t).drop("caption")
    names = df.select(key.alias("k")).to_series()
    txt, txt_off = _strings(df["caption"])
    js, js_off = _strings(meta.select(pl.struct(pl.all()).struct.json_encode().alias("j")).to_series())
    txt_len, js_len = np.diff(txt_off), np.diff(js_off)
    pad = lambda x: (x + 511) // 512 * 512  # noqa: E731
    block = 512 + pad(txt_len) + 512 + pad(js_len)
    start = np.concatenate([[0], np.cumsum(block)[:-1]]).astype(np.int64)
    total = int(block.sum()) + 1024  # two zero blocks end the archive
    buf = np.zeros(total, np.uint8)
    lanes = np.arange(512, dtype=np.int64)
    buf[(start[:, None] + lanes).ravel()] = _headers(names + ".txt", txt_len).ravel()
    js_head = start + 512 + pad(txt_len)
    buf[(js_head[:, None] + lanes).ravel()] = _headers(names + ".json", js_len).ravel()
    for dest, values, offs, lens in ((start + 512, txt, txt_off, txt_len), (js_head + 512, js, js_off, js_len)):
        if lens.sum():
            idx = np.repeat(dest - offs[:-1], lens) + np.arange(offs[0], offs[-1], dtype=np.int64)
            buf[idx] = values[offs[0]:offs[-1]]
    assert n == len(start)
    return buf.tobytes()
