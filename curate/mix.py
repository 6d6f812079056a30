"""Mixtures: one DuckDB query, rendered from a recipe, over the runs' Parquet files.

``curate mix RECIPE --out MIX`` writes (DESIGN convention 8)::

    MIX/manifest.parquet  one row per selected sample, sorted by sample_id
    MIX/query.sql         the query that produced it (DuckDB runs it as is)
    MIX/recipe.toml       the resolved recipe; `curate mix MIX/recipe.toml` reproduces MIX
    MIX/manifest.json     written last: recipe + hash, SQL, inputs with fingerprints,
                          filters, models, versions, counts, and the mixture's content hash

Sampling is weighted sampling without replacement (Efraimidis & Spirakis 2006): every row
gets ``u`` in (0, 1) from SplitMix64(sample_id XOR seed_key), computed in exact integer
arithmetic inside the query, and the key ``-ln(u) / quality^alpha``; each source takes the
``quota`` rows with the smallest keys. ``u`` depends on nothing but the sample id and the
seed, and every ORDER BY ends in a unique key, so the manifest is the same bytes for any
thread count or machine.

Nothing is loaded whole into Python: DuckDB reads the Parquet parts and the manifest is
streamed to its file in fixed-size row groups.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import __version__
from .atomic import atomic_path, write_json, write_text
from .errors import CurateError
from .io import exact_tables, file_sha256
from .mix_sql import (  # noqa: F401  (connect ... sql_str are part of this module's API)
    RunSource, _duck_error, arrow_reader, arrow_table, connect, first_row, ident, render_sql,
    sampling_u, seed_key, sql_str,
)
from .mixture_recipe import Recipe, Source, load_recipe
from .run import load_run, scores_glob

DEDUP_GROUPS = Path("dedup") / "groups.parquet"
ROW_GROUP = 65_536
QUALITY_BUCKETS = 10
NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
           "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "BOOLEAN")


# -- inspecting and validating the sources -------------------------------------------------


def inspect_sources(recipe: Recipe, con) -> list[RunSource]:
    out = []
    for s in recipe.sources:
        at = f"source {s.name!r}"
        if not s.path.is_dir():
            raise CurateError(f"{at}: run folder {s.run!r} not found (looked at {s.path})")
        try:
            info = load_run(s.path)
        except CurateError as e:
            raise CurateError(f"{at}: {e}") from None
        glob = scores_glob(s.path)
        if not any((s.path / "scores").glob("part-*.parquet")):
            raise CurateError(f"{at}: {s.path} holds no scores/part-*.parquet")
        try:
            desc = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_str(glob)})").fetchall()
        except Exception as e:
            raise CurateError(f"{at}: cannot read the scores of {s.path} ({_duck_error(e)})") from None
        cols = {r[0]: r[1] for r in desc}
        groups = s.path / DEDUP_GROUPS
        out.append(RunSource(s, info, glob, cols, groups if groups.is_file() else None))
    return out


def _columns_hint(cols: dict[str, str]) -> str:
    scores = [c for c in cols if c.startswith("score__")]
    other = [c for c in cols if not c.startswith("score__")]
    return f"score columns: {', '.join(scores) or '(none)'}; other columns: {', '.join(other)}"


def validate(recipe: Recipe, runs: list[RunSource], con) -> None:
    """Check every expression and cap against each run's schema; no rows are read."""
    caps = recipe.caps
    for r in runs:
        at = f"source {r.name!r}"
        for key, expr, want in (("eligible", r.src.eligible, "BOOLEAN"), ("quality", r.src.quality, "number")):
            try:
                stmts = con.extract_statements(f"SELECT ({expr}) AS x FROM t")
            except Exception as e:
                raise CurateError(f"{at}: {key} {expr!r}: SQL error: {_duck_error(e)}") from None
            if len(stmts) != 1:
                raise CurateError(f"{at}: {key} {expr!r} is not one SQL expression")
            try:
                typ = con.execute(
                    f"DESCRIBE SELECT ({expr}) AS x FROM read_parquet({sql_str(r.glob)})"
                ).fetchall()[0][1]
            except Exception as e:
                msg = _duck_error(e)
                if "not found in FROM clause" in msg and '"' in msg:
                    col = msg.split('"')[1]
                    msg = f"unknown column {col!r}; {_columns_hint(r.columns)}"
                raise CurateError(f"{at}: {key} {expr!r}: {msg}") from None
            ok = typ == "BOOLEAN" if want == "BOOLEAN" else (typ in NUMERIC or typ.startswith("DECIMAL"))
            if not ok:
                raise CurateError(f"{at}: {key} {expr!r} gives {typ} values; it must give a {want}")
        if caps.group_by and caps.group_by not in r.columns:
            carried = ", ".join(r.info.get("carried_columns", [])) or "(none)"
            raise CurateError(
                f"{at}: [caps] group_by column {caps.group_by!r} is not in {r.src.run}; "
                f"carried columns: {carried} (carry it with `curate score --carry {caps.group_by}`)"
            )
        if caps.per_dup_group is not None:
            if r.groups is None:
                raise CurateError(
                    f"{at}: [caps] per_dup_group needs near-duplicate groups, and {r.src.run} has none; "
                    f"run `curate dedup {r.src.run}` first"
                )
            names = pq.ParquetFile(r.groups).schema_arrow.names
            if "sample_id" not in names or "dup_group" not in names:
                raise CurateError(f"{r.groups}: lacks sample_id or dup_group; rerun `curate dedup {r.src.run}`")


