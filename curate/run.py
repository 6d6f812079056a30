"""Runs: ``score`` inputs into ``RUN/scores/*.parquet``, ``decide`` again with other thresholds.

Layout of a run folder::

    RUN/scores/part-FFFFF-BBBBB.parquet   one part per input file F and batch B
    RUN/chain.toml                        the resolved chain of the last decision
    RUN/run.json                          written last: inputs, chain, versions, counts

Parts are written atomically and a finished part is skipped when the same command runs
again (DESIGN convention 10); ``run.json`` appears only when every part is written.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, Iterator

import polars as pl

from . import __version__
from .atomic import write_json, write_parquet, write_parquet_file, write_text
from .chain import Chain, decide, parse_chain
from .engines import check_engine
from .errors import CurateError
from .io import (
    AUTO_CARRY, InputFile, check_columns, derived_ids, file_fingerprint, inspect_input,
    read_batches, resolve_inputs, text_hash64,
)

STATE = ".curate-state.json"
DEFAULT_BATCH_ROWS = 100_000
#: Below this many rows a worker pool costs more to start than it saves.
PARALLEL_MIN_ROWS = 300_000
#: For JSONL/CSV inputs, whose row count is unknown until read: bytes per row, roughly.
TEXT_BYTES_PER_ROW = 100

Progress = Callable[[int], None]


@dataclass
class ScoreOptions:
    caption_column: str = "caption"
    id_column: str | None = None
    carry: tuple[str, ...] = ()
    workers: int | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    overwrite: bool = False
    #: "local" (processes on this machine) or "ray" (curate.engines.ray_engine); the parts
    #: written are the same, so a run may be resumed with either
    engine: str = "local"
    #: with engine "ray": address of a running Ray cluster; None starts a local Ray
    address: str | None = None


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "scores").mkdir(exist_ok=True)
        probe = out / ".curate-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CurateError(f"cannot write to {out}: {e.strerror or e}") from None


def _state_key(chain: Chain, files: list[InputFile], opts: ScoreOptions, carry: list[str]) -> str:
    desc = {
        "scoring": chain.scoring_key(),
        "inputs": [f.describe() for f in files],
        "caption": opts.caption_column,
        "id": opts.id_column,
        "carry": carry,
        "batch_rows": opts.batch_rows,
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def _model_files(chain: Chain) -> dict[str, str]:
    out: dict[str, str] = {}
    for step in chain.steps:
        files = getattr(step.filter, "model_files", None)
        if files:
            out.update(files())
    return out


def _total_rows(files: list[InputFile]) -> int | None:
    import pyarrow.parquet as pq

    total = 0
    for f in files:
        if f.format != "parquet":
            return None
        total += pq.ParquetFile(f.path).metadata.num_rows
    return total


def _estimated_rows(files: list[InputFile]) -> int:
    """Rows in Parquet inputs (from their metadata) plus an estimate for text inputs."""
    import pyarrow.parquet as pq

    return sum(
        pq.ParquetFile(f.path).metadata.num_rows if f.format == "parquet" else f.size // TEXT_BYTES_PER_ROW
        for f in files
    )


def _redecide_if_stale(part: Path, chain: Chain) -> None:
    """A part kept from an earlier attempt holds the same scores, but its keep and reason may
    come from other thresholds (a `curate decide` since, or a chain that differs only in
    thresholds): decide it again with this chain, rewriting it only when that changes it."""
    df = pl.read_parquet(part)
    base = df.drop(["keep", "reason"], strict=False)
    for step in chain.steps:
        if step.filter.external and step.column not in base.columns:
            base = base.with_columns(pl.lit(None, pl.Float64).alias(step.column))
    new = decide(base, chain)
    if new.columns != df.columns or not new.select("keep", "reason").equals(df.select("keep", "reason")):
        write_parquet(new.to_arrow(), part)


# -- worker side --------------------------------------------------------------------------

_WORKER_CHAIN: Chain | None = None


def _init_worker(chain_dict: dict, where: str) -> None:
    global _WORKER_CHAIN
    _WORKER_CHAIN = parse_chain(chain_dict, where)


def _score_part(frame: pl.DataFrame, part: str) -> dict:
    assert _WORKER_CHAIN is not None
    return _score_and_write(frame, _WORKER_CHAIN, part)


def _score_and_write(frame: pl.DataFrame, chain: Chain, part: str) -> dict:
    from .scoring import score_frame

    t0 = time.perf_counter()
    scored = score_frame(frame, chain)
    write_parquet(scored.to_arrow(), part)
    return {"rows": scored.height, "seconds": time.perf_counter() - t0}


def _chain_to_data(chain: Chain) -> dict:
    d = chain.to_dict()
    for f in d["filter"]:
        f.pop("version", None)
    return d


# -- main side ----------------------------------------------------------------------------


def _with_provenance(batch: pl.DataFrame, inp: InputFile, start: int, opts: ScoreOptions, carry: list[str]) -> pl.DataFrame:
    n = batch.height
    if opts.id_column:
        nulls = batch["id"].null_count()
        if nulls:
            first = start + int(batch["id"].is_null().arg_max())
            raise CurateError(
                f"{inp.path}: id column {opts.id_column!r} is empty in {nulls} rows of a batch "
                f"(first at row {first}); every row needs an id"
            )
        sid = text_hash64(batch["id"]).alias("sample_id")
    else:
        sid = pl.Series("sample_id", derived_ids(inp.path, start, n), dtype=pl.UInt64)
    cols = [
        sid,
        pl.Series("source", [inp.path], dtype=pl.String).new_from_index(0, n) if n else pl.Series("source", [], dtype=pl.String),
        pl.Series("row", range(start, start + n), dtype=pl.Int64),
        batch["caption"],
    ]
    if opts.id_column:
        cols.append(batch["id"])
    for c in carry:
        cols.append(batch[c].cast(pl.String) if c in batch.columns else pl.Series(c, [None] * n, dtype=pl.String))
    return pl.DataFrame(cols)


def part_path(out: Path, fi: int, bi: int) -> Path:
    """The part of input file ``fi``'s batch ``bi`` (rows bi*batch_rows onwards)."""
    return out / "scores" / f"part-{fi:05d}-{bi:05d}.parquet"


