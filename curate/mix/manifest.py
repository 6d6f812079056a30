"""The manifest of a mixture: writing it, its statistics and content hash, and reading it back.

``MIX/manifest.parquet`` holds one row per selected sample (ids, provenance, repeat,
caption hash, carried columns), in row groups of exactly :data:`ROW_GROUP` rows; its
content hash (blake2b-128 over the run names and every row's ids, repeat and caption hash)
names the mixture (DESIGN convention 8).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.db import arrow_reader, duck_error, first_row, sql_str
from curate.errors import CurateError
from curate.hashing import file_sha256
from curate.layout import MANIFEST, MANIFEST_JSON, RUN_JSON, pinned_store, read_store_json
from curate.mix.recipe import Recipe
from curate.mix.sql import RunSource
from curate.storage import exists, is_url, join
from curate.tables import exact_tables

ROW_GROUP = 65_536
QUALITY_BUCKETS = 10


def write_manifest(con, sql: str, path: Path) -> int:
    """Stream the query's rows into ``path`` in row groups of exactly ROW_GROUP rows."""
    try:
        reader = arrow_reader(con, sql, ROW_GROUP)
    except Exception as e:
        raise CurateError(f"the mixture query failed: {duck_error(e)}") from None
    schema = _manifest_schema(reader.schema)
    n = 0
    with pq.ParquetWriter(path, schema, compression="zstd") as w:
        for t in exact_tables(reader, ROW_GROUP, reader.schema):
            w.write_table(t.cast(schema), row_group_size=ROW_GROUP)
            n += t.num_rows
    return n


def _manifest_schema(schema: pa.Schema) -> pa.Schema:
    """Fixed Arrow types (plain strings, int64 rows) whatever DuckDB hands over."""
    fields = []
    for f in schema:
        t = f.type
        if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
            t = pa.string()
        elif pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
            v = t.value_type
            text = pa.types.is_string(v) or pa.types.is_large_string(v) or pa.types.is_string_view(v)
            t = pa.list_(pa.string() if text else v)  # the balance's concepts: a plain list of strings
        fields.append(pa.field(f.name, t))
    return pa.schema(fields)


def manifest_stats(con, manifest: Path, recipe: Recipe, runs: list[RunSource]) -> dict:
    """Counts per source and per quality bucket, computed from the manifest (convention 9)."""
    m = f"read_parquet({sql_str(str(manifest))})"
    per: dict[str, dict] = {}
    rows = con.execute(
        f"SELECT run, count(*), sum(repeat), count(*) FILTER (WHERE repeat > 1), max(repeat), "
        f"avg(quality), quantile_cont(quality, [0.1, 0.5, 0.9]), max(sample_key) FROM {m} GROUP BY run"
    ).fetchall()
    by = {r[0]: r for r in rows}
    for r in runs:
        _, samples, used, repeated, max_rep, mean_q, qs, cutoff = by.get(r.name, (r.name, 0, 0, 0, 0, None, None, None))
        per[r.name] = {
            "quota": recipe.quotas[r.name], "rows": int(used or 0), "samples": int(samples),
            "repeated_samples": int(repeated), "max_repeat": int(max_rep or 0),
            "share": round((used or 0) / recipe.size, 6),
            "quality_mean": mean_q,
            "quality_p10_p50_p90": list(qs) if qs else None,
            "key_cutoff": cutoff,
        }
    lo, hi = first_row(con, f"SELECT min(quality), max(quality) FROM {m}")
    buckets: dict = {"edges": None, "rows": {}}
    if lo is not None:
        width = (hi - lo) / QUALITY_BUCKETS if hi > lo else 1.0
        edges = [lo + i * width for i in range(QUALITY_BUCKETS)] + [hi]
        counts = con.execute(
            f"SELECT run, least(CAST(floor((quality - {lo!r}) / {width!r}) AS INTEGER), {QUALITY_BUCKETS - 1}) AS b, "
            f"sum(repeat) FROM {m} GROUP BY ALL"
        ).fetchall()
        table = {r.name: [0] * QUALITY_BUCKETS for r in runs}
        for run, b, n in counts:
            table[run][b] += int(n)
        buckets = {"edges": edges, "rows": table}
    total = sum(p["rows"] for p in per.values())
    return {"rows": total, "samples": sum(p["samples"] for p in per.values()),
            "per_source": per, "quality_buckets": buckets}


