"""`curate` with benchmark-only changes, in the main process and in every worker.

Used by ``bench_score.py --patch NAME`` and ``--worker-threads N``. Spawned workers run this
file again as ``__mp_main__`` before their initialiser, so what it does at import time
applies to them too:

* ``CURATE_BENCH_PATCHES=a,b``: apply proposals from ``proposals.py``;
* ``CURATE_BENCH_WORKER_THREADS=N``: load polars in each worker with N threads before
  curate's worker initialiser sets ``POLARS_MAX_THREADS=1`` (too late to take effect then).
"""
import os
import sys

worker = __name__ == "__mp_main__"
threads = os.environ.get("CURATE_BENCH_WORKER_THREADS")
if worker:
    os.environ["POLARS_MAX_THREADS"] = threads or "1"
patches = [p for p in os.environ.get("CURATE_BENCH_PATCHES", "").split(",") if p]
if patches or (worker and threads):
    import polars  # noqa: F401  (with POLARS_MAX_THREADS as set above)
if patches:
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import proposals

    proposals.apply(patches)

if __name__ == "__main__":
    from curate.cli import main

    main()