def _file_parts(inp: InputFile, fi: int, out: Path, opts: ScoreOptions, carry: list[str],
                batches: Iterator[pl.DataFrame] | None = None, start: int = 0, first: int = 0,
                ) -> Iterator[tuple[Path, pl.DataFrame | None, int]]:
    """(part, frame with provenance or None where the part is already written, rows) for each
    batch of one input; ``batches`` (first row ``start``, first part ``first``) defaults to
    the whole file."""
    if batches is None:
        batches = read_batches(inp, opts.caption_column, opts.id_column, carry, opts.batch_rows)
    rows = start
    for bi, batch in enumerate(batches, first):
        part = part_path(out, fi, bi)
        yield part, (None if part.exists() else _with_provenance(batch, inp, rows, opts, carry)), batch.height
        rows += batch.height


def _score_local(files: list[InputFile], out: Path, chain: Chain, opts: ScoreOptions, carry: list[str],
                 workers: int, progress: Progress | None) -> tuple[list[dict], list[Path]]:
    """Score every input in this process or a pool of ``workers`` processes."""
    per_file: list[dict] = []
    pool = None
    saved_threads = os.environ.get("POLARS_MAX_THREADS")
    if workers > 1:
        from . import _worker

        # One worker per core, each on one polars thread. Set in this process's environment
        # while the workers start: a worker may import polars before its initialiser runs.
        os.environ["POLARS_MAX_THREADS"] = "1"
        pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=get_context("spawn"),
            initializer=_worker.init, initargs=(_chain_to_data(chain), chain.path or "chain"),
        )
    pending: deque[tuple[Future, int]] = deque()
    kept_parts: list[Path] = []  # finished by an earlier attempt

    def drain(limit: int) -> None:
        while len(pending) > limit:
            fut, n = pending.popleft()
            fut.result()
            if progress:
                progress(n)

    try:
        for fi, inp in enumerate(files):
            rows = 0
            for part, frame, n in _file_parts(inp, fi, out, opts, carry):
                if frame is not None:
                    if pool is None:
                        _score_and_write(frame, chain, str(part))
                        if progress:
                            progress(n)
                    else:
                        pending.append((pool.submit(_score_part, frame, str(part)), n))
                        drain(2 * workers)
                else:
                    kept_parts.append(part)
                    if progress:
                        progress(n)
                rows += n
            per_file.append({**inp.describe(), "rows": rows})
        drain(0)
    finally:
        if saved_threads is None:
            os.environ.pop("POLARS_MAX_THREADS", None)
        else:
            os.environ["POLARS_MAX_THREADS"] = saved_threads
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    return per_file, kept_parts


