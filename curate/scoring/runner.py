"""``curate score``: inputs in, one complete run folder out.

The runner pulls batches that already carry provenance from :mod:`curate.ingest`, has the
chain's filters add their columns (:mod:`curate.scoring.frame`, in worker processes for
large inputs) and writes one part per batch. Parts go into a new version of the run folder
(:class:`curate.layout.Snapshot`), and the run appears under its documented names only
when every part and ``run.json`` are written: an interrupted run leaves the folder as it
was, and the same command run again resumes it, skipping the parts already written.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import polars as pl

from curate.atomic import write_json, write_text
from curate.errors import CurateError
from curate.ingest.carry import carried_columns, set_carry_types
from curate.ingest.formats import FORMATS, known_rows
from curate.ingest.inputs import InputFile, check_columns, fingerprinting, inspect_input, resolve_inputs
from curate.ingest.provenance import read_with_provenance
from curate.ingest.sidecars import read_line, set_aside_sidecars
from curate.layout import (
    CHAIN_TOML,
    RUN_JSON,
    SCORES,
    STATE,
    lock_folder,
    part_path,
    run_snapshot,
    score_parts,
)
from curate.progress import Reporter
from curate.scoring import workers as wk
from curate.scoring.byid import write_index
from curate.scoring.chain import Chain
from curate.scoring.decide import redecide_if_stale
from curate.scoring.stats import run_stats
from curate.scoring.versions import discard_new, outside_run, prepare_out, version_for
from curate.storage.commit import store_write
from curate.storage.fs import is_url
from curate.version import __version__

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
    #: "local" (processes on this machine) or "ray" (curate.engines.ray_score); the parts
    #: written are the same, so a run may be resumed with either
    engine: str = "local"
    #: with engine "ray": address of a running Ray cluster; None starts a local Ray
    address: str | None = None
    #: the columns of CSV/TSV inputs without a header row, in order (``--columns caption,url``)
    columns: tuple[str, ...] = ()
    #: carry every input column (not bytes, not one named like an output column)
    carry_all: bool = False


#: Where the parts are computed: (files, version folder, chain, options, carried columns,
#: progress) -> (rows per file, parts kept from an earlier attempt, workers, engine info).
Backend = Callable[[list[InputFile], Path, Chain, ScoreOptions, list[str], "Progress | None"],
                   tuple[list[dict], list[Path], int, "dict | None"]]


def _state_key(chain: Chain, files: list[InputFile], opts: ScoreOptions, carry: list[str],
               model_files: dict[str, str]) -> str:
    """What the parts depend on: a part of an earlier attempt is reused only when all of it
    is the same (a model retrained in place changes its hash, and so the key)."""
    desc = {
        "scoring": chain.scoring_key(),
        "models": model_files,
        "inputs": [f.describe() for f in files],
        "caption": opts.caption_column,
        "id": opts.id_column,
        "carry": carry,
        "batch_rows": opts.batch_rows,
        **({"columns": list(opts.columns)} if opts.columns else {}),
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
    counts = [known_rows(f) for f in files]
    return None if None in counts else sum(counts)


def _estimated_rows(files: list[InputFile]) -> int:
    """Rows in inputs whose metadata counts them (Parquet) plus an estimate for the others."""
    counts = [known_rows(f) for f in files]
    return sum(f.size // TEXT_BYTES_PER_ROW if n is None else n for f, n in zip(files, counts))


def file_parts(inp: InputFile, fi: int, root: Path, opts: ScoreOptions, carry: list[str],
               batches: Iterator[pl.DataFrame] | None = None, start: int = 0, first: int = 0,
               ) -> Iterator[tuple[Path, pl.DataFrame | None, int]]:
    """(part under ``root``, batch with provenance or None where the part is already
    written, rows) for each batch of one input (see ``read_with_provenance``)."""
    for bi, frame in read_with_provenance(inp, opts.caption_column, opts.id_column, carry,
                                          opts.batch_rows, batches, start, first):
        part = part_path(root, fi, bi)
        yield part, (None if part.exists() else frame), frame.height


def local_workers(files: list[InputFile], opts: ScoreOptions) -> int:
    """Worker processes of a local run: ``opts.workers``, else one per core, or 1 for
    inputs of fewer than :data:`PARALLEL_MIN_ROWS` rows (counted, or estimated)."""
    workers = opts.workers or os.cpu_count() or 1
    if not opts.workers:
        total = _total_rows(files)
        if (total if total is not None else _estimated_rows(files)) < PARALLEL_MIN_ROWS:
            workers = 1
    return workers


def score_local(files: list[InputFile], root: Path, chain: Chain, opts: ScoreOptions, carry: list[str],
                progress: Progress | None, pool: wk.Pool | None = None) -> tuple[list[dict], list[Path], int, None]:
    """The local backend: this process, or a pool of one worker process per core (``pool``:
    one already started; closed here)."""
    workers = pool.workers if pool is not None else local_workers(files, opts)
    if pool is None and workers > 1:
        pool = wk.Pool(chain, workers)
    per_file: list[dict] = []
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
            for part, frame, n in file_parts(inp, fi, root, opts, carry):
                if frame is not None:
                    if pool is None:
                        wk.score_and_write(frame, chain, str(part))
                        if progress:
                            progress(n)
                    else:
                        pending.append((pool.submit(frame, str(part)), n))
                        drain(2 * workers)
                else:
                    kept_parts.append(part)
                    if progress:
                        progress(n)
                rows += n
            per_file.append({**inp.describe(), "rows": rows})
        drain(0)
    finally:
        if pool is not None:
            pool.close()
    return per_file, kept_parts, workers, None


def score(inputs: list[str], out: str | os.PathLike, chain: Chain, opts: ScoreOptions | None = None,
          reporter: Reporter | None = None, backend: Backend | None = None) -> dict:
    """Score ``inputs`` with ``chain`` into the run folder ``out``; return ``run.json``'s content.

    ``reporter`` hears of one stage, ``scoring``, counted in rows (:mod:`curate.progress`).

    ``backend`` computes the parts (default: :func:`score_local`); ``curate.engines``
    chooses it from ``opts.engine``. ``out`` may be a URL (``s3://bucket/run``): the run is
    written locally and switched in on the store in one step (:mod:`curate.storage.commit`)."""
    opts = opts or ScoreOptions()
    if is_url(out):
        with store_write(os.fspath(out), "a run") as w:
            if not opts.overwrite:
                w.materialise_run()  # completes or checks the run there
            run = score(inputs, w.local, chain, opts, reporter, backend)
            w.commit_run()
        return run
    if backend is None and opts.engine != "local":
        raise CurateError(f"engine {opts.engine!r} runs through curate.engines.score, which chooses its backend")
    _check_carry(chain, opts)
    t_start = time.perf_counter()
    files, sidecars = set_aside_sidecars(outside_run(resolve_inputs(inputs), Path(out)))
    pool = _early_pool(files, chain, opts) if backend is None else None
    try:
        return _score_files(files, sidecars, out, chain, opts, reporter,
                            backend or partial(score_local, pool=pool), t_start)
    finally:
        if pool is not None:
            pool.close()


def _early_pool(files: list[InputFile], chain: Chain, opts: ScoreOptions) -> wk.Pool | None:
    """The local backend's workers, started before the inputs are inspected and fingerprinted
    (their start overlaps that work); None for one worker, or where the row count cannot be
    read yet (the inspection names the input)."""
    try:
        workers = local_workers(files, opts)
    except CurateError:
        return None
    return wk.Pool(chain, workers) if workers > 1 else None


def _score_files(files: list[InputFile], sidecars: list[InputFile], out, chain: Chain, opts: ScoreOptions,
                 reporter: Reporter | None, backend: Backend, t_start: float) -> dict:
    line = read_line(files, sidecars)
    read = {**({"read": line} if line else {}), **({"sidecars": [f.path for f in sidecars]} if sidecars else {})}
    if opts.columns and not any(FORMATS[f.format].header_names for f in files):
        raise CurateError("--columns names the columns of CSV/TSV files without a header row; no input is CSV/TSV")
    with fingerprinting(files):  # the files are hashed while their headers are read
        for f in files:
            inspect_input(f, opts.columns)
            check_columns(f, opts.caption_column, opts.id_column)
        carry = carried_columns(files, opts.carry, opts.carry_all, _taken(chain, opts))
        carry = [c for c in carry if c not in (opts.caption_column, opts.id_column)]
        set_carry_types(files, carry)
        model_files = _model_files(chain)  # fails early on a missing model
        total = _total_rows(files)
        if total == 0:
            raise CurateError(f"the inputs hold no rows: {_names(files)}")
    out = Path(out)
    created = not out.exists()
    prepare_out(out)
    try:
        with lock_folder(out):
            return _score_locked(files, out, chain, opts, carry, model_files, total, t_start,
                                 reporter or Reporter(), backend, read)
    except BaseException:
        if created:
            discard_new(out)
        raise


def _score_locked(files, out: Path, chain: Chain, opts: ScoreOptions, carry, model_files, total,
                  t_start, reporter: Reporter, backend: Backend, read: dict) -> dict:
    key = _state_key(chain, files, opts, carry, model_files)
    snap = run_snapshot(out)
    version = version_for(out, snap, key, opts.overwrite)
    (version / SCORES).mkdir(exist_ok=True)
    write_json({"key": key, "version": version.name, "started": time.time()}, out / STATE)
    progress = reporter.stage("scoring", total)
    t_score = time.perf_counter()
    try:
        per_file, kept_parts, workers, engine_info = backend(files, version, chain, opts, carry, progress)
        if sum(f["rows"] for f in per_file) == 0:
            raise CurateError(f"the inputs hold no rows: {_names(files)}")
    except BaseException:
        if not score_parts(version):
            # nothing to resume: leave the folder as it was
            (out / STATE).unlink(missing_ok=True)
            snap.drop_others()
        raise
    for part in kept_parts:
        redecide_if_stale(part, chain)
    t_done = time.perf_counter()

    stats = run_stats(version, chain, ids_given=opts.id_column is not None, spill_root=snap.tmp)
    t_index = time.perf_counter()
    write_index(version, key, snap.tmp)
    t_index = time.perf_counter() - t_index
    run = {
        "curate_version": __version__,
        "command": "score",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "key": key,
        "inputs": per_file,
        **read,
        "caption_column": opts.caption_column,
        "id_column": opts.id_column,
        "carried_columns": carry,
        **({"header_columns": list(opts.columns)} if opts.columns else {}),
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
            "index_s": round(t_index, 3),
        },
        **stats,
        "decisions": [{"chain": chain.name, "digest": chain.digest(), "kept": stats["kept"]}],
    }
    write_text(chain.to_toml(), version / CHAIN_TOML)
    write_json(run, version / RUN_JSON)
    snap.commit(version)
    # STATE stays: with it, a run whose run.json was lost can still be completed.
    return run


def _check_carry(chain: Chain, opts: ScoreOptions) -> None:
    """A carried column must not take the name of a column that scoring writes."""
    taken = _taken(chain, opts)
    for c in opts.carry:
        if c in taken and c not in (opts.caption_column, opts.id_column):
            raise CurateError(
                f"cannot carry column {c!r}: the outputs have a column of that name; "
                f"names taken: {', '.join(dict.fromkeys(taken))}"
            )


def _taken(chain: Chain, opts: ScoreOptions) -> list[str]:
    """The names of the columns that scoring writes."""
    from curate.clean.signals import SIGNALS

    return ["sample_id", "source", "row", "caption", "caption_clean", "clean_ops", *SIGNALS,
            *(["id"] if opts.id_column else []), "lang",
            *chain.score_columns, *(s.filter.label for s in chain.steps if s.filter.label), "keep", "reason"]


def _names(files: list[InputFile], most: int = 3) -> str:
    names = ", ".join(f.path for f in files[:most])
    return names + (f" and {len(files) - most} more" if len(files) > most else "")
