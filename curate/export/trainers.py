"""Export a mixture for one trainer: a shard set per source and the file that mixes them.

``curate export MIX --for open_clip|energon|mds|litdata|hf --out DIR`` writes, per source
of the mixture (a ``[[source]]`` of the recipe, the ``run`` column of the manifest),
``DIR/<source>/`` with that source's rows, every sample ``repeat`` times (copy 0..k-1, so
a source's samples are drawn as often as the mixture uses them), and one file that the
trainer reads to draw the sources at the mixture's shares (a source's rows over all rows):

=========  ==========================================  =====================================
trainer    shards per source                           mixing file
=========  ==========================================  =====================================
open_clip  WebDataset tars of the rows with an image   ``open_clip_args.txt``: ``--train-data
           (jpg/png/jpeg/webp) and ``sizes.json``      'a::b' --train-data-upsampling-factors
                                                       'x::y' --train-num-samples N ...``
energon    WebDataset tars, prepared with energon's    ``energon_blend.yaml`` (MetadatasetV2,
           API (``.nv-meta``): CaptioningSample where  blend weights, ``subflavors.source``)
           the source has images, TextSample else
mds        MDS shards (``streaming`` reads them)       ``mds_streams.json``: ``Stream(local,
                                                       proportion)`` per source
litdata    Parquet parts (``ParquetLoader``)           ``litdata_weights.json``
hf         Parquet parts                               ``hf_interleave.json``: data files and
                                                       ``interleave_datasets`` probabilities
=========  ==========================================  =====================================

open_clip draws whole shards, with replacement, with probability proportional to their
upsampling factor, and trains on image-bearing samples only. So its factors are the
source's share among the sources with images over its number of image-bearing samples
(times their total): a source's expected share of the drawn samples is its samples x
factor over the sum of those, which is its share of the mixture among image-bearing
sources. Rows without an image are left out of open_clip's and energon's image sources
and counted (``left_out``). Per sample every caption variant rides along in the ``.json``
(and the Parquet and MDS columns) under stable keys: ``caption`` (the curated caption),
``caption_original`` (as read) and ``caption_model`` (with ``model_caption``: a carried
column that holds a model's caption).
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.atomic import atomic_path, write_json, write_text
from curate.db import connect, sql_str
from curate.errors import CurateError
from curate.export import mds, tar
from curate.export.images import EXT, image_column
from curate.export.mixfiles import mix_file_text
from curate.export.shards import check_added, exported, manifest_tables, open_export, write_staged
from curate.export.writers import TRAINERS, json_frame
from curate.layout import INDEX_JSON, MANIFEST, lock_output
from curate.storage.fs import is_url

#: The image members open_clip's WebDataset pipeline reads (``rename(image="jpg;png;jpeg;webp")``).
OPEN_CLIP_IMAGES = ("jpg", "png", "jpeg", "webp")
MDS_COLUMNS = {"key": "str", "caption": "str", "image": "bytes", "json": "json"}


def export_for(mix: str | os.PathLike, trainer: str, out: str | os.PathLike, shard_rows: int = 10_000,
               overwrite: bool = False, model_caption: str | None = None) -> dict:
    if trainer not in TRAINERS:
        raise CurateError(f"unknown trainer {trainer!r}; trainers: {', '.join(TRAINERS)}")
    return exported(out, overwrite, lambda folder, over, final: _export_for(mix, trainer, folder, shard_rows, over,
                                                                           model_caption, final))


def _export_for(mix: str | os.PathLike, trainer: str, out: str | os.PathLike, shard_rows: int, overwrite: bool,
                model_caption: str | None, final: str | None) -> dict:
    """Export into the local folder ``out``; its files name the shards under ``final`` (the
    store version's URL), or under ``out`` itself."""
    origin = os.fspath(mix) if is_url(mix) else None
    mix, m, out = open_export(mix, out, shard_rows, overwrite)
    columns = pq.read_schema(mix / MANIFEST).names
    if model_caption is not None and model_caption not in columns:
        raise CurateError(f"--model-caption {model_caption!r}: the mixture has no such column; carried columns: "
                          f"{', '.join(c for c in columns if c not in ('sample_id', 'run', 'row'))}")
    check_added(columns, ["copy"] + (["image"] if trainer in ("litdata", "hf") else [])
                + (["caption_model"] if model_caption not in (None, "caption_model") else []))
    if trainer == "energon":
        _energon()  # before anything is written
    plan = source_plan(mix / MANIFEST, [i["name"] for i in m.get("inputs", [])], trainer)
    runs = {i["name"]: i["run"] if is_url(i["run"]) else Path(i["run"]) for i in m.get("inputs", [])}
    final = final or str(out.resolve())
    with lock_output(out):
        return write_staged(out, overwrite, lambda stage: _write(mix, m, trainer, final, stage, plan, runs,
                                                                 shard_rows, model_caption, origin))


def image_sql(columns: list[str], exts: tuple[str, ...] | None) -> str:
    """DuckDB condition: the manifest row has an image member (of one of ``exts``)."""
    if not all(c in columns for c in tar.IMAGE_COLUMNS):
        return "false"
    cond = ("image_member IS NOT NULL AND TRY_CAST(image_offset AS BIGINT) IS NOT NULL "
            "AND TRY_CAST(image_size AS BIGINT) IS NOT NULL")
    if exts:
        cond += f" AND lower(regexp_extract(image_member, {sql_str(EXT)}, 1)) IN ({', '.join(map(sql_str, exts))})"
    return cond


def source_plan(manifest: Path, names: list[str], trainer: str) -> list[dict]:
    """Per source (in recipe order): its rows (repeats counted), rows with an image, which
    rows go to the trainer (``where``), the rows left out and its weight in the mix file."""
    columns = pq.read_schema(manifest).names
    has_image = image_sql(columns, OPEN_CLIP_IMAGES if trainer == "open_clip" else None)
    con = connect()
    try:
        got = {r[0]: (int(r[1]), int(r[2] or 0)) for r in con.execute(
            f"SELECT run, sum(repeat), sum(repeat) FILTER (WHERE {has_image}) "
            f"FROM read_parquet({sql_str(str(manifest))}) GROUP BY run").fetchall()}
    finally:
        con.close()
    plan = []
    for name in names:
        rows, with_image = got.get(name, (0, 0))
        imaged = trainer == "open_clip" or (trainer == "energon" and with_image > 0)
        exported = with_image if imaged else rows
        plan.append({"name": name, "rows": rows, "with_image": with_image, "exported": exported,
                     "left_out": rows - exported,
                     "where": f"run = {sql_str(name)}" + (f" AND {has_image}" if imaged else ""),
                     "sample_type": ("CaptioningSample" if imaged else "TextSample") if trainer == "energon" else None})
    total = sum(p["rows"] for p in plan if p["exported"])
    for p in plan:
        p["share"] = p["rows"] / total if p["exported"] else 0.0
    if not total:
        what = "rows with a jpg/png/jpeg/webp image member" if trainer == "open_clip" else "rows"
        raise CurateError(f"the mixture has no {what} to export for {trainer}")
    if trainer == "open_clip":
        n = sum(p["exported"] for p in plan)
        for p in plan:
            p["factor"] = p["share"] * n / p["exported"] if p["exported"] else 0.0
    return plan


def _write(mix: Path, m: dict, trainer: str, final: str, stage: Path, plan: list[dict], runs: dict,
           shard_rows: int, model_caption: str | None, origin: str | None) -> dict:
    for p in plan:
        if not p["exported"]:
            p["shards"] = []
            continue
        folder = stage / p["name"]
        folder.mkdir()
        tables = manifest_tables(mix / MANIFEST, shard_rows, True, runs, where=p["where"])
        p["shards"] = _write_source(trainer, folder, (_variants(t, model_caption) for t in tables))
        p["images_copied"] = sum(s["images"] for s in p["shards"])
        if trainer == "energon":
            _prepare_energon(folder, p)
    mix_file = TRAINERS[trainer].mix_file
    text, load_with = mix_file_text(trainer, final, [p for p in plan if p["exported"]])
    write_text(text, stage / mix_file)
    index = {
        "mixture": m["mixture"], "content_hash": m["content_hash"], "from": origin or str(mix), "for": trainer,
        "mix_file": mix_file, "load_with": load_with, "shard_rows": shard_rows, "expand_repeats": True,
        "rows": sum(p["exported"] for p in plan),
        "images_copied": sum(p.get("images_copied", 0) for p in plan),
        "left_out": sum(p["left_out"] for p in plan),
        "caption_keys": ["caption", "caption_original"] + (["caption_model"] if model_caption else []),
        "sources": [{k: v for k, v in p.items() if k != "where" and v is not None} for p in plan],
    }
    write_json(index, stage / INDEX_JSON)
    return index


def _variants(t: pa.Table, model_caption: str | None) -> pa.Table:
    """The model caption column under its stable name, ``caption_model``."""
    if model_caption is None or model_caption == "caption_model":
        return t
    return t.rename_columns(["caption_model" if c == model_caption else c for c in t.column_names])


def _keys(t: pa.Table) -> pl.Series:
    df = pl.from_arrow(t.select(["sample_id", "copy"]))
    width = len(str(max(int(df["copy"].max() or 0), 0)))
    return df.select(pl.col("sample_id").cast(pl.String).str.zfill(20) + "_"
                     + pl.col("copy").cast(pl.String).str.zfill(width)).to_series()


def _write_source(trainer: str, folder: Path, tables) -> list[dict]:
    shards = []
    entries = []
    for i, t in enumerate(tables):
        if trainer in ("open_clip", "energon"):
            name = f"shard-{i:05d}.tar"
            with atomic_path(folder / name) as tmp:
                tmp.write_bytes(tar.tar_bytes(t, True, json_frame(t)))
            images = t.num_rows - t.column("image_member").null_count if "image_member" in t.column_names else 0
        else:
            img = image_column(pl.from_arrow(t))
            images = len(img) - img.null_count
            if trainer == "mds":
                name = f"shard.{i:05d}.mds"
                meta = json_frame(t).select(pl.struct(pl.all()).struct.json_encode()).to_series().to_arrow()
                values = {"key": _keys(t).to_arrow(), "caption": t.column("caption"), "image": img, "json": meta}
                data = mds.shard_bytes(MDS_COLUMNS, values)
                with atomic_path(folder / name) as tmp:
                    tmp.write_bytes(data)
                entries.append(mds.shard_entry(MDS_COLUMNS, name, t.num_rows, len(data)))
            else:
                name = f"train-{i:05d}.parquet"
                t = t.append_column("image", img)
                with atomic_path(folder / name) as tmp:
                    pq.write_table(t, tmp, compression="zstd")
                entries.append({"chunk_bytes": (folder / name).stat().st_size, "chunk_size": t.num_rows,
                                "dim": None, "filename": name, "types": [str(f.type) for f in t.schema]})
        shards.append({"file": name, "rows": t.num_rows, "images": images})
    if trainer == "open_clip":
        write_json({s["file"]: s["rows"] for s in shards}, folder / "sizes.json")
    if trainer == "mds":
        write_json(mds.index(entries), folder / INDEX_JSON)  # MDS names its index as curate does
    if trainer == "litdata":
        write_json(litdata_index(entries), folder / INDEX_JSON)  # so does LitData
    return shards


def litdata_index(parts: list[dict]) -> dict:
    """The ``index.json`` that ``litdata.index_parquet_dataset`` writes for a folder of Parquet
    parts: a StreamingDataset reads a folder in a store only through it. ``updated_at`` "0":
    LitData then keys its cache by the folder's URL, which names one export version."""
    types = parts[0]["types"] if parts else []
    config = {"chunk_bytes": None, "chunk_size": None, "compression": None, "data_format": types,
              "data_spec": None, "encryption": None, "item_loader": "ParquetLoader", "types": None}
    return {"chunks": [{k: v for k, v in p.items() if k != "types"} for p in parts], "config": config,
            "updated_at": "0"}


def _energon():
    try:
        from megatron.energon.flavors import BaseWebdatasetFactory
    except ImportError as e:
        raise CurateError(f"--for energon prepares each source with Megatron-Energon's own API; install it "
                          f"(pip install megatron-energon): {e}") from None
    return BaseWebdatasetFactory


def _prepare_energon(folder: Path, p: dict) -> None:
    """``.nv-meta`` by energon's ``prepare_dataset`` (all shards in the train split), then
    the ``dataset.yaml`` that ``energon prepare`` writes for a field map."""
    with contextlib.redirect_stdout(io.StringIO()):  # energon prints where it saved its files
        _energon().prepare_dataset(folder, [s["file"] for s in p["shards"]], shuffle_seed=None, workers=1,
                                   split_parts_ratio=[("train", 1.0), ("val", 0.0), ("test", 0.0)])
    if p["sample_type"] == "CaptioningSample":
        fields = {"image": ",".join(OPEN_CLIP_IMAGES + ("gif", "bmp", "tif", "tiff")), "caption": "txt"}
    else:
        fields = {"text": "txt"}
    yaml = ("sample_type:\n  __module__: megatron.energon\n  __class__: " + p["sample_type"] + "\nfield_map:\n"
            + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in fields.items()))
    write_text(yaml, folder / ".nv-meta" / "dataset.yaml")
