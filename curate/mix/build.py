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

import os
import time
from pathlib import Path

import pyarrow.parquet as pq

from curate.atomic import atomic_path, write_json, write_text
from curate.db import (
    connect_sandboxed,
    duck_error,
    first_row,
    sql_str,
)
from curate.dedup.runs import set_of, set_problem
from curate.errors import CurateError
from curate.layout import (
    DUCKDB_TMP,
    MANIFEST,
    MANIFEST_JSON,
    QUERY,
    RECIPE,
    discard_staging,
    concepts_path,
    groups_path,
    load_run,
    lock_output,
    output_folder,
    pinned_groups,
    pinned_run,
    replace_folder,
    score_parts,
    scores_glob,
    staging_folder,
)
from curate.mix.balance_report import balance_problem, balance_stats
from curate.mix.manifest import content_hash, describe_input, manifest_stats, model_files, write_manifest
from curate.mix.concepts import concepts_problem
from curate.mix.recipe import Recipe, Source, load_recipe
from curate.mix.bounded import DUCKDB_SHARE, default_memory, parse_size, run_bounded
from curate.mix.columns import carried_names, column_types
from curate.mix.recipe import is_column
from curate.mix.sql import RunSource, output_columns, render_sql, seed_key
from curate.storage.commit import store_write
from curate.storage.fs import exists, is_url, open_file
from curate.version import __version__

#: the mix's default time limit (--timeout), seconds
DEFAULT_TIMEOUT_S = 6 * 3600
NUMERIC = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
           "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "BOOLEAN")


# -- inspecting and validating the sources -------------------------------------------------


def pin(recipe: Recipe) -> dict[str, tuple[Path, Path]]:
    """Each source's run version and groups file current now (:func:`curate.layout.pinned`)."""
    return {s.name: (pinned_run(s.path), pinned_groups(s.path)) for s in recipe.sources}


def inspect_sources(recipe: Recipe, con, pins: dict[str, tuple[Path, Path]] | None = None) -> list[RunSource]:
    """Each source's run, read at the version that is current now, or at ``pins`` (a writer
    that switches the run meanwhile does not change what this mix reads)."""
    out = []
    pins = pins or pin(recipe)
    for s in recipe.sources:
        at = f"source {s.name!r}"
        url = is_url(s.path)
        if not url and not s.path.is_dir():
            raise CurateError(f"{at}: run folder {s.run!r} not found (looked at {s.path})")
        version, pinned_group_file = pins[s.name]
        try:
            info = load_run(version)
        except CurateError as e:
            raise CurateError(f"{at}: {e}") from None
        if not score_parts(version):
            raise CurateError(f"{at}: {s.path} holds no scores/part-*.parquet")
        try:
            desc = con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_str(scores_glob(version))})").fetchall()
        except Exception as e:
            raise CurateError(f"{at}: cannot read the scores of {s.path} ({duck_error(e)})") from None
        cols = {r[0]: r[1] for r in desc}
        # a run on a store has no documented names of its own: its version is named instead
        groups = groups_path(version if url else s.path)
        has_groups = exists(groups) and not os.path.isdir(groups)
        the_set = set_of(s.path) if has_groups else None
        out.append(RunSource(s, info, scores_glob(version if url else s.path), cols, groups if has_groups else None,
                             the_set["id"] if the_set else None, read_glob=scores_glob(version),
                             read_groups=pinned_group_file if has_groups else None))
    carried_names(out)
    return out


def _columns_hint(cols: dict[str, str]) -> str:
    scores = [c for c in cols if c.startswith("score__")]
    other = [c for c in cols if not c.startswith("score__")]
    return f"score columns: {', '.join(scores) or '(none)'}; other columns: {', '.join(other)}"


