"""The default chain before and after a change, in paired runs: CPU per filter, the whole
command, and its ratio to a bare one-thread fastText predict.

    python benchmarks/paired_score.py --old /tmp/old-checkout [--new DIR] [--rows 300000]
        [--pairs 3] [--whole-rows 1000000]

``--old DIR`` is another checkout's root (its ``curate`` package is imported through
PYTHONPATH; ``git worktree add`` or ``git archive REV curate | tar -x -C DIR`` make one).
Each pair runs ``profile_score.py`` once with each checkout, back to back, in alternating
order, one polars thread (``POLARS_MAX_THREADS=1``; each filter timed ``--repeat`` times per
batch, the least CPU kept: a loaded machine adds to CPU time too, never takes from it), and
``bare_lid.py`` (fasttext-new, one thread) beside them, so that each side sees the same
load. It prints the median CPU seconds per 100k captions of every stage (batches 2.., the
one-off loads of batch 1 apart), and the chain's CPU against the bare predict's on the same
captions: ``2 x bare / chain``, the ratio that ``bench_score.py --lid`` reports for the
whole command (the chain on 2 cores against the predict on one). With ``--whole-rows N`` it
also runs ``bench_score.py --rows N --lid`` with each checkout (the whole ``curate score``
command, workers, reading, the run's statistics) and prints both ratios. The machine (cores)
and the load average before each run are printed: CPU time moves with the load far less than
the wall clock, but it moves (caches shared with other work), so compare only the figures of
one pair.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, ROOT, loadavg, make_input  # noqa: E402

HERE = Path(__file__).resolve().parent


def run(script: str, args: list[str], pythonpath: Path, threads: bool = True) -> str:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(pythonpath))
    if threads:
        env["POLARS_MAX_THREADS"] = "1"
    res = subprocess.run([sys.executable, str(HERE / script), *args], env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{script} failed with PYTHONPATH={pythonpath}:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return res.stdout


def profile(side: Path, rows: int, repeat: int) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        run("profile_score.py", ["--rows", str(rows), "--repeat", str(repeat), "--json", f.name], side)
        return json.loads(Path(f.name).read_text())


def bare(folder: Path) -> float:
    """CPU seconds of the bare predict per 100k captions."""
    out = json.loads(run("bare_lid.py", [str(folder)], ROOT).strip().splitlines()[-1])
    return out["cpu_s"] / out["captions"] * 1e5


def whole(side: Path, rows: int) -> dict:
    text = run("bench_score.py", ["--rows", str(rows), "--lid"], side, threads=False)
    result = json.loads((OUT / f"bench-{rows}.json").read_text())
    return {"curate_cpu": result["curate"]["cpu_seconds"] / rows * 1e5,
            "bare_cpu": result["bare_lid"]["fasttext_new"]["cpu_seconds"] / rows * 1e5,
            "ratio": result["bare_lid"]["fasttext_new"]["ratio_cpu"], "text": text}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", type=Path, required=True, help="root of the checkout to compare against")
    ap.add_argument("--new", type=Path, default=ROOT, help="root of the checkout measured (default: this one)")
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3,
                    help="profile_score.py --repeat: each filter's best of N per batch")
    ap.add_argument("--whole-rows", type=int, default=0, help="also run bench_score.py --lid on this many rows")
    a = ap.parse_args()
    sides = {"before": a.old.resolve(), "after": a.new.resolve()}
    cores = os.cpu_count() or 1
    print(f"machine: {cores} logical cores; python {sys.version.split()[0]}; before = {sides['before']}, "
          f"after = {sides['after']}")
    folder = make_input(a.rows, 3)
    runs: dict[str, list[dict]] = {"before": [], "after": []}
    bares: list[float] = []
    for i in range(a.pairs):
        order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
        for name in order:
            load = loadavg()
            runs[name].append(profile(sides[name], a.rows, a.repeat))
            print(f"pair {i + 1}: {name:6} all stages {runs[name][-1]['cpu_per_100k']['all stages']:.2f} CPU-s/100k "
                  f"(load average before: {load})", flush=True)
        load = loadavg()
        bares.append(bare(folder))
        print(f"pair {i + 1}: bare fastText predict {bares[-1]:.2f} CPU-s/100k (load average before: {load})",
              flush=True)
    stages = list(runs["after"][0]["cpu_per_100k"])
    med = {n: {k: statistics.median(r["cpu_per_100k"].get(k, 0.0) for r in runs[n]) for k in stages} for n in runs}
    print(f"\nCPU seconds per 100k captions, median of {a.pairs} paired runs ({a.rows:,} captions, batches of "
          f"100k, batches 2.., one process, one polars thread; filters: best of {a.repeat} per batch)")
    print(f"{'stage':24} {'before':>8} {'after':>8} {'after/before':>13}")
    for k in stages:
        b, f = med["before"][k], med["after"][k]
        print(f"{k:24} {b:8.3f} {f:8.3f} {f / b if b else float('nan'):12.2f}x")
    lid = statistics.median(bares)
    print(f"{'bare fastText predict':24} {lid:8.3f} (fasttext-new, one thread, whole captions)")
    for n in ("before", "after"):
        print(f"ratio {n}: {cores} x bare / chain = {cores * lid / med[n]['all stages']:.2f}x "
              "(chain stages on every core against the predict on one; aim >= 1.3x)")
    if a.whole_rows:
        for n in ("before", "after"):
            w = whole(sides[n], a.whole_rows)
            print(f"\nwhole command, {n}:\n{w['text'].rstrip()}")
            print(f"whole command {n}: curate {w['curate_cpu']:.2f} CPU-s/100k, bare {w['bare_cpu']:.2f}; "
                  f"ratio from CPU time {w['ratio']:.2f}x")


if __name__ == "__main__":
    main()
