"""Export a mixture as shards a trainer's data loader reads, with an index.

``curate export MIX --format parquet|jsonl|webdataset --out DIR`` writes the manifest rows
in manifest order, ``shard_rows`` samples per shard, and ``DIR/index.json`` (shards, row
counts, sha256 of each shard, the mixture id and how to load them):

* ``parquet``: ``part-00000.parquet`` ... (``datasets.load_dataset("parquet", ...)``);
* ``jsonl``: ``part-00000.jsonl`` ... (``datasets.load_dataset("json", ...)``);
* ``webdataset``: ``shard-00000.tar`` ... with ``<key>.txt`` (the caption) and
  ``<key>.json`` (everything else) per sample (``webdataset.WebDataset``).

Images are not part of a mixture: the shards carry ``url``/``image_path``/``image_id``
where the inputs had them, for a later download step (e.g. img2dataset). A sample scored
from a WebDataset shard is the exception: the webdataset format copies its image member
from the source tar, byte for byte (:mod:`curate.export.tar`), so curating and resharding
are one step.

When the manifest has ``caption_clean`` (cleaned captions), it is the sample's text
(``caption`` in Parquet and JSONL, ``.txt`` in WebDataset) and the caption as read is kept
beside it as ``caption_original``.

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

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.atomic import atomic_path, write_json
from curate.db import arrow_reader, connect, register_stores, sql_str
from curate.errors import CurateError
from curate.export import tar
from curate.export.writers import BIG_INTS, SHARD_FORMATS
from curate.export.writers import tar_bytes as tar_bytes  # one shard's tar, as before
from curate.hashing import file_sha256
from curate.layout import (
    INDEX_JSON,
    MANIFEST,
    discard_staging,
    lock_output,
    output_folder,
    replace_folder,
    pinned_run,
    score_parts,
    scores_glob,
    staging_folder,
)
from curate.mix.manifest import load_mixture
from curate.storage.commit import reading_copy, store_write
from curate.storage.fs import is_url
from curate.tables import exact_tables

IMAGES_NOTE = ("images are not included in parquet and jsonl shards: they carry url / image_path / image_id "
               "where the inputs had them; --format webdataset (or --for a trainer) copies the image members of "
               "samples scored from WebDataset shards")
IMAGES_COPIED = ("the image members of samples scored from WebDataset shards are copied byte for byte "
                 "(<key>.<ext>); other samples have no image: use their url / image_path / image_id")


def export(mix: str | os.PathLike, fmt: str, out: str | os.PathLike, shard_rows: int = 10_000,
           expand_repeats: bool = False, overwrite: bool = False) -> dict:
    if fmt not in SHARD_FORMATS:
        raise CurateError(f"unknown format {fmt!r}; formats: {', '.join(SHARD_FORMATS)}")
    return exported(out, overwrite, lambda folder, over, final: _export_into(mix, fmt, folder, shard_rows,
                                                                            expand_repeats, over, final))


def exported(out: str | os.PathLike, overwrite: bool, into) -> dict:
    """``into(folder, overwrite, final)`` exports into the local ``folder``, its files naming the
    shards under ``final`` (None: where they are). A URL ``out`` is written in a local folder,
    its files naming the new version's URLs, then switched in on the store
    (curate.storage.commit); a local one is written in place."""
    if is_url(out):
        with store_write(os.fspath(out), "an export", INDEX_JSON, overwrite) as w:
            local = w.output_folder()
            index = into(local, False, w.version_url)
            w.commit_folder(local, INDEX_JSON)
        return index
    return into(out, overwrite, None)


def _export_into(mix: str | os.PathLike, fmt: str, out: str | os.PathLike, shard_rows: int, expand_repeats: bool,
                 overwrite: bool, final: str | None) -> dict:
    """Export into the local folder ``out``; ``index.json`` names ``final`` (the store
    version's URL), or ``out`` itself."""
    origin = os.fspath(mix) if is_url(mix) else None
    mix, m, out = open_export(mix, out, shard_rows, overwrite)
    check_added(pq.read_schema(mix / MANIFEST).names, ["copy"] if expand_repeats else [])
    with lock_output(out):
        return write_staged(out, overwrite, lambda stage: _export(mix, m, fmt, final or out, stage, shard_rows,
                                                                  expand_repeats, origin))


def open_export(mix: str | os.PathLike, out: str | os.PathLike, shard_rows: int, overwrite: bool
                ) -> tuple[Path, dict, Path]:
    """The checks every export makes before it writes: the mixture, its columns, ``out``."""
    if shard_rows < 1:
        raise CurateError(f"shard size must be at least 1, got {shard_rows}")
    mix = reading_copy(os.fspath(mix)) if is_url(mix) else Path(mix)  # a store's: its current version
    m = load_mixture(mix)
    check_columns(mix / MANIFEST)
    if Path(out).resolve() == mix.resolve():
        raise CurateError("--out must not be the mixture folder itself")
    out = output_folder(out, "an export", INDEX_JSON, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CurateError(f"cannot write to {out}: {e.strerror or e}") from None
    return mix, m, out


def write_staged(out: Path, overwrite: bool, write) -> dict:
    """``write(stage)`` fills a staging folder that then replaces ``out`` in one step (call
    it holding :func:`lock_output`); returns what ``write`` returned."""
    output_folder(out, "an export", INDEX_JSON, overwrite)  # again, under the lock
    stage = staging_folder(out)
    try:
        index = write(stage)
    except BaseException:
        discard_staging(stage)
        raise
    replace_folder(stage, out)
    return index


def check_columns(manifest: Path) -> None:
    """A manifest whose columns repeat a name (in any case: DuckDB and most JSON consumers
    take ``url`` and ``URL`` for one) cannot be exported without losing one of them."""
    names = pq.read_schema(manifest).names
    seen: dict[str, str] = {}
    for n in names:
        if n.lower() in seen:
            raise CurateError(f"{manifest}: the columns {seen[n.lower()]!r} and {n!r} are one name to export "
                              f"(JSON, DuckDB); build the mixture again with a curate that gives each column "
                              f"one name")
        seen[n.lower()] = n


def check_added(columns: list[str], added: list[str]) -> None:
    """The columns an export adds (``caption_original`` beside a cleaned caption, and
    ``added``) must not take the name of a manifest column."""
    have = {c.lower(): c for c in columns}
    for a in (["caption_original"] if "caption_clean" in columns else []) + added:
        if a.lower() in have:
            raise CurateError(f"the mixture has a column {have[a.lower()]!r} and the export adds its own {a!r}; "
                              f"an export never writes two fields of one name: carry that column under another "
                              f"name (curate score) and mix again")


def _export(mix: Path, m: dict, fmt: str, out: Path | str, stage: Path, shard_rows: int, expand_repeats: bool,
            origin: str | None = None) -> dict:
    """Write every shard and, last, ``index.json`` into ``stage`` (named for ``out``)."""
    writer = SHARD_FORMATS[fmt]
    shards = []
    rows = 0
    per_source: dict[str, dict[str, int]] = {}
    runs = {i["name"]: i["run"] if is_url(i["run"]) else Path(i["run"]) for i in m.get("inputs", [])} \
        if writer.copies_images else {}
    for i, table in enumerate(manifest_tables(mix / MANIFEST, shard_rows, expand_repeats, runs)):
        name = f"{writer.prefix}-{i:05d}{writer.ext}"
        with atomic_path(stage / name) as tmp:
            writer.write(table, tmp, expand_repeats)
            count_images(table, per_source, copied=writer.copies_images)
        shards.append({"file": name, "rows": table.num_rows, "bytes": (stage / name).stat().st_size,
                       "sha256": file_sha256(stage / name)})
        rows += table.num_rows
    last = len(shards) - 1
    index = {
        "mixture": m["mixture"],
        "content_hash": m["content_hash"],
        "from": origin or str(mix),
        "format": fmt,
        "rows": rows,
        "samples": m["counts"]["samples"],
        "expand_repeats": expand_repeats,
        "shard_rows": shard_rows,
        "shards": shards,
        "columns": text_columns(m["columns"]) + (["copy"] if expand_repeats else []),
        "images": IMAGES_COPIED if writer.copies_images else IMAGES_NOTE,
        "images_copied": sum(p["images"] for p in per_source.values()),
        "rows_without_image": rows - sum(p["images"] for p in per_source.values()),
        "per_source": per_source,
        "load_with": writer.load_with.format(out=out, last=last),
    }
    if writer.json_strings:
        index["json_strings"] = list(BIG_INTS)
    write_json(index, stage / INDEX_JSON)
    return index


def count_images(t: pa.Table, per_source: dict[str, dict[str, int]], copied: bool = True) -> None:
    """Add the table's rows and (where images are ``copied``) its rows with an image
    member, per run, to ``per_source``."""
    df = pl.from_arrow(t.select([c for c in ("run", *tar.IMAGE_COLUMNS) if c in t.column_names]))
    has = pl.lit(False)
    if copied and all(c in df.columns for c in tar.IMAGE_COLUMNS):
        has = pl.all_horizontal(pl.col(c).is_not_null() for c in tar.IMAGE_COLUMNS)
    for run, n, k in df.group_by("run", maintain_order=True).agg(pl.len(), has.sum()).iter_rows():
        p = per_source.setdefault(run, {"rows": 0, "images": 0})
        p["rows"] += n
        p["images"] += k


def manifest_tables(manifest: Path, shard_rows: int, expand: bool, runs: dict[str, Path] | None = None,
                    where: str | None = None) -> Iterator[pa.Table]:
    """The manifest's rows in order, re-cut into tables of exactly ``shard_rows`` rows; with
    ``runs`` (name -> run folder), each row also gets its scores from its run (``score__*``,
    ``lang``, ``keep``, ``reason``), for the WebDataset ``.json`` members; with ``where``
    (DuckDB SQL over the manifest's columns), only the rows it selects."""
    # each run's current version, resolved once (a run on a store: the version its pointer names)
    versions = {name: pinned_run(path) for name, path in (runs or {}).items()}
    scored = {name: scores_glob(v) for name, v in versions.items() if score_parts(v)}
    if expand or scored or where:
        con = connect()
        register_stores(con, scored.values())
        base = f"read_parquet({sql_str(str(manifest))}, file_row_number = true)"
        if where:
            base = f"(SELECT * FROM {base} WHERE {where})"
        sql = f"SELECT m.* FROM {base} AS m"
        if scored:
            sql = _with_scores(con, base, scored)
        if expand:
            sql = (f"SELECT m.* EXCLUDE (file_row_number), CAST(c.copy AS INTEGER) AS copy "
                   f"FROM ({sql}) AS m, range(m.repeat) AS c(copy) ORDER BY m.file_row_number, c.copy")
        else:
            sql = f"SELECT * EXCLUDE (file_row_number) FROM ({sql}) ORDER BY file_row_number"
        batches = arrow_reader(con, sql, 65_536)
    else:
        con = None
        batches = pq.ParquetFile(manifest).iter_batches(batch_size=65_536)
    try:
        for t in exact_tables(batches, shard_rows):
            yield plain(t)
    finally:
        if con is not None:
            con.close()


def _with_scores(con, base: str, runs: dict[str, str]) -> str:
    """The manifest rows joined with their runs' scores (``runs``: name -> the glob of its
    version's parts), by run, sample_id, source, row."""
    from curate.db import ident

    parts = []
    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {base}").fetchall()}
    names: list[str] = []
    for name, path in runs.items():
        glob = sql_str(path)
        cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({glob})").fetchall()]
        take = [c for c in cols if (c.startswith("score__") or c in ("lang", "keep", "reason")) and c not in have]
        names += [c for c in take if c not in names]
        sel = ", ".join(ident(c) for c in take)
        parts.append(f"SELECT {sql_str(name)} AS run, sample_id, source, \"row\", {sel} FROM read_parquet({glob})")
    union = "\nUNION ALL BY NAME\n".join(parts)
    extra = ", ".join(f"s.{ident(c)}" for c in names)
    return (f"SELECT m.*, {extra} FROM {base} AS m LEFT JOIN ({union}) AS s "
            "ON s.run = m.run AND s.sample_id = m.sample_id AND s.source = m.source AND s.\"row\" = m.\"row\"")


def plain(t: pa.Table) -> pa.Table:
    """Plain string columns (DuckDB may hand over string views) in one chunk; with
    ``caption_clean``, that is the ``caption`` and the caption as read is ``caption_original``."""
    fields = [pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f for f in t.schema]
    t = t.cast(pa.schema(fields)).combine_chunks()
    if "caption_clean" not in t.column_names:
        return t
    cols = {n: t.column(n) for n in t.column_names}
    names = text_columns(t.column_names)
    cols["caption_original"], cols["caption"] = cols["caption"], cols.pop("caption_clean")
    return pa.table([cols[n] for n in names], names=names)


def text_columns(columns: list[str]) -> list[str]:
    """The exported columns: ``caption_clean`` becomes ``caption``, the original beside it."""
    if "caption_clean" not in columns:
        return list(columns)
    out = [c for c in columns if c != "caption_clean"]
    at = out.index("caption") + 1 if "caption" in out else len(out)
    return out[:at] + ["caption_original"] + out[at:]