def validate(recipe: Recipe, runs: list[RunSource], con, step=lambda what: None) -> None:
    """Check every expression and cap against each run's schema; no rows are read (but
    DuckDB folds constant parts of an expression while it checks it)."""
    caps = recipe.caps
    for r in runs:
        at = f"source {r.name!r}"
        step(f"{at}: checking eligible {r.src.eligible!r}, quality {r.src.quality!r}")
        group = recipe.group_of(r.src)
        checks = [("eligible", r.src.eligible, "BOOLEAN"), ("quality", r.src.quality, "number")]
        if group and not is_column(group):
            checks.append(("group_by", group, "any"))
        for key, expr, want in checks:
            try:
                stmts = con.extract_statements(f"SELECT ({expr}) AS x FROM t")
            except Exception as e:
                raise CurateError(f"{at}: {key} {expr!r}: SQL error: {duck_error(e)}") from None
            if len(stmts) != 1:
                raise CurateError(f"{at}: {key} {expr!r} is not one SQL expression")
            try:
                typ = con.execute(
                    f"DESCRIBE SELECT ({expr}) AS x FROM read_parquet({sql_str(r.paths(True)[0])})"
                ).fetchall()[0][1]
            except Exception as e:
                msg = duck_error(e)
                if "not found in FROM clause" in msg and '"' in msg:
                    col = msg.split('"')[1]
                    msg = f"unknown column {col!r}; {_columns_hint(r.columns)}"
                raise CurateError(f"{at}: {key} {expr!r}: {msg}") from None
            ok = typ == "BOOLEAN" if want == "BOOLEAN" else (
                want == "any" or typ in NUMERIC or typ.startswith("DECIMAL"))
            if not ok:
                raise CurateError(f"{at}: {key} {expr!r} gives {typ} values; it must give a {want}")
        if group and is_column(group) and r.column(group) is None and caps.missing != "null":
            carried = ", ".join(r.info.get("carried_columns", [])) or "(none)"
            raise CurateError(
                f"{at}: group_by column {group!r} is not in {r.src.run}; carried columns: {carried} "
                f"(carry it with `curate score --carry {group}`, give this source its own group_by, "
                "or set [caps] missing = \"null\" to leave its rows uncapped)"
            )
        if caps.per_dup_group is not None:
            if r.groups is None:
                raise CurateError(
                    f"{at}: [caps] per_dup_group needs near-duplicate groups, and {r.src.run} has none; "
                    f"run `curate dedup {r.src.run}` first"
                )
            stale = set_problem(r.src.path)
            if stale:
                raise CurateError(f"{at}: [caps] per_dup_group: {stale}")
            with open_file(r.paths(True)[1]) as f:
                names = pq.ParquetFile(f).schema_arrow.names
            if "sample_id" not in names or "dup_group" not in names:
                raise CurateError(f"{r.groups}: lacks sample_id or dup_group; rerun `curate dedup {r.src.run}`")
        if recipe.balance.per_concept is not None:
            stale = concepts_problem(r.src.path)
            if stale:
                raise CurateError(f"{at}: [balance] per_concept: {stale}")


# -- executing -----------------------------------------------------------------------------


def _precheck(recipe: Recipe, runs: list[RunSource], con, step=lambda what: None) -> dict[str, dict]:
    """Eligible rows (before caps) and their mean quality, per source; fails early when a
    share cannot be met even before the caps, or an expression fails on the data."""
    out = {}
    for r in runs:
        step(f"source {r.name!r}: eligible {r.src.eligible!r}, quality {r.src.quality!r}")
        sql = (f"SELECT count(*), avg(q) FROM (SELECT CAST(({r.src.quality}) AS DOUBLE) AS q "
               f"FROM read_parquet({sql_str(r.paths(True)[0])}) WHERE ({r.src.eligible})) "
               "WHERE q IS NOT NULL AND NOT isnan(q)")
        try:
            n, mean = first_row(con, sql)
        except Exception as e:
            raise CurateError(
                f"source {r.name!r}: eligible {r.src.eligible!r} or quality {r.src.quality!r} "
                f"failed on the data: {duck_error(e)}"
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
                  overwrite: bool = False, memory_limit: str | int | None = None,
                  timeout: float | None = DEFAULT_TIMEOUT_S) -> dict:
    """Run a recipe; write MIX/manifest.parquet, query.sql, recipe.toml and manifest.json.

    The folder is written aside in full and then put in the place of ``out`` in one step
    (:func:`curate.layout.replace_folder`), under ``out``'s lock: a failed or killed mix
    leaves the old mixture (or none), and two writers never both succeed. The recipe's SQL
    runs in a child process under ``memory_limit`` (default: half the machine's memory)
    and ``timeout`` seconds (None or 0: none), :func:`curate.mix.bounded.run_bounded`."""
    recipe = load_recipe(recipe_path)
    memory = parse_size(memory_limit) if memory_limit else default_memory()
    if is_url(out):  # written locally, then switched in on the store (curate.storage.commit)
        with store_write(os.fspath(out), "a mixture", MANIFEST_JSON, overwrite) as w:
            stage = w.output_folder()
            stage.mkdir(parents=True)
            manifest = run_bounded(_build, (recipe, recipe_path, os.fspath(out), stage, threads, memory), memory, timeout)
            w.commit_folder(stage, MANIFEST_JSON)
        return manifest
    out = output_folder(out, "a mixture", MANIFEST_JSON, overwrite)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CurateError(f"cannot write to {out}: {e.strerror or e}") from None
    with lock_output(out):
        output_folder(out, "a mixture", MANIFEST_JSON, overwrite)  # again, now that no other writer can change it
        stage = staging_folder(out)
        try:
            manifest = run_bounded(_build, (recipe, recipe_path, out, stage, threads, memory), memory, timeout)
        except BaseException:
            discard_staging(stage)
            raise
        replace_folder(stage, out)
    return manifest


