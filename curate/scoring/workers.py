"""Scoring one batch and writing its part, in this process or in a worker process.

A worker process parses the chain (and loads its models) once, in :func:`init`, which sets
its thread limit before polars loads.
"""
from __future__ import annotations

import os
import time

import polars as pl

from curate.atomic import write_parquet
from curate.scoring.chain import Chain, parse_chain

_WORKER_CHAIN: Chain | None = None


def init(chain_data: dict, where: str) -> None:
    """Initialiser of a worker process: one polars thread, the chain parsed once."""
    global _WORKER_CHAIN
    os.environ["POLARS_MAX_THREADS"] = "1"
    _WORKER_CHAIN = parse_chain(chain_data, where)


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
