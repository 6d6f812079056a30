"""Entry point of a scoring worker process; sets thread limits before polars loads."""
import os


def init(chain_data: dict, where: str) -> None:
    # One worker per core: each worker's polars runs on one thread.
    os.environ["POLARS_MAX_THREADS"] = "1"
    from .run import _init_worker

    _init_worker(chain_data, where)