def score(inputs: list[str], out: str | os.PathLike, chain: Chain, opts: ScoreOptions | None = None,
          progress: Progress | None = None, total_cb: Callable[[int | None], None] | None = None) -> dict:
    """Score ``inputs`` with ``chain`` into the run folder ``out``; return ``run.json``'s content."""
    opts = opts or ScoreOptions()
    check_engine(opts.engine, opts.address)
    _check_carry(chain, opts)
    t_start = time.perf_counter()
    files = _outside(resolve_inputs(inputs), Path(out))
    for f in files:
        inspect_input(f)
        check_columns(f, opts.caption_column, opts.id_column)
    for c in opts.carry:
        if not any(c in f.columns for f in files):
            raise CurateError(f"no input has a column {c!r} to carry")
    carry = list(dict.fromkeys(
        [c for c in opts.carry] + [c for c in AUTO_CARRY if any(c in f.columns for f in files)]
    ))
    carry = [c for c in carry if c not in (opts.caption_column, opts.id_column)]
    model_files = _model_files(chain)  # fails early on a missing model
    total = _total_rows(files)
    if total == 0:
        raise CurateError(f"the inputs hold no rows: {_names(files)}")
    for f in files:
        f.fingerprint = file_fingerprint(f.path)
    out = Path(out)
    created = not out.exists()
    _prepare_out(out)
    key = _state_key(chain, files, opts, carry)
    _check_resume(out, key, opts.overwrite)
    write_json({"key": key, "started": time.time()}, out / STATE)

    if total_cb:
        total_cb(total)
    workers = opts.workers or os.cpu_count() or 1
    if not opts.workers and (total if total is not None else _estimated_rows(files)) < PARALLEL_MIN_ROWS:
        workers = 1

    t_score = time.perf_counter()
    engine_info: dict | None = None
    try:
        if opts.engine == "ray":
            from .engines.ray_engine import score_files

            per_file, kept_parts, workers, engine_info = score_files(files, out, chain, opts, carry, progress)
        else:
            per_file, kept_parts = _score_local(files, out, chain, opts, carry, workers, progress)
        if sum(f["rows"] for f in per_file) == 0:
            raise CurateError(f"the inputs hold no rows: {_names(files)}")
    except BaseException:
        if not any((out / "scores").glob("part-*.parquet")):
            _discard(out, created)  # nothing to resume: leave the folder as it was
        raise
    for part in kept_parts:
        _redecide_if_stale(part, chain)
    t_done = time.perf_counter()

    stats = run_stats(out, chain, ids_given=opts.id_column is not None)
    run = {
        "curate_version": __version__,
        "command": "score",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "key": key,
        "inputs": per_file,
        "caption_column": opts.caption_column,
        "id_column": opts.id_column,
        "carried_columns": carry,
        "batch_rows": opts.batch_rows,
        "workers": workers,
        "engine": opts.engine,
        **({"engine_info": engine_info} if engine_info else {}),
        "chain": chain.to_dict(),
        "chain_source": chain.path,
        "filters": {s.id: s.filter.ident for s in chain.steps},
        "model_files": model_files,
        "timings": {
            "total_s": round(t_done - t_start, 3),
            "score_s": round(t_done - t_score, 3),
            "rows_per_s": round(stats["rows"] / max(t_done - t_score, 1e-9), 1),
        },
        **stats,
        "decisions": [{"chain": chain.name, "digest": chain.digest(), "kept": stats["kept"]}],
    }
    write_text(chain.to_toml(), out / "chain.toml")
    write_json(run, out / "run.json")
    # STATE stays: with it, a run whose run.json was lost can still be completed.
    return run


def _outside(files: list[InputFile], out: Path) -> list[InputFile]:
    """The inputs that are not this run's own parts (a folder or glob that holds --out)."""
    inside = os.path.join(os.path.realpath(out / "scores"), "")
    kept = [f for f in files if not os.path.realpath(f.path).startswith(inside)]
    if not kept:
        raise CurateError(f"every input is a part of the run in {out}; score other files")
    return kept


def _check_carry(chain: Chain, opts: ScoreOptions) -> None:
    """A carried column must not take the name of a column that scoring writes."""
    taken = ["sample_id", "source", "row", "caption", *(["id"] if opts.id_column else []), "lang",
             *chain.score_columns, *(s.filter.label for s in chain.steps if s.filter.label), "keep", "reason"]
    for c in opts.carry:
        if c in taken and c not in (opts.caption_column, opts.id_column):
            raise CurateError(
                f"cannot carry column {c!r}: the outputs have a column of that name; "
                f"names taken: {', '.join(dict.fromkeys(taken))}"
            )


