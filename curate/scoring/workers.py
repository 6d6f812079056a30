"""Scoring one batch and writing its part, in this process or in a worker process.

A worker process parses the chain (and loads its models) once, in :func:`init`, which sets
its thread limit before polars loads. :class:`Pool` starts the workers of a local run as
soon as the run knows it needs them, so that their start overlaps the reading of the
inputs' headers and fingerprints.
"""
from __future__ import annotations

import atexit
import os
import sys
import time
from concurrent.futures import Future, ProcessPoolExecutor
from multiprocessing import get_context

import polars as pl

from curate.atomic import write_parquet
from curate.scoring.chain import Chain, parse_chain

_WORKER_CHAIN: Chain | None = None


def init(chain_data: dict, where: str) -> None:
    """Initialiser of a worker process: one polars thread, the chain parsed once."""
    global _WORKER_CHAIN
    os.environ["POLARS_MAX_THREADS"] = "1"
    _WORKER_CHAIN = parse_chain(chain_data, where)
    atexit.register(_exit_now)


def _exit_now() -> None:
    """A worker's exit: every result is already written to the pipe (the worker sends each
    one whole before taking the next task), so the interpreter's teardown of the models and
    libraries (a large share of a second) is skipped."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def warm_up() -> None:
    """In a worker: load the chain's models (as a first batch would) before any part arrives."""
    from curate.scoring.frame import score_frame

    assert _WORKER_CHAIN is not None
    score_frame(pl.DataFrame({"caption": ["warm up: load the models once"]}), _WORKER_CHAIN)


def score_part(frame: pl.DataFrame, part: str) -> dict:
    """In a worker: score ``frame`` with the chain of :func:`init` and write ``part``."""
    assert _WORKER_CHAIN is not None
    return score_and_write(frame, _WORKER_CHAIN, part)


def score_and_write(frame: pl.DataFrame, chain: Chain, part: str) -> dict:
    from curate.scoring.frame import score_frame

    t0 = time.perf_counter()
    scored = score_frame(frame, chain)
    write_parquet(scored.to_arrow(), part)
    return {"rows": scored.height, "seconds": time.perf_counter() - t0}


def chain_to_data(chain: Chain) -> dict:
    """The chain as plain data for another process (versions are the receiver's own)."""
    d = chain.to_dict()
    for f in d["filter"]:
        f.pop("version", None)
    return d


class Pool:
    """``workers`` processes that score parts with ``chain``, each on one polars thread.

    Every worker starts now (a process pool would start each at its first task), imports
    what scoring needs and loads the chain's models while this process goes on."""

    def __init__(self, chain: Chain, workers: int):
        self.workers = workers
        saved = os.environ.get("POLARS_MAX_THREADS")
        # set in this process's environment while the workers start: a worker may import
        # polars before its initialiser runs
        os.environ["POLARS_MAX_THREADS"] = "1"
        try:
            self._ex: ProcessPoolExecutor | None = ProcessPoolExecutor(
                max_workers=workers, mp_context=get_context("spawn"),
                initializer=init, initargs=(chain_to_data(chain), chain.path or "chain"))
            for _ in range(workers):  # each task without an idle worker starts one
                self._ex.submit(warm_up)
        finally:
            if saved is None:
                os.environ.pop("POLARS_MAX_THREADS", None)
            else:
                os.environ["POLARS_MAX_THREADS"] = saved

    def submit(self, frame: pl.DataFrame, part: str) -> Future:
        assert self._ex is not None
        return self._ex.submit(score_part, frame, part)

    def close(self) -> None:
        """Stop the workers (tasks not started are dropped); a second call does nothing."""
        if self._ex is not None:
            self._ex.shutdown(wait=True, cancel_futures=True)
            self._ex = None