def _build(recipe: Recipe, recipe_path, out: Path, stage: Path, threads: int | None, memory: int | None = None,
           step=lambda what: None) -> dict:
    pins = pin(recipe)
    versioned = [s for s in recipe.sources if not is_url(s.path) and pins[s.name][0].is_dir()
                 and pins[s.name][0] != s.path.resolve()]
    try:
        return _build_pinned(recipe, recipe_path, out, stage, threads, memory, step, pins)
    except Exception:
        for s in versioned:
            if not pins[s.name][0].is_dir():
                raise CurateError(
                    f"source {s.name!r}: the run {s.path} changed while the mix read it (another curate "
                    "command switched it twice); run the mix again"
                ) from None
        raise


def _build_pinned(recipe: Recipe, recipe_path, out: Path, stage: Path, threads: int | None, memory: int | None,
                  step, pins: dict[str, tuple[Path, Path]]) -> dict:
    t0 = time.perf_counter()
    step("reading the sources' scores")
    allowed = [scores_glob(v) for v, _ in pins.values()] + [g for _, g in pins.values()] + [stage]
    allowed += [concepts_path(v if is_url(v) else s.path) for s, (v, _) in zip(recipe.sources, pins.values())]
    con = connect_sandboxed(allowed, threads, temp_dir=stage / DUCKDB_TMP,
                            memory_limit=int(memory * DUCKDB_SHARE) if memory else None)
    try:
        runs = inspect_sources(recipe, con, pins)
        types, notes = column_types(output_columns(recipe, runs), runs)
        for r in runs:
            r.types = types
        validate(recipe, runs, con, step)
        t_valid = time.perf_counter()
        pre = _precheck(recipe, runs, con, step)
        sql = render_sql(recipe, runs)
        t_query = time.perf_counter()
        exprs = sorted({f"{r.src.eligible!r} / {r.src.quality!r}" for r in runs})
        step(f"the mixture query (eligible / quality: {'; '.join(exprs)})")
        with atomic_path(stage / MANIFEST) as tmp:
            write_manifest(con, render_sql(recipe, runs, read=True), tmp)
            t_written = time.perf_counter()
            stats = manifest_stats(con, tmp, recipe, runs)
            short = balance_problem(con, tmp, recipe, runs)
            if short:
                raise CurateError(short)
            for r in runs:
                s = stats["per_source"][r.name]
                if s["rows"] < recipe.quotas[r.name] and recipe.balance.per_concept is None:
                    _check_share(recipe, r.src, s["samples"], "eligible after the caps")
            if recipe.balance.active:
                stats["balance"] = balance_stats(con, tmp, recipe, runs)
            content = content_hash(tmp, [r.name for r in runs])
        t_done = time.perf_counter()
    finally:
        con.close()
        _rmtree(stage / DUCKDB_TMP)
    for name, s in stats["per_source"].items():
        s.update(pre[name])
    write_text(sql, stage / QUERY)
    write_text(recipe.to_toml(None if is_url(out) else out.resolve()), stage / RECIPE)
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
        "sql_file": QUERY,
        "sql": sql,
        "inputs": [describe_input(r) for r in runs],
        "filters": {r.name: r.info.get("filters", {}) for r in runs},
        "model_files": model_files(runs),
        "columns": [f.name for f in pq.ParquetFile(stage / MANIFEST).schema_arrow],
        "notes": notes,
        "counts": stats,
        "timings": {
            "validate_s": round(t_valid - t0, 3),
            "count_s": round(t_query - t_valid, 3),
            "query_s": round(t_written - t_query, 3),
            "stats_s": round(t_done - t_written, 3),
            "total_s": round(time.perf_counter() - t0, 3),
        },
    }
    write_json(manifest, stage / MANIFEST_JSON)
    return manifest


def _duckdb_version() -> str:
    import duckdb

    return duckdb.__version__


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)
