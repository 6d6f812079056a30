"""The labelled captions the ``judgement`` filter is trained and checked on.

Labels are stored as file + row + label + reason, never as caption text: the captions are
read from ``../shared/data`` (``CURATE_DATA``) by file and row. Two label files:

* ``../shared/data/labels/caption_worth_3500.parquet``: 3,500 captions of every kind;
* ``benchmarks/labels/caption_worth_*.csv`` (:data:`EXTRAS`): more captions labelled by the
  same rubric, from images of the training half only: ``caption_worth_extra.csv`` (above all
  LAION alt-text and long descriptions), ``caption_worth_pass3.csv`` (web alt-text and other
  languages; added with ``benchmarks/add_labels.py``, which checks them).

Images are split in two halves by crc32 of ``group_id``: even = "tune" (training, and every
constant chosen), odd = "held-out" (reported only; DESIGN convention 13).
"""
from __future__ import annotations

import zlib
from pathlib import Path

import polars as pl

from common import DATA, ROOT

LABELS = DATA / "labels" / "caption_worth_3500.parquet"
#: The extra label files, read in name order; a caption labelled twice keeps its first label.
EXTRAS = tuple(sorted((ROOT / "benchmarks" / "labels").glob("caption_worth_*.csv")))
LABEL_COLUMNS = ["file", "row", "label", "reason", "labeller"]
HALVES = {0: "tune", 1: "held-out"}


def half_of(group_id: pl.Series) -> pl.Series:
    """0 (tune) or 1 (held-out) by crc32 of ``group_id``, one entry per image."""
    ids = group_id.cast(pl.String).fill_null("")
    table = {g: zlib.crc32(g.encode()) % 2 for g in ids.unique().to_list()}
    return ids.replace_strict(table, return_dtype=pl.Int8)


def captions(files: list[str], data: Path = DATA) -> pl.DataFrame:
    """``file``, ``row``, ``caption``, ``group_id`` of the named files."""
    parts = []
    for f in sorted(set(files)):
        df = pl.read_parquet(data / f"{f}.parquet", columns=["caption", "group_id"])
        parts.append(df.with_row_index("row").select(
            pl.lit(f).alias("file"), pl.col("row").cast(pl.Int64), pl.col("caption").cast(pl.String),
            pl.col("group_id").cast(pl.String)))
    return pl.concat(parts)


def labelled(extra: bool = True, data: Path = DATA) -> pl.DataFrame:
    """Every labelled caption: ``file``, ``row``, ``group_id``, ``label``, ``reason``,
    ``caption``, ``half``, ``y`` (keep or fix: True), ``set`` ("3500" or "extra").
    A caption labelled in both files keeps its label of the 3,500."""
    base = pl.read_parquet(data / "labels" / LABELS.name).select(
        "file", pl.col("row").cast(pl.Int64), "label", "reason").with_columns(set=pl.lit("3500"))
    parts = [base]
    for path in EXTRAS if extra else ():
        more = pl.read_csv(path, schema_overrides={"row": pl.Int64, "reason": pl.String}).select(
            "file", "row", "label", pl.col("reason").fill_null(""), set=pl.lit("extra"))
        parts.append(more.join(pl.concat(parts).select("file", "row"), on=["file", "row"], how="anti"))
    lab = pl.concat(parts)
    caps = captions(lab["file"].unique().to_list(), data)
    lab = lab.join(caps, on=["file", "row"], how="left")
    if lab["caption"].null_count():
        raise SystemExit(f"{lab['caption'].null_count()} labelled rows are not in {data}")
    return lab.with_columns(half=half_of(lab["group_id"]), y=pl.col("label") != "drop").sort("set", "file", "row")
