"""``curate dedup --engine ray`` on a one-node local Ray: the driver's memory against the
workers', for corpora of growing size.

Input: for each ``--rows`` (default 100k and 300k), the web corpus of ``bench_dedup.py``
(captions spliced from two real captions of ../shared/data, 35% of the rows replaced by a
perturbed copy of another row), scored once by ``curate score`` (not timed). Then, from a
fresh dedup folder (embedding included), ``curate dedup RUN --engine ray --memory out``
runs as a subprocess; curate starts a local Ray with one CPU per core (2 here), so the
embedding actors, the partition-assignment tasks, the search tasks and the groups-by-range
tasks share 2 worker CPUs. Ranges of ``--range-texts`` texts (65,536 by default, so that
the groups run over several ranges; the shipped default is 1,048,576).

Prints, per corpus: wall, CPU-seconds of the whole process tree (driver, Ray's services and
workers), the driver's peak RSS (the ``curate`` process itself), each Ray worker's peak RSS
(the process titles it showed: ``ray::_Encoder``, ``ray::search_task`` ...), Ray's services'
peaks, and the dedup stages' seconds; then how much the driver's peak grew per million
distinct texts between the smallest and the largest corpus.

    .venv/bin/python benchmarks/bench_cluster.py [--rows 100000 300000] [--range-texts 65536]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dedup import make_corpus, make_run  # noqa: E402
from common import SEED, cores, cpu_ticks, loadavg, rss_kib, tree_pids  # noqa: E402

#: the driver: curate's CLI with the range size set (it travels to the tasks in the plan)
DRIVER = ("import sys; from curate.dedup import ranges; ranges.RANGE_TEXTS = int(sys.argv.pop(1)); "
          "from curate.cli import main; main()")


def status_kib(pid: int) -> dict[str, int]:
    """RssAnon, RssFile and RssShmem of one process (KiB): the shared part of a Ray process
    is the object store's pages that it touched, not its own memory."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                    k, v = line.split()[:2]
                    out[k[:-1]] = int(v)
    except OSError:
        pass
    return out


