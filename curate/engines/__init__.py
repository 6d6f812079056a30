"""Engines: where ``curate score`` and ``curate dedup`` run.

``local`` runs on this machine (the stages' own code: :func:`curate.scoring.runner.score_local`
and :func:`curate.dedup.neighbors.build_neighbors`); ``ray`` runs the same steps on Ray
(:mod:`.ray_score`, :mod:`.ray_dedup`). Both write the same tables; the engine only decides
where the work runs. The stages know nothing of engines: :func:`score` and :func:`dedup`
here choose a backend and hand it to them. Ray is an optional extra: nothing here imports it
until it is asked for.
"""
from __future__ import annotations

import os
from importlib.util import find_spec

from curate.engines.ray_runtime import RAY_INSTALL
from curate.errors import CurateError

ENGINES = ("local", "ray")


def check_engine(engine: str, address: str | None = None) -> None:
    """Fail before any work when ``engine`` is unknown or not installed."""
    if engine not in ENGINES:
        raise CurateError(f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}")
    if address and engine != "ray":
        raise CurateError("an address is for the ray engine; add --engine ray")
    if engine == "ray" and find_spec("ray") is None:
        raise CurateError(f"the ray engine needs Ray, which is not installed: {RAY_INSTALL}")


def score(inputs: list[str], out: str | os.PathLike, chain, opts=None, reporter=None) -> dict:
    """``curate score`` on the engine ``opts.engine`` names (see :func:`curate.scoring.runner.score`)."""
    from curate.scoring.runner import ScoreOptions
    from curate.scoring.runner import score as run_score

    opts = opts or ScoreOptions()
    check_engine(opts.engine, opts.address)
    backend = None
    if opts.engine == "ray":
        from curate.engines.ray_score import score_files

        backend = score_files
    return run_score(inputs, out, chain, opts, reporter, backend=backend)


def dedup(runs, opts=None, reporter=None) -> dict:
    """``curate dedup`` on the engine ``opts.engine`` names (see :func:`curate.dedup.run.dedup`)."""
    from curate.dedup.run import DedupOptions
    from curate.dedup.run import dedup as run_dedup

    opts = opts or DedupOptions()
    check_engine(opts.engine, opts.address)
    neighbors = None
    if opts.engine == "ray":
        from functools import partial

        from curate.engines.ray_dedup import build_neighbors_ray

        neighbors = partial(build_neighbors_ray, address=opts.address)
    return run_dedup(runs, opts, reporter, neighbors=neighbors)