def content_hash(manifest: Path, names: list[str]) -> str:
    """blake2b-128 of the run names and, per row in order, (run index, sample_id, repeat,
    caption_hash) as packed little-endian numbers: independent of Parquet encoding."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(names).encode())
    dt = np.dtype([("run", "<u4"), ("sid", "<u8"), ("rep", "<u4"), ("ch", "<u8")])
    pf = pq.ParquetFile(manifest)
    index = {name: i for i, name in enumerate(names)}
    # through polars: pyarrow's array(), scalars and to_numpy() of nullable columns import
    # pandas (most of a second at the end of every mix)
    for b in pf.iter_batches(batch_size=ROW_GROUP, columns=["run", "sample_id", "repeat", "caption_hash"]):
        f = pl.from_arrow(b)
        rec = np.empty(b.num_rows, dt)
        rec["run"] = f["run"].replace_strict(index, return_dtype=pl.UInt32).to_numpy()
        rec["sid"] = f["sample_id"].to_numpy()
        rec["rep"] = f["repeat"].to_numpy()
        rec["ch"] = f["caption_hash"].fill_null(0).to_numpy()
        h.update(rec.tobytes())
    return h.hexdigest()


def resolve_source_file(source: str, run_dir: Path, size: int | None = None) -> Path | str | None:
    """Where an input file named ``source`` (as given to `curate score`) is now.

    A relative name is looked up from the current folder, then from the run folder and its
    parents; a candidate whose size matches the recorded one wins."""
    if is_url(source):  # an object in a store is where it was
        return source if exists(source) else None
    p = Path(source)
    if p.is_absolute():
        return p if p.is_file() else None
    cands = [Path.cwd() / p, run_dir / p] + [parent / p for parent in list(run_dir.resolve().parents)[:3]]
    found = [c.resolve() for c in cands if c.is_file()]
    for c in found:
        if size is None or c.stat().st_size == size:
            return c
    return found[0] if found else None


def describe_input(r: RunSource) -> dict:
    files = []
    url = is_url(r.src.path)  # a run on a store: its inputs as recorded, its version's run.json
    for f in r.info.get("inputs", []):
        where = f["source"] if url else resolve_source_file(f["source"], r.src.path, f.get("bytes"))
        files.append({**f, "path": str(where) if where else None})
    decisions = r.info.get("decisions") or [{}]
    return {
        "name": r.name,
        "run": str(r.src.path),
        "run_key": r.info.get("key"),
        "run_json_sha256": file_sha256(join(r.paths(True)[0].rsplit("/", 2)[0], RUN_JSON) if url
                                       else r.src.path / RUN_JSON),
        "rows": r.info.get("rows"),
        "kept": r.info.get("kept"),
        "chain": r.info.get("chain", {}).get("name"),
        "decision": decisions[-1],
        "caption_column": r.info.get("caption_column"),
        "id_column": r.info.get("id_column"),
        "dedup_groups": str(r.groups) if r.groups else None,
        "files": files,
    }


def model_files(runs: list[RunSource]) -> dict:
    out: dict = {}
    for r in runs:
        out.update(r.info.get("model_files") or {})
    return out


def load_mixture(mix: str | os.PathLike) -> dict:
    """``MIX/manifest.json``, checked to belong to a finished mixture."""
    if is_url(mix):  # a mixture on a store: its current version (docs/object-storage-runs.md)
        m = read_store_json(join(pinned_store(os.fspath(mix)), MANIFEST_JSON))
        if m is None:
            raise CurateError(f"{mix}: not a mixture (no manifest.json at its current version)")
        return m
    p = Path(mix) / MANIFEST_JSON
    if not p.is_file():
        if (Path(mix) / MANIFEST).is_file():
            raise CurateError(f"{mix}: the mixture did not finish (no manifest.json); run `curate mix` again")
        raise CurateError(f"{mix}: not a mixture folder (no manifest.json)")
    try:
        m = json.loads(p.read_text())
    except ValueError as e:
        raise CurateError(f"{p}: unreadable ({e})") from None
    if not (Path(mix) / MANIFEST).is_file():
        raise CurateError(f"{mix}: manifest.parquet is missing")
    return m