def title(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return ""
    first = args[0].decode(errors="replace")
    if first.startswith("ray::"):
        return first.split()[0]
    names = [Path(a.decode(errors="replace")).name for a in args[:3] if a]
    return " ".join(names)[:60]


class Peaks:
    """Peak RSS of every process of a tree, by pid, with the titles it showed; CPU ticks last
    seen per pid (their sum: the tree's CPU time)."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root, self.interval = root, interval
        self.rss: dict[int, int] = {}
        self.titles: dict[int, set] = {}
        self.ticks: dict[int, int] = {}
        self.stop = threading.Event()
        self.driver: dict[str, int] = {}  # the root's peak RssAnon / RssFile / RssShmem
        self.timeline: list[tuple[float, int, int]] = []  # (seconds, root's RSS, its RssAnon)

    def poll(self) -> None:
        t0 = time.perf_counter()
        while not self.stop.is_set():
            st = status_kib(self.root)
            for k, v in st.items():
                self.driver[k] = max(self.driver.get(k, 0), v)
            self.timeline.append((time.perf_counter() - t0, rss_kib(self.root), st.get("RssAnon", 0)))
            for p in tree_pids(self.root):  # a loop over processes, a few dozen
                r = rss_kib(p)
                t = cpu_ticks(p)
                if t is not None:
                    self.ticks[p] = t
                if r > self.rss.get(p, 0):
                    self.rss[p] = r
                self.titles.setdefault(p, set()).add(title(p))
            self.stop.wait(self.interval)

    def cpu_seconds(self) -> float:
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")


def run_dedup(run: Path, range_texts: int) -> dict:
    shutil.rmtree(run / "dedup", ignore_errors=True)
    cmd = [sys.executable, "-c", DRIVER, str(range_texts), "dedup", str(run), "--engine", "ray",
           "--memory", "out", "--embedder", "static"]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    load = loadavg()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peaks = Peaks(proc.pid)
    th = threading.Thread(target=peaks.poll, daemon=True)
    th.start()
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    peaks.stop.set()
    th.join()
    if proc.returncode:
        sys.stderr.write(out.decode(errors="replace")[-3000:])
        sys.exit(f"curate dedup failed ({proc.returncode})")
    info = json.loads((run / "dedup" / "dedup.json").read_text())
    workers = {p: r for p, r in peaks.rss.items() if any(t.startswith("ray::") for t in peaks.titles[p])}
    services = {p: r for p, r in peaks.rss.items() if p != proc.pid and p not in workers}
    return {"wall": wall, "cpu": peaks.cpu_seconds(), "load_before": load, "load_after": loadavg(),
            "driver_kib": peaks.rss.get(proc.pid, 0), "driver_parts": peaks.driver,
            "timeline": peaks.timeline, "workers": workers, "services": services,
            "titles": peaks.titles, "info": info}


def report(rows: int, m: dict) -> None:
    info = m["info"]
    mib = 1024
    print(f"\n{rows:,} captions ({info['counts']['texts']:,} distinct texts): {m['wall']:.1f} s wall, "
          f"{m['cpu']:.0f} CPU-s (process tree), load average {m['load_before']} before, {m['load_after']} after")
    parts = ", ".join(f"{k} {v / mib:,.0f}" for k, v in m["driver_parts"].items())
    print(f"  driver peak RSS {m['driver_kib'] / mib:,.0f} MiB (peaks of its parts, MiB: {parts})")
    tl = m["timeline"]
    every = max(1, len(tl) // 24)
    print("  driver over time (s: RSS/RssAnon MiB): " + ", ".join(
        f"{t:.0f}: {r / mib:,.0f}/{a / mib:,.0f}" for t, r, a in tl[::every]))
    for p, r in sorted(m["workers"].items(), key=lambda x: -x[1]):
        names = sorted(t for t in m["titles"][p] if t.startswith("ray::") and t != "ray::IDLE")
        print(f"  worker {p}: peak RSS {r / mib:,.0f} MiB ({', '.join(names) or 'idle'})")
    svc = sorted(m["services"].items(), key=lambda x: -x[1])[:4]
    print("  Ray services, largest: " + ", ".join(
        f"{sorted(m['titles'][p])[0]} {r / mib:,.0f} MiB" for p, r in svc))
    g = info.get("groups_by_range", {})
    print(f"  groups by range: {g.get('ranges')} ranges of {g.get('range_texts'):,} texts, {g.get('rounds')} rounds "
          f"(pointers changed per round {g.get('changed_per_round')}); k-means sample "
          f"{info['index'].get('kmeans_train', 0):,} of {info['index']['n']:,} vectors, nlist {info['index'].get('nlist')}")
    print("  stages (s): " + ", ".join(f"{k} {v}" for k, v in info["timings"].items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 300_000])
    ap.add_argument("--range-texts", type=int, default=65_536)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    print(f"machine: {cores()}; load average {loadavg()}; one-node local Ray started by curate (2 worker CPUs)")
    results = {}
    for rows in args.rows:
        run = make_run(make_corpus(rows, args.seed), rows, "web")
        results[rows] = run_dedup(run, args.range_texts)
        report(rows, results[rows])
    if len(results) > 1:
        a, b = results[min(results)], results[max(results)]
        ta, tb = a["info"]["counts"]["texts"], b["info"]["counts"]["texts"]
        for what, ka, kb in (("RSS", a["driver_kib"], b["driver_kib"]),
                             ("RssAnon", a["driver_parts"].get("RssAnon", 0), b["driver_parts"].get("RssAnon", 0))):
            grow = (kb - ka) / 1024
            print(f"driver peak {what}: {ka / 1024:,.0f} MiB at {ta:,} texts, {kb / 1024:,.0f} MiB at {tb:,} texts: "
                  f"{grow:+,.0f} MiB ({grow / max(tb - ta, 1) * 1e6:,.0f} MiB per million distinct texts)")
        wa = max(a["workers"].values(), default=0) / 1024
        wb = max(b["workers"].values(), default=0) / 1024
        print(f"largest worker: {wa:,.0f} MiB, then {wb:,.0f} MiB")


if __name__ == "__main__":
    main()