# -- executing -----------------------------------------------------------------------------


def _precheck(recipe: Recipe, runs: list[RunSource], con) -> dict[str, dict]:
    """Eligible rows (before caps) and their mean quality, per source; fails early when a
    share cannot be met even before the caps, or an expression fails on the data."""
    out = {}
    for r in runs:
        sql = (f"SELECT count(*), avg(q) FROM (SELECT CAST(({r.src.quality}) AS DOUBLE) AS q "
               f"FROM read_parquet({sql_str(r.glob)}) WHERE ({r.src.eligible})) WHERE q IS NOT NULL AND NOT isnan(q)")
        try:
            n, mean = first_row(con, sql)
        except Exception as e:
            raise CurateError(
                f"source {r.name!r}: eligible {r.src.eligible!r} or quality {r.src.quality!r} "
                f"failed on the data: {_duck_error(e)}"
            ) from None
        out[r.name] = {"eligible": int(n), "eligible_quality_mean": mean}
        _check_share(recipe, r.src, int(n), "eligible")
    return out


def _check_share(recipe: Recipe, src: Source, available: int, what: str) -> None:
    need = recipe.quotas[src.name]
    if available * src.repeat >= need:
        return
    amount = f"{recipe.kind} {src.amount:g}"
    if available == 0:
        raise CurateError(
            f"source {src.name!r}: no rows are {what}, but its {amount} needs {need:,} of {recipe.size:,}; "
            f"check its eligible condition {src.eligible!r}"
        )
    fix = -(-need // available)
    raise CurateError(
        f"source {src.name!r}: its {amount} needs {need:,} of {recipe.size:,} rows but only {available:,} are {what}"
        + (f" and repeat = {src.repeat} allows {available * src.repeat:,}" if src.repeat > 1 else "")
        + f"; lower its {recipe.kind} or size, or set repeat = {fix} on it"
    )


def build_mixture(recipe_path: str | os.PathLike, out: str | os.PathLike, threads: int | None = None,
                  overwrite: bool = False) -> dict:
    """Run a recipe; write MIX/manifest.parquet, query.sql, recipe.toml and manifest.json."""
    t0 = time.perf_counter()
    recipe = load_recipe(recipe_path)
    out = Path(out)
    _check_out(out, overwrite)
    con = connect(threads, temp_dir=out / ".duckdb-tmp")
    created = not out.exists()
    try:
        runs = inspect_sources(recipe, con)
        validate(recipe, runs, con)
        t_valid = time.perf_counter()
        pre = _precheck(recipe, runs, con)
        sql = render_sql(recipe, runs)
        t_query = time.perf_counter()
        # From here on MIX is being written: without manifest.json it is not a mixture.
        _make_out(out)
        (out / "manifest.json").unlink(missing_ok=True)
        with atomic_path(out / "manifest.parquet") as tmp:
            _write_manifest(con, sql, tmp)
            t_written = time.perf_counter()
            stats = manifest_stats(con, tmp, recipe, runs)
            for r in runs:
                s = stats["per_source"][r.name]
                if s["rows"] < recipe.quotas[r.name]:
                    _check_share(recipe, r.src, s["samples"], "eligible after the caps")
            content = content_hash(tmp, [r.name for r in runs])
        t_done = time.perf_counter()
    except BaseException:
        _rmtree(out / ".duckdb-tmp")
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a failed first attempt leaves no empty folder behind
        raise
    finally:
        con.close()
        _rmtree(out / ".duckdb-tmp")
    for name, s in stats["per_source"].items():
        s.update(pre[name])
    write_text(sql, out / "query.sql")
    write_text(recipe.to_toml(out.resolve()), out / "recipe.toml")
    manifest = {
        "mixture": f"mix-{content[:16]}",
        "content_hash": content,
        "content_hash_of": "blake2b-128 over the run names, then (run index u32, sample_id u64, repeat u32, "
                           "caption_hash u64) of every manifest row in order",
        "name": recipe.name,
        "description": recipe.description,
        "curate_version": __version__,
        "duckdb_version": _duckdb_version(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recipe": recipe.to_dict({r.name: str(r.src.path) for r in runs}),
        "recipe_file": str(Path(recipe_path)),
        "recipe_sha256": recipe.digest(),
        "quotas": recipe.quotas,
        "sampling": {
            "method": "Efraimidis-Spirakis weighted sampling without replacement, key = -ln(u) / max(quality, 0)^alpha",
            "u": "splitmix64(sample_id XOR seed_key), top 53 bits",
            "seed": recipe.seed,
            "seed_key": seed_key(recipe.seed),
        },
        "sql_file": "query.sql",
        "sql": sql,
        "inputs": [_describe_input(r) for r in runs],
        "filters": {r.name: r.info.get("filters", {}) for r in runs},
        "model_files": _model_files(runs),
        "columns": [f.name for f in pq.ParquetFile(out / "manifest.parquet").schema_arrow],
        "counts": stats,
        "timings": {
            "validate_s": round(t_valid - t0, 3),
            "count_s": round(t_query - t_valid, 3),
            "query_s": round(t_written - t_query, 3),
            "stats_s": round(t_done - t_written, 3),
            "total_s": round(time.perf_counter() - t0, 3),
        },
    }
    write_json(manifest, out / "manifest.json")
    return manifest


def _duckdb_version() -> str:
    import duckdb

    return duckdb.__version__


def _check_out(out: Path, overwrite: bool) -> None:
    if (out / "manifest.json").exists() and not overwrite:
        raise CurateError(f"{out} already holds a mixture; use another --out, or --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise CurateError(f"--out {out} is a file; give a folder")


def _make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CurateError(f"cannot write to {out}: {e.strerror or e}") from None


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)


def _write_manifest(con, sql: str, path: Path) -> int:
    """Stream the query's rows into ``path`` in row groups of exactly ROW_GROUP rows."""
    try:
        reader = arrow_reader(con, sql, ROW_GROUP)
    except Exception as e:
        raise CurateError(f"the mixture query failed: {_duck_error(e)}") from None
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
    value_set = pa.array(names, pa.string())
    for b in pf.iter_batches(batch_size=ROW_GROUP, columns=["run", "sample_id", "repeat", "caption_hash"]):
        rec = np.empty(b.num_rows, dt)
        rec["run"] = pc.index_in(b.column("run"), value_set=value_set).to_numpy(zero_copy_only=False)
        rec["sid"] = b.column("sample_id").to_numpy(zero_copy_only=False)
        rec["rep"] = b.column("repeat").to_numpy(zero_copy_only=False)
        rec["ch"] = pc.fill_null(b.column("caption_hash"), 0).to_numpy(zero_copy_only=False)
        h.update(rec.tobytes())
    return h.hexdigest()


def resolve_source_file(source: str, run_dir: Path, size: int | None = None) -> Path | None:
    """Where an input file named ``source`` (as given to `curate score`) is now.

    A relative name is looked up from the current folder, then from the run folder and its
    parents; a candidate whose size matches the recorded one wins."""
    p = Path(source)
    if p.is_absolute():
        return p if p.is_file() else None
    cands = [Path.cwd() / p, run_dir / p] + [parent / p for parent in list(run_dir.resolve().parents)[:3]]
    found = [c.resolve() for c in cands if c.is_file()]
    for c in found:
        if size is None or c.stat().st_size == size:
            return c
    return found[0] if found else None


def _describe_input(r: RunSource) -> dict:
    files = []
    for f in r.info.get("inputs", []):
        where = resolve_source_file(f["source"], r.src.path, f.get("bytes"))
        files.append({**f, "path": str(where) if where else None})
    decisions = r.info.get("decisions") or [{}]
    return {
        "name": r.name,
        "run": str(r.src.path),
        "run_key": r.info.get("key"),
        "run_json_sha256": file_sha256(r.src.path / "run.json"),
        "rows": r.info.get("rows"),
        "kept": r.info.get("kept"),
        "chain": r.info.get("chain", {}).get("name"),
        "decision": decisions[-1],
        "caption_column": r.info.get("caption_column"),
        "id_column": r.info.get("id_column"),
        "dedup_groups": str(r.groups) if r.groups else None,
        "files": files,
    }


def _model_files(runs: list[RunSource]) -> dict:
    out: dict = {}
    for r in runs:
        out.update(r.info.get("model_files") or {})
    return out


def load_mixture(mix: str | os.PathLike) -> dict:
    """``MIX/manifest.json``, checked to belong to a finished mixture."""
    p = Path(mix) / "manifest.json"
    if not p.is_file():
        if (Path(mix) / "manifest.parquet").is_file():
            raise CurateError(f"{mix}: the mixture did not finish (no manifest.json); run `curate mix` again")
        raise CurateError(f"{mix}: not a mixture folder (no manifest.json)")
    try:
        m = json.loads(p.read_text())
    except ValueError as e:
        raise CurateError(f"{p}: unreadable ({e})") from None
    if not (Path(mix) / "manifest.parquet").is_file():
        raise CurateError(f"{mix}: manifest.parquet is missing")
    return m
