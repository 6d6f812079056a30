"""Where `curate dedup`'s memory goes: the process's RSS at the entry and exit of each stage,
and the peak inside it.

Runs the dedup of a run folder in this process (the CLI's code path, `curate.engines.dedup`)
with the stage functions wrapped: a sampler thread reads this process's RSS from
``/proc/self/statm`` every 10 ms, and each wrapped call prints RSS on entry, on exit and the
highest value seen while it ran. Nothing in the package changes.

    python benchmarks/profile_dedup.py bench-out/dedup-run-1000000 --memory out
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import importlib
import os
import shutil
import sys
import threading
import time
from pathlib import Path

PAGE = os.sysconf("SC_PAGE_SIZE")
TRIM = False

#: (module, function) pairs wrapped, in the order they run
STAGES = [
    ("curate.dedup.run", "select_rows"),
    ("curate.dedup.run", "rank_rows"),
    ("curate.dedup.run", "find_duplicates"),
    ("curate.dedup.run", "texts_of"),
    ("curate.dedup.run", "neighbor_key"),
    ("curate.embed", "load_embedder"),
    ("curate.dedup.run", "build_neighbors_stream"),
    ("curate.dedup.run", "build_neighbors"),
    ("curate.dedup.cache", "embed_texts"),
    ("curate.dedup.embed_process", "embed_texts_child"),
    ("curate.dedup.stream", "knn_stream"),
    ("curate.dedup.stream", "partition"),
    ("curate.dedup.stream", "search_local"),
    ("curate.dedup.stream", "merge_batch"),
    ("curate.dedup.stream", "write_pairs"),
    ("curate.dedup.stream", "word_sets"),
    ("curate.dedup.stream", "pair_frame"),
    ("curate.dedup.stream", "write_parquet"),
    ("curate.dedup.run", "text_arrays"),
    ("curate.dedup.run", "groups_from_arrays"),
    ("curate.dedup.run", "groups"),
    ("curate.dedup.run", "write_parquet"),
]


class Sampler:
    def __init__(self) -> None:
        self.peak = self.now()
        self.stop = threading.Event()
        threading.Thread(target=self.loop, daemon=True).start()

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def loop(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, self.now())
            time.sleep(0.01)


def kinds() -> str:
    """Anonymous, file-backed and shared resident memory now (``/proc/self/status``)."""
    got = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("RssAnon", "RssFile", "RssShmem")):
                key, val = line.split(":")
                got[key[3:].lower()] = int(val.split()[0]) * 1024
    return ", ".join(f"{k} {mib(v)}" for k, v in got.items())


def mib(b: int) -> str:
    return f"{b / 2**20:,.0f}"


def wrap(sampler: Sampler, depth: list[int], mod: str, name: str) -> None:
    m = importlib.import_module(mod)
    fn = getattr(m, name, None)
    if fn is None or getattr(fn, "_profiled", False):
        return

    @functools.wraps(fn)
    def inner(*a, **kw):
        before = sampler.now()
        outer_peak = sampler.peak
        sampler.peak = before
        t0 = time.perf_counter()
        depth[0] += 1
        try:
            return fn(*a, **kw)
        finally:
            depth[0] -= 1
            if TRIM:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            after = sampler.now()
            peak = max(sampler.peak, after)
            print(f"{'  ' * depth[0]}{name:<24} RSS {mib(before):>6} -> {mib(after):>6} MiB, "
                  f"peak inside {mib(peak):>6} MiB, {time.perf_counter() - t0:6.1f} s; at exit {kinds()}", flush=True)
            sampler.peak = max(outer_peak, peak)

    inner._profiled = True
    setattr(m, name, inner)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--memory", choices=["auto", "in", "out"], default="auto")
    ap.add_argument("--embedder", default="static")
    ap.add_argument("--keep", action="store_true", help="keep RUN/dedup (default: start cold)")
    ap.add_argument("--trim", action="store_true", help="call malloc_trim(0) after each stage (what the allocator holds)")
    args = ap.parse_args()
    global TRIM
    TRIM = args.trim
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.keep:
        shutil.rmtree(args.run / "dedup", ignore_errors=True)
    from curate import engines
    from curate.dedup.run import DedupOptions

    sampler = Sampler()
    depth = [0]
    for mod, name in STAGES:
        wrap(sampler, depth, mod, name)
    t0 = time.perf_counter()
    print(f"start RSS {mib(sampler.now())} MiB")
    engines.dedup([args.run], DedupOptions(embedder=args.embedder, memory=args.memory))
    print(f"total {time.perf_counter() - t0:.1f} s; peak RSS {mib(sampler.peak)} MiB; "
          f"end RSS {mib(sampler.now())} MiB; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    sys.exit(main())
