"""``curate score --engine ray``: the same parts as the local engine, scored by Ray Data.

Pipeline: ``from_items(units)`` -> ``map_batches(_UnitScorer)`` on a pool of actors (one CPU
each) -> a small table of per-unit row counts that the driver streams for progress. Each
actor parses the chain and loads its models (fastText) once, in its constructor.

Provenance. ``sample_id`` derives from (source path as given, row index within the file), so
every row must know its index in its file. The units are the stage's
(:mod:`curate.scoring.units`: runs of Parquet row groups that begin on a part boundary, or a
whole JSONL/CSV file), so Parquet inputs are read in parallel, each unit only its own row
groups; with row groups of at most ``batch_rows`` rows a unit is one part.

An actor reads its unit with :func:`curate.ingest.readers.read_batches`, cuts it into exact parts of
``batch_rows`` rows, adds provenance with the local engine's code, scores and writes each
part atomically under the local engine's name (``part-FFFFF-BBBBB``). So the parts are the
same files with the same rows, a finished part is skipped on rerun, and a run started by one
engine can be finished by the other. The actors write the parts themselves, instead of
handing blocks to ``write_parquet``, because Ray may split or merge blocks between stages,
which would break one-part-per-batch naming, atomic renames and resume.

The run folder must be a path that every node sees (on one machine, any folder; on a cluster,
a shared file system).
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import polars as pl

from curate.engines.ray_runtime import ACTOR_ENV, import_ray, quiet_data
from curate.engines.ray_runtime import start as start_ray
from curate.errors import CurateError
from curate.ingest.inputs import InputFile
from curate.ingest.readers import read_batches
from curate.layout import part_path
from curate.scoring.chain import Chain, parse_chain
from curate.scoring.runner import Progress, ScoreOptions, file_parts
from curate.scoring.units import Unit, plan_units, unit_parts
from curate.scoring.workers import chain_to_data, score_and_write
from curate.tables import exact_tables

#: Each actor uses one core; its polars must not start a thread per core of the node.


def _exact_batches(batches, size: int):
    """Re-cut a stream of frames into frames of exactly ``size`` rows (the last may be short)."""
    arrow = (rb for frame in batches for rb in frame.to_arrow().to_batches())
    for table in exact_tables(arrow, size):
        yield pl.from_arrow(table)


class _UnitScorer:
    """A Ray actor: parses the chain and loads its models once, then scores units."""

    def __init__(self, chain_data: dict, where: str, files: list[InputFile], out: str,
                 opts: ScoreOptions, carry: list[str], cwd: str) -> None:
        from curate.scoring.frame import score_frame

        # Paths are as the user gave them (``source`` keeps them so): resolve relative ones
        # against the driver's folder, which a cluster's nodes share at the same path.
        if os.path.isdir(cwd):
            os.chdir(cwd)
        self.chain = parse_chain(chain_data, where)
        self.files, self.out, self.opts, self.carry = files, Path(out), opts, carry
        score_frame(pl.DataFrame({"caption": ["warm up: load the models once"]}), self.chain)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows, kept, errors = [], [], []
        for fi, g0, g1, start, first in zip(batch["file"], batch["g0"], batch["g1"], batch["start"], batch["first_part"]):
            # A library error (bad input) travels back as data: Ray's exception wrapping
            # loses its type, and the driver must show it as the local engine does.
            try:
                n, k = self.score_unit(int(fi), None if g0 < 0 else list(range(g0, g1)), int(start), int(first))
            except CurateError as e:
                n, k = 0, []
                errors.append(str(e))
            else:
                errors.append("")
            rows.append(n)
            kept.append("\n".join(k))
        return {"file": batch["file"], "rows": np.array(rows, dtype=np.int64),
                "kept": np.array(kept, dtype=object), "error": np.array(errors, dtype=object)}

    def score_unit(self, fi: int, row_groups: list[int] | None, start: int, first: int) -> tuple[int, list[str]]:
        """Read, score and write one unit's parts; returns (rows read, parts already written)."""
        inp, o = self.files[fi], self.opts
        batches = None
        if row_groups is not None:
            batches = _exact_batches(
                read_batches(inp, o.caption_column, o.id_column, self.carry, o.batch_rows, row_groups),
                o.batch_rows,
            )
        rows, kept = 0, []
        for part, frame, n in file_parts(inp, fi, self.out, o, self.carry, batches, start, first):
            if frame is None:
                kept.append(str(part))
            else:
                score_and_write(frame, self.chain, str(part))
            rows += n
        return rows, kept


def score_files(files: list[InputFile], out: Path, chain: Chain, opts: ScoreOptions, carry: list[str],
                progress: Progress | None) -> tuple[list[dict], list[Path], int, dict]:
    """Score every input on Ray; returns (per-file rows, parts kept from before, actors, info)."""
    out = Path(out)
    units = plan_units(files, opts.batch_rows)
    rows = [0] * len(files)
    kept: list[Path] = []
    todo: list[Unit] = []
    for u in units:
        if u.stop is not None and all(part_path(out, u.file, b).exists() for b in unit_parts(u, opts.batch_rows)):
            kept += [part_path(out, u.file, b) for b in unit_parts(u, opts.batch_rows)]
            rows[u.file] += u.stop - u.start
            if progress:
                progress(u.stop - u.start)
        else:
            todo.append(u)
    info: dict = {"address": opts.address or "local", "units": len(units)}
    workers = 0
    if todo:
        workers = _run_units(todo, files, out, chain, opts, carry, progress, rows, kept, info)
    per_file = [{**inp.describe(), "rows": rows[fi]} for fi, inp in enumerate(files)]
    return per_file, kept, workers, info


def _run_units(todo: list[Unit], files, out, chain, opts, carry, progress, rows, kept, info) -> int:
    ray = import_ray()
    t0 = time.perf_counter()
    started = start_ray(ray, opts.address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        workers = max(1, min(opts.workers or cpus, len(todo)))
        info.update(ray_version=ray.__version__, cluster_cpus=cpus,
                    nodes=sum(1 for n in ray.nodes() if n.get("Alive")), actors=workers)
        quiet_data(ray)
        items = [{"file": u.file, "g0": u.row_groups[0] if u.row_groups else -1,
                  "g1": u.row_groups[1] if u.row_groups else -1,
                  "start": u.start, "first_part": u.first_part} for u in todo]
        try:
            ds = ray.data.from_items(items, override_num_blocks=len(items))
        except TypeError:  # Ray before 2.10
            ds = ray.data.from_items(items, parallelism=len(items))
        ds = ds.map_batches(
            _UnitScorer,
            fn_constructor_args=(chain_to_data(chain), chain.path or "chain", files, str(out), opts, carry, os.getcwd()),
            batch_size=1, batch_format="numpy", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=workers),
            runtime_env={"env_vars": ACTOR_ENV},
        )
        for r in ds.iter_rows():  # one result per unit of row groups (about 10 parts), not per caption
            if r["error"]:
                raise CurateError(str(r["error"]))
            rows[int(r["file"])] += int(r["rows"])
            kept += [Path(p) for p in str(r["kept"]).split("\n") if p]
            if progress:
                progress(int(r["rows"]))
    finally:
        if started:
            ray.shutdown()
    info["ray_s"] = round(time.perf_counter() - t0, 3)
    return workers
