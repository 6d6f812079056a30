"""Where the time of `curate score` goes: wall-clock timers per stage and per filter.

Runs the stages of ``curate.scoring.runner.score`` by hand, in this one process (one worker), on the
benchmark input: read a batch, add provenance, normalise the text, each filter of the chain,
the decision, Arrow conversion and the Parquet write. The first batch also pays the one-off
loads (fastText model, word-frequency tables), so it is reported apart from the rest.
It also measures what the worker pool adds: starting the workers and sending them frames.

    python benchmarks/profile_score.py --rows 300000
    POLARS_MAX_THREADS=1 python benchmarks/profile_score.py --rows 300000
    python benchmarks/profile_score.py --chain synthetic   # the cleaning of model captions
    python benchmarks/profile_score.py --repeat 3 --json out.json   # each filter's best of 3

The ``clean`` line is the chain's ``[[clean]]`` transforms (cost per 100k captions) and
``signals`` the model-caption signals.

``--patch NAME`` applies a proposed change from ``proposals.py`` by monkeypatching, after
checking that it leaves the output unchanged, to measure it before anyone edits the package.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, loadavg, make_input  # noqa: E402
from proposals import PATCHES, apply  # noqa: E402


def _check_patches(folder: Path, patches: list[str], rows: int = 20_000) -> None:
    """Score the first rows with and without the patches; stop unless the output is identical."""
    import polars as pl

    from curate.scoring.chain import load_chain
    from curate.scoring.frame import score_frame

    chain = load_chain(None)
    first = sorted(folder.glob("*.parquet"))[0]
    frame = pl.read_parquet(first, n_rows=rows).select("caption")
    before = score_frame(frame, chain)
    apply(patches)
    from curate.scoring import frame as scoring

    after = scoring.score_frame(frame, chain)
    if not after.equals(before):
        diff = [c for c in before.columns if not before[c].equals(after[c])]
        sys.exit(f"patches {patches} change the output (columns {diff}); not measuring them")
    print(f"patches {patches}: output identical to the package's on {rows:,} rows")

# -- the stages ---------------------------------------------------------------------------


def profile(folder: Path, patches: list[str], batch_rows: int, chain_name: str | None = None,
            repeat: int = 1) -> dict:
    import polars as pl

    if patches:
        _check_patches(folder, patches)

    from curate.atomic import write_parquet
    from curate.ingest.inputs import inspect_input, resolve_inputs
    from curate.ingest.provenance import with_provenance
    from curate.ingest.readers import read_batches
    from curate.scoring.chain import load_chain
    from curate.scoring.decision import decision_exprs
    from curate.scoring.filters import TEXT
    from curate.clean import CLEAN, clean_captions
    from curate.clean.signals import signals
    from curate.scoring.frame import FIRST, normalised

    chain = load_chain(chain_name)
    last_ws = bool(chain.clean) and chain.clean[-1].name == "whitespace"

    files = resolve_inputs([str(folder)])
    out = OUT / "profile-out"
    out.mkdir(parents=True, exist_ok=True)
    first: dict[str, tuple[float, float]] = {}
    rest: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    rest_rows = 0
    n_batch = 0
    t_all = time.perf_counter()
    for fi, inp in enumerate(files):
        inspect_input(inp)
        it = read_batches(inp, "caption", None, [], batch_rows)
        start = 0
        while True:
            timer = Timer()
            with timer("read"):
                batch = next(it, None)
            if batch is None:
                break
            with timer("provenance"):
                frame = with_provenance(batch, inp, start, None, [])
            start += batch.height
            with timer("clean"):
                clean, ops = clean_captions(frame["caption"], chain.clean)
            with timer("signals"):
                df = frame.with_columns(clean, ops, *signals(clean))
            with timer("normalise"):
                df = df.with_columns(normalised(df[CLEAN], after_whitespace=last_ws))
            order = sorted((s for s in chain.steps if not s.filter.external),
                           key=lambda s: 0 if s.filter.name in FIRST else 1)
            for step in order:
                scored = timer.best(f"filter {step.id}", repeat, lambda s=step, d=df: s.filter.score(d, s.column))
                df = df.with_columns(scored)
            with timer("decide"):
                for step in chain.steps:
                    if step.filter.external and step.column not in df.columns:
                        df = df.with_columns(pl.lit(None, pl.Float64).alias(step.column))
                df = df.drop(TEXT).with_columns(decision_exprs(chain))
            with timer("write"):
                write_parquet(df.to_arrow(), out / f"part-{fi:05d}-{n_batch:05d}.parquet")
            with timer("(pool: pickle frame to a worker)"):
                pickle.loads(pickle.dumps((frame, "part"), protocol=pickle.HIGHEST_PROTOCOL))
            timer = timer.t
            if n_batch == 0:
                first = timer
            else:
                for k, (w, c) in timer.items():
                    rest[k][0] += w
                    rest[k][1] += c
                rest_rows += batch.height
            n_batch += 1
    total = time.perf_counter() - t_all
    print(f"chain {chain.name}; POLARS_MAX_THREADS={os.environ.get('POLARS_MAX_THREADS', '(unset)')}; patches: {patches or 'none'}; "
          f"{n_batch} batches of {batch_rows:,}; total {total:.1f} s wall; load average {loadavg()}")
    print("  batch 1 includes one-off loads; 'later' = batches 2.. per 100k rows; cpu = this process's "
          "CPU time (all threads), robust to other load on the machine")
    print(f"{'stage':34} {'b1 wall':>8} {'b1 cpu':>8} {'wall/100k':>10} {'cpu/100k':>9} {'cpu share':>9} {'rows/cpu-s':>11}")
    stages = [k for k in first if not k.startswith("(")]
    cpu_total = sum(rest[k][1] for k in stages)
    for k in first:
        w, c = rest.get(k, (0.0, 0.0))
        per_w = w / max(rest_rows, 1) * 1e5
        per_c = c / max(rest_rows, 1) * 1e5
        share = f"{c / cpu_total * 100:8.1f}%" if cpu_total and k in stages else f"{'':9}"
        rate = f"{rest_rows / c:11,.0f}" if c else f"{'':11}"
        print(f"{k:34} {first[k][0]:8.2f} {first[k][1]:8.2f} {per_w:10.2f} {per_c:9.2f} {share} {rate}")
    if rest_rows:
        w = sum(rest[k][0] for k in stages)
        print(f"{'all stages':34} {sum(first[k][0] for k in stages):8.2f} {sum(first[k][1] for k in stages):8.2f} "
              f"{w / rest_rows * 1e5:10.2f} {cpu_total / rest_rows * 1e5:9.2f} {100.0:8.1f}% {rest_rows / cpu_total:11,.0f}")
    print(f"peak RSS of this process: {_maxrss_mib():,.0f} MiB")
    per = {k: rest[k][1] / max(rest_rows, 1) * 1e5 for k in stages}
    per["all stages"] = cpu_total / max(rest_rows, 1) * 1e5
    return {"cpu_per_100k": per, "load": loadavg(), "rows": rest_rows}


class Timer:
    """Context manager factory recording (wall, cpu) seconds per stage name."""

    def __init__(self) -> None:
        self.t: dict[str, tuple[float, float]] = {}

    def __call__(self, name: str):
        timer = self

        class _Ctx:
            def __enter__(self):
                self.w, self.c = time.perf_counter(), time.process_time()

            def __exit__(self, *exc):
                timer.t[name] = (time.perf_counter() - self.w, time.process_time() - self.c)

        return _Ctx()

    def best(self, name: str, repeat: int, work):
        """``work()`` run ``repeat`` times; the run of least CPU time is recorded."""
        runs = []
        for _ in range(max(repeat, 1)):
            with self(name):
                out = work()
            runs.append(self.t[name])
        self.t[name] = min(runs, key=lambda wc: wc[1])
        return out


def _maxrss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pool_start() -> None:
    """Seconds to start a spawn worker pool and run the chain's initialiser in each worker."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from curate.scoring import workers
    from curate.scoring.chain import load_chain
    from curate.scoring.workers import chain_to_data

    chain = load_chain(None)
    t = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn"), initializer=workers.init,
                             initargs=(chain_to_data(chain), "chain")) as pool:
        list(pool.map(int, [0, 1]))
        started = time.perf_counter() - t
    print(f"worker pool: 2 spawn workers started and initialised in {started:.2f} s "
          f"(import polars + curate + parse the chain per worker)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=100_000)
    ap.add_argument("--patch", action="append", default=[], choices=sorted(PATCHES) + ["all"],
                    help="apply a proposal from proposals.py (repeatable)")
    ap.add_argument("--chain", default=None, help="a packaged chain name or a path (default: default)")
    ap.add_argument("--pool", action="store_true", help="also time the start of a 2-worker pool")
    ap.add_argument("--repeat", type=int, default=1,
                    help="score each batch with each filter this many times and keep the least CPU time "
                         "(steadier figures on a loaded machine)")
    ap.add_argument("--json", type=Path, default=None, help="also write CPU-s per 100k per stage (batches 2..) here")
    args = ap.parse_args()
    folder = make_input(args.rows, args.shards)
    result = profile(folder, args.patch, args.batch_rows, args.chain, args.repeat)
    if args.json:
        import json

        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.pool:
        pool_start()


if __name__ == "__main__":
    main()
