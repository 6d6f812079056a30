"""Peak memory of `curate score` on inputs that inflate, and how fast `curate mix` stops
recipe SQL past its limits.

    python benchmarks/bench_bounds.py [--gib 1]

Writes, under bench-out/bounds/: a .tsv.gz holding one line of --gib GiB (about 1 KB of
gzip per MB) and a .jsonl.gz whose second line is that long; scores each in a child process
and prints its peak RSS (polled from /proc every 10 ms) and wall time. Then mixes a recipe
whose quality is ``len(range(300000000))`` under ``--memory-limit 700MB`` and one that runs
for minutes under ``--timeout 3`` (600 real captions from ../shared/data), and prints how
long each took to be stopped and the peak RSS of the mix's process tree.
"""
from __future__ import annotations

import argparse
import gzip
import os
import subprocess
import sys
import time
from pathlib import Path

OUT = Path("bench-out/bounds")
DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def tree_rss(pid: int) -> int:
    """RSS of a process and its children (one level: the mix's child process)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        pass
    for p in pids:
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * page
        except (OSError, ValueError):
            pass
    return total


def measure(cmd: list[str]) -> tuple[float, int, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        time.sleep(0.01)
    return time.perf_counter() - t0, peak, proc.stdout.read().strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=int, default=1)
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    block = gzip.compress(b"x" * (1 << 20), 9)
    for name, head in (("bomb.tsv.gz", b"caption\tid\n"), ("bomb.jsonl.gz", b'{"caption": "a"}\n{"caption": "')):
        path = OUT / name
        path.write_bytes(gzip.compress(head) + block * (args.gib << 10) + gzip.compress(b"\n"))
        wall, peak, last = measure([sys.executable, "-m", "curate.cli", "score", str(path), "--out", str(OUT / "run")])
        print(f"{name}: {path.stat().st_size / 1e6:.1f} MB holding a {args.gib} GiB line: "
              f"{wall:.1f} s, peak RSS {peak / 2**20:.0f} MiB; {last}")
    import polars as pl

    pl.read_parquet(DATA / "a_coco_captions_val2017.parquet", columns=["caption"]).head(600).write_parquet(
        OUT / "caps.parquet")
    light = OUT / "light.toml"
    light.write_text('[[filter]]\nname = "length"\n')
    subprocess.run([sys.executable, "-m", "curate.cli", "score", str(OUT / "caps.parquet"), "--chain", str(light),
                    "--out", str(OUT / "run-caps"), "--overwrite"], check=True, capture_output=True)
    for name, quality, opts in (
        ("memory", "len(range(300000000))", ["--memory-limit", "700MB"]),
        ("time", "list_sum(list_transform(range(200000), lambda x: x * score__length))", ["--timeout", "3"]),
    ):
        recipe = OUT / f"{name}.toml"
        recipe.write_text(f'size = 100\nquality = "{quality}"\n[[source]]\nname = "r"\nrun = "run-caps"\n')
        wall, peak, last = measure([sys.executable, "-m", "curate.cli", "mix", str(recipe), "--out",
                                    str(OUT / f"mix-{name}"), "--overwrite", *opts])
        print(f"mix past its {name} limit ({' '.join(opts)}): stopped after {wall:.1f} s, "
              f"peak RSS of the process tree {peak / 2**20:.0f} MiB; {last}")
    print(f"cores: {os.cpu_count()}, load average: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
