"""Image members of WebDataset sources as one Arrow binary column (for Parquet and MDS shards).

``curate score`` indexed each WebDataset sample's first image member: its name
(``image_member``), the offset of its data in the tar (``image_offset``) and its length
(``image_size``). :func:`image_column` gathers the selected members' bytes from the source
tars (memory-mapped on local disk; in a store, only the selected members, read by byte
range) with one gather per source file (no per-row loop), byte for byte.
Before reading, each member's header in the source must still carry its name and size, and
its bytes their content hash (``image_hash``, where the run recorded one); else the source
changed since it was scored and the export stops (as the tar writer does).
"""
from __future__ import annotations


import numpy as np
import polars as pl
import pyarrow as pa

from curate.export.tar import IMAGE_COLUMNS, check_copied_images, source_members

#: The image file name extension of a member name (``000042.jpg`` -> ``jpg``), as webdataset splits it.
EXT = r"^(?:.*/)?[^./]+\.([^/]*)$"


def image_index(df: pl.DataFrame) -> pl.DataFrame:
    """``ext``, ``offset``, ``size`` and ``ok`` (the row has an image member) per row."""
    if not all(c in df.columns for c in IMAGE_COLUMNS):
        return pl.DataFrame({"ext": pl.Series([None] * df.height, dtype=pl.String),
                             "offset": pl.Series([None] * df.height, dtype=pl.Int64),
                             "size": pl.Series([None] * df.height, dtype=pl.Int64),
                             "ok": pl.Series([False] * df.height)})
    img = df.select(
        pl.col("image_member").str.extract(EXT, 1).str.to_lowercase().alias("ext"),
        pl.col("image_offset").cast(pl.Int64, strict=False).alias("offset"),
        pl.col("image_size").cast(pl.Int64, strict=False).alias("size"),
    )
    return img.with_columns(ok=pl.all_horizontal(pl.col(c).is_not_null() for c in ("ext", "offset", "size")))


def image_expr() -> pl.Expr:
    """True where a manifest row has an image member (for filters and counts)."""
    return pl.all_horizontal(pl.col(c).is_not_null() for c in IMAGE_COLUMNS)


def image_column(df: pl.DataFrame) -> pa.Array:
    """The rows' image bytes (``large_binary``, null where a row has no image member).

    Per source tar, the selected members (each once, in file order) and the gaps between
    them are the elements of one binary array over the memory-mapped file; Arrow's ``take``
    copies the members out in row order (no per-row loop, no per-byte index)."""
    img = image_index(df)
    ok = img["ok"].to_numpy()
    rows = np.flatnonzero(ok)
    if not len(rows):
        return pa.nulls(df.height, pa.large_binary())
    src = df["source"].filter(pl.Series(ok))
    offset = img["offset"].to_numpy()[ok].astype(np.int64)
    size = img["size"].to_numpy()[ok].astype(np.int64)
    members = df["image_member"].filter(pl.Series(ok))
    hashes = df["image_hash"].filter(pl.Series(ok)) if "image_hash" in df.columns else None
    ids = df["sample_id"].filter(pl.Series(ok))
    pieces, order = [], []
    for path in src.unique(maintain_order=True).to_list():  # a loop over source files
        sel = (src == path).to_numpy()
        u, first, back = np.unique(offset[sel], return_index=True, return_inverse=True)
        s = size[sel][first]
        mm, at = source_members(path, u, s, members.filter(pl.Series(sel)).gather(first))
        if hashes is not None:
            check_copied_images(mm, at, s, hashes.filter(pl.Series(sel)).gather(first),
                                ids.filter(pl.Series(sel)).gather(first), path)
        bounds = np.stack([at, at + s], axis=1).ravel()  # member, gap, member, ..., member
        view = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(bounds) - 1,
                                                [None, pa.py_buffer(bounds), pa.py_buffer(mm)])
        pieces.append(view.take(pa.array(2 * back.ravel())))
        order.append(np.flatnonzero(sel))
        del view, mm
    got = pa.concat_arrays(pieces)
    at = np.empty(len(rows), np.int64)
    at[np.concatenate(order)] = np.arange(len(rows))
    # rows without an image point at a null appended at the end
    where = np.full(df.height, len(rows), np.int64)
    where[rows] = at
    return pa.concat_arrays([got, pa.nulls(1, pa.large_binary())]).take(pa.array(where))