def _names(files: list[InputFile], most: int = 3) -> str:
    names = ", ".join(f.path for f in files[:most])
    return names + (f" and {len(files) - most} more" if len(files) > most else "")


def _discard(out: Path, created: bool) -> None:
    """Undo what a run that wrote nothing left behind."""
    (out / STATE).unlink(missing_ok=True)
    for folder in (out / "scores", out) if created else (out / "scores",):
        try:
            folder.rmdir()  # only when empty
        except OSError:
            pass


def _check_resume(out: Path, key: str, overwrite: bool) -> None:
    prior = None
    for name in ("run.json", STATE):
        p = out / name
        if p.exists():
            try:
                prior = json.loads(p.read_text()).get("key")
            except (OSError, ValueError):
                prior = None
            break
    has_parts = any((out / "scores").glob("part-*.parquet"))
    # no parts and no finished run: an attempt that wrote nothing (a stale state file) is no run
    if overwrite or (not has_parts and (prior is None or not (out / "run.json").exists())):
        if overwrite:
            shutil.rmtree(out / "scores", ignore_errors=True)
            (out / "scores").mkdir()
            for name in ("run.json", STATE, "chain.toml"):
                (out / name).unlink(missing_ok=True)
        return
    if prior != key:
        raise CurateError(
            f"{out} already holds a run of other inputs or another chain; "
            "use another --out, or --overwrite to replace it"
        )
    (out / "run.json").unlink(missing_ok=True)  # the run is being completed again


def scores_glob(run: str | os.PathLike) -> str:
    return str(Path(run) / "scores" / "part-*.parquet")


def _repeated_ids(con, run: str | os.PathLike) -> int:
    """Rows that repeat another row's sample_id (duplicate --id-column values). A query of
    its own that reads only sample_id (inside the quantiles' query the distinct set took
    2.5 times the memory), as a GROUP BY that DuckDB spills to a folder in the run beyond
    512 MB, so memory stays bounded at any run size."""
    import shutil
    import tempfile

    spill = tempfile.mkdtemp(prefix=".spill-", dir=run)
    try:
        con.execute(f"SET memory_limit = '512MB'; SET temp_directory = '{spill}'")
        n = con.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM read_parquet(?) "
            "GROUP BY sample_id HAVING count(*) > 1)", [scores_glob(run)]
        ).fetchone()[0]
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    return int(n)


def run_stats(run: str | os.PathLike, chain: Chain, ids_given: bool = False) -> dict:
    """Counts per reason and score quantiles, computed from the tables (convention 9).

    ``ids_given``: the ids come from an input column, so rows may repeat one; derived ids
    (source and row) are unique by construction and are not counted again."""
    lf = pl.scan_parquet(scores_glob(run))
    counts = lf.group_by("reason").agg(pl.len().alias("n")).collect()
    by_reason = {r: int(n) for r, n in counts.iter_rows() if r is not None}  # one row per reason
    rows = int(counts["n"].sum())
    kept = rows - sum(by_reason.values())
    ordered = {s: by_reason[s] for s in ["empty"] + [st.id for st in chain.steps] if s in by_reason}
    ordered.update({k: v for k, v in by_reason.items() if k not in ordered})
    cols = [c for c in chain.score_columns if c in lf.collect_schema().names()]
    qs = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
    quant = {}
    import duckdb

    con = duckdb.connect()
    con.execute("SET threads = 1")  # one thread: the digest, and so run.json, is deterministic
    try:
        duplicates = _repeated_ids(con, run) if ids_given else 0
        if cols:
            # DuckDB's t-digest quantiles: memory stays flat at any run size (exact quantiles
            # would hold every score of the run in memory)
            sel = ", ".join(f'approx_quantile("{c}", [{", ".join(map(str, qs))}])' for c in cols)
            row = con.execute(f"SELECT {sel} FROM read_parquet(?)", [scores_glob(run)]).fetchone()
            for c, values in zip(cols, row):
                quant[c] = {str(q): (None if v is None else round(float(v), 4))
                            for q, v in zip(qs, values or [None] * len(qs))}
    finally:
        con.close()
    langs = lf.group_by("lang").agg(pl.len().alias("n")).sort("n", descending=True).head(20).collect()
    return {
        "rows": rows,
        "kept": kept,
        "dropped": ordered,
        "quantiles": quant,
        "languages": {str(k): int(v) for k, v in langs.iter_rows()},  # the 20 largest
        "duplicate_sample_ids": int(duplicates),
    }


