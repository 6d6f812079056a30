"""The overhead of Ray on one node: the default chain on the same captions, local vs Ray.

Input: ``--rows`` real captions sampled with replacement from ``../shared/data`` (see
``common.make_input``; 8 Parquet shards, row groups of 100k rows, under ``bench-out/``).
Both engines run as ``curate score`` subprocesses with all cores (local: one worker process
per core; ray: a local Ray started by curate with num_cpus = cores, one actor per core).
Prints, per engine, wall-clock seconds (start-up included), rows/s, the CPU-seconds of the
whole process tree (curate, its workers; for Ray also raylet, GCS and the actors) and rows
per CPU-second (the per-core rate, which holds even when other jobs share the machine), the
seconds run.json reports for scoring, and the peak memory of the process tree; then checks
that both runs wrote the same rows.

    .venv/bin/python benchmarks/bench_ray.py [--rows 1000000] [--repeat 1]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, _tree, cores, make_input, run_measured  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CURATE = str(ROOT / ".venv" / "bin" / "curate") if (ROOT / ".venv" / "bin" / "curate").exists() else "curate"
TICK = os.sysconf("SC_CLK_TCK")


class TreeCPU:
    """CPU-seconds (user + system) of this process's descendants: the last value seen for
    every process, polled from /proc (a process that lives less than one interval is missed).
    The benchmark process itself (and so this poller) is not counted."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval, self.seen = interval, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "TreeCPU":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            for pid in _tree(me):
                if pid == me:
                    continue
                try:
                    with open(f"/proc/{pid}/stat", "rb") as f:
                        fields = f.read().rsplit(b")", 1)[1].split()
                    # (pid, start time) tells a reused pid apart
                    self.seen[(pid, fields[19])] = (int(fields[11]) + int(fields[12])) / TICK
                except (OSError, IndexError, ValueError):
                    pass
            self._stop.wait(self.interval)

    @property
    def seconds(self) -> float:
        return sum(self.seen.values())


def run_engine(engine: str, inp: Path, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    cmd = [CURATE, "score", str(inp), "--out", str(out), "--engine", engine]
    if engine == "local":
        cmd += ["--workers", str(os.cpu_count() or 1)]
    with TreeCPU() as cpu:
        m = run_measured(cmd, env=env)
    cpu_s = cpu.seconds
    run = json.loads((out / "run.json").read_text())
    return {"engine": engine, "wall_s": m.seconds, "cpu_s": cpu_s, "run": run, "memory": m.memory}


def same_rows(a: Path, b: Path) -> bool:
    import polars as pl

    cols = ["sample_id", "source", "row", "lang", "keep", "reason"]
    x = pl.read_parquet(str(a / "scores" / "*.parquet"), columns=cols).sort("sample_id")
    y = pl.read_parquet(str(b / "scores" / "*.parquet"), columns=cols).sort("sample_id")
    return x.equals(y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1, help="runs per engine, alternating; the best is reported")
    args = ap.parse_args()
    inp = make_input(args.rows)
    ncores = os.cpu_count() or 1
    print(f"input: {args.rows:,} captions in {inp.relative_to(ROOT)}")
    print(f"machine: {cores()}; load average before: {os.getloadavg()[0]:.1f}")
    best: dict[str, dict] = {}
    for _ in range(args.repeat):
        for engine in ("local", "ray"):
            r = run_engine(engine, inp, OUT / f"bench-ray-{engine}")
            if engine not in best or r["wall_s"] < best[engine]["wall_s"]:
                best[engine] = r
    print(f"{'engine':<7} {'wall s':>8} {'rows/s':>9} {'CPU s':>8} {'rows/CPU-s':>11} {'score_s':>8}  peak memory (PSS sum)")
    for engine, r in best.items():
        rows = r["run"]["rows"]
        extra = ""
        if engine == "ray":
            info = r["run"].get("engine_info", {})
            extra = f"  (Ray {info.get('ray_version')}, {info.get('actors')} actors, {info.get('units')} units)"
        print(f"{engine:<7} {r['wall_s']:>8.1f} {rows / r['wall_s']:>9,.0f} {r['cpu_s']:>8.1f} "
              f"{rows / max(r['cpu_s'], 1e-9):>11,.0f} {r['run']['timings']['score_s']:>8.1f}  "
              f"{r['memory'].peak_pss_sum_kib / 1024:,.0f} MiB{extra}")
    lo, ra = best["local"], best["ray"]
    print(f"Ray overhead on one node ({ncores} cores): {ra['wall_s'] / lo['wall_s']:.2f}x the local engine's "
          f"wall-clock time ({ra['wall_s'] - lo['wall_s']:+.1f} s), {ra['cpu_s'] / lo['cpu_s']:.2f}x its CPU time "
          f"({ra['cpu_s'] - lo['cpu_s']:+.1f} CPU-s)")
    print(f"same rows, ids, decisions: {same_rows(OUT / 'bench-ray-local', OUT / 'bench-ray-ray')}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
