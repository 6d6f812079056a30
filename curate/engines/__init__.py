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
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Callable

from curate.engines.ray_runtime import RAY_INSTALL
from curate.errors import CurateError


@dataclass(frozen=True)
class Engine:
    """An engine: what it is (for the help), what it needs installed, and the two hooks it
    hands the stages (None: the stage's own local code). The hooks import their modules only
    when called, so an engine costs nothing until it is chosen."""

    description: str
    score_backend: Callable[[], Callable | None]
    dedup_neighbors: Callable[[str | None], Callable | None]
    #: opens the engine for one command and yields its map over units of work
    #: (:mod:`curate.engines.plan`), or None for the stages' own local code
    session: Callable = lambda address: _local_session(address)
    needs: str | None = None  # a module that must be importable
    install: str = ""
    takes_address: bool = False


def _ray_score():
    from curate.engines.ray_score import score_files

    return score_files


def _local_session(address: str | None):
    from curate.engines.plan import local_session

    return local_session(address)


def _ray_session(address: str | None):
    from curate.engines.plan import ray_session

    return ray_session(address)


def _ray_neighbors(address: str | None):
    from functools import partial

    from curate.engines.ray_dedup import build_neighbors_ray

    return partial(build_neighbors_ray, address=address)


#: The engines, by name: a new engine is a module and one line here (the CLI's choices
#: come from this dictionary).
ENGINES: dict[str, Engine] = {
    "local": Engine("processes on this machine", lambda: None, lambda address: None),
    "ray": Engine(f"Ray Data and Ray tasks ({RAY_INSTALL})", _ray_score, _ray_neighbors, _ray_session,
                  needs="ray", install=RAY_INSTALL, takes_address=True),
}


def check_engine(engine: str, address: str | None = None) -> Engine:
    """The engine called ``engine``; fail before any work when it is unknown or not installed."""
    if engine not in ENGINES:
        raise CurateError(f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}")
    e = ENGINES[engine]
    if address and not e.takes_address:
        takes = [n for n, x in ENGINES.items() if x.takes_address]
        raise CurateError(f"an address is for the {' or '.join(takes)} engine; add --engine {takes[0]}")
    if e.needs and find_spec(e.needs) is None:
        raise CurateError(f"the {engine} engine needs {e.needs}, which is not installed: {e.install}")
    return e


def score(inputs: list[str], out: str | os.PathLike, chain, opts=None, reporter=None) -> dict:
    """``curate score`` on the engine ``opts.engine`` names (see :func:`curate.scoring.runner.score`)."""
    from curate.scoring.runner import ScoreOptions
    from curate.scoring.runner import score as run_score

    opts = opts or ScoreOptions()
    engine = check_engine(opts.engine, opts.address)
    return run_score(inputs, out, chain, opts, reporter, backend=engine.score_backend())


def dedup(runs, opts=None, reporter=None) -> dict:
    """``curate dedup`` on the engine ``opts.engine`` names (see :func:`curate.dedup.run.dedup`)."""
    from curate.dedup.run import DedupOptions
    from curate.dedup.run import dedup as run_dedup

    opts = opts or DedupOptions()
    engine = check_engine(opts.engine, opts.address)
    with engine.session(opts.address) as run_map:
        return run_dedup(runs, opts, reporter, neighbors=engine.dedup_neighbors(opts.address), run_map=run_map)