def load_run(run: str | os.PathLike) -> dict:
    p = Path(run) / "run.json"
    if not p.is_file():
        if (Path(run) / STATE).exists():
            raise CurateError(f"{run}: the run did not finish; run the same `curate score` command again to complete it")
        raise CurateError(f"{run}: not a curate run (no run.json)")
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise CurateError(f"{p}: unreadable ({e})") from None


def decide_run(run: str | os.PathLike, chain: Chain) -> dict:
    """Re-apply ``chain``'s thresholds to a run's stored scores, without re-scoring."""
    info = load_run(run)
    scored = {f["id"]: f for f in info["chain"]["filter"]}
    chain = _with_scored_lid_model(chain, scored)
    for step in chain.steps:
        if step.filter.external:
            continue
        prev = scored.get(step.id)
        if prev is None:
            raise CurateError(
                f"filter {step.id!r} was not scored in {run}; scored filters: {', '.join(scored)}"
            )
        if prev["name"] != step.filter.name or prev["version"] != step.filter.version or prev["params"] != step.filter.p:
            raise CurateError(
                f"filter {step.id!r} differs from the one scored in {run} "
                f"({prev['name']}@{prev['version']} {prev['params']}); re-score to change parameters"
            )
    t0 = time.perf_counter()
    parts = sorted((Path(run) / "scores").glob("part-*.parquet"))
    extra = external_scores(run, chain)
    # Every part is decided into a temporary file first and only then are they all renamed:
    # an interrupted decide leaves the run as it was, not half of its parts decided anew.
    staged: list[tuple[Path, Path]] = []
    try:
        for part in parts:
            df = pl.read_parquet(part).drop(["keep", "reason"], strict=False)
            if extra is not None:
                cols = [c for c in extra.columns if c != "sample_id"]
                df = df.drop(cols, strict=False).join(extra, on="sample_id", how="left", maintain_order="left")
            staged.append((part.with_name(f".tmp-decide-{part.name}"), part))
            write_parquet_file(decide(df, chain).to_arrow(), staged[-1][0])
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, part in staged:
        os.replace(tmp, part)
    stats = run_stats(run, chain, ids_given=info.get("id_column") is not None)
    info.update(stats)
    info["chain"] = _merge_chain(info["chain"], chain)
    info.setdefault("decisions", []).append(
        {"chain": chain.name, "digest": chain.digest(), "kept": stats["kept"],
         "seconds": round(time.perf_counter() - t0, 3)}
    )
    info["decision_chain"] = chain.to_dict()
    write_text(chain.to_toml(), Path(run) / "chain.toml")
    write_json(info, Path(run) / "run.json")
    return info


def _with_scored_lid_model(chain: Chain, scored: dict[str, dict]) -> Chain:
    """A decision chain that names no LID model means the run's: the model is chosen when
    scoring (``curate score --lid-model``), and ``decide`` has no such option."""
    steps = []
    for step in chain.steps:
        prev = scored.get(step.id) or {}
        model = prev.get("params", {}).get("model")
        if step.filter.name == "language" == prev.get("name") and model and not step.filter.p.get("model"):
            step = replace(step, filter=type(step.filter)(**{**step.filter.p, "model": model}))
        steps.append(step)
    return replace(chain, steps=steps)


def _merge_chain(scored: dict, chain: Chain) -> dict:
    """The run's chain keeps every scored filter; thresholds come from the new chain."""
    new = {s.id: s.to_dict() for s in chain.steps}
    merged = dict(scored)
    merged["filter"] = [new.pop(f["id"], f) for f in scored["filter"]] + list(new.values())
    merged["name"], merged["description"] = chain.name, chain.description
    return merged


def external_scores(run: str | os.PathLike, chain: Chain) -> pl.DataFrame | None:
    """Scores computed outside ``curate score`` (``score__neardup`` from ``curate dedup``)."""
    ext = [s for s in chain.steps if s.filter.external]
    if not ext:
        return None
    frames = []
    for step in ext:
        frames.append(step.filter.load(run, step.column))
    out = frames[0]
    for f in frames[1:]:
        out = out.join(f, on="sample_id", how="full", coalesce=True)
    return out
