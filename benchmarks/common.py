"""Shared helpers for the benchmarks: the benchmark input and memory measurement.

The input is N real captions sampled with replacement (fixed seed) from the caption files in
``../shared/data``, written at run time as Parquet shards under ``bench-out/`` (git-ignored).
Nothing generated here is committed.

Memory is measured for a whole process tree (``curate score`` starts worker processes):
a sampler thread polls ``/proc`` every ``interval`` seconds and records the peak of the sum
of the tree's RSS and of its PSS (proportional set size: shared pages such as the Python
runtime and libraries are split between the processes that share them, so the PSS sum does
not count them twice). The peak RSS of the largest single process is also recorded.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CURATE_DATA", ROOT.parent / "shared" / "data"))
OUT = ROOT / "bench-out"
SEED = 20240611
#: the PSS of the tree is read every this many memory samples (see TreeMemory.poll)
PSS_EVERY = 20


def caption_pool(data: Path = DATA) -> list[str]:
    """Every non-empty ``caption`` of the Parquet files in ``data``, in file-name order."""
    import pyarrow.parquet as pq

    files = sorted(data.glob("*.parquet"))
    if not files:
        sys.exit(f"no Parquet files in {data}: the benchmark samples its captions from there "
                 "(set CURATE_DATA to another folder)")
    pool: list[str] = []
    for f in files:
        if "caption" not in pq.ParquetFile(f).schema_arrow.names:
            continue
        col = pq.read_table(f, columns=["caption"]).column("caption").to_pylist()
        pool += [c for c in col if c is not None and c.strip()]
    return pool


def make_input(rows: int, shards: int = 8, seed: int = SEED, row_group: int = 100_000) -> Path:
    """Write ``rows`` sampled captions as ``shards`` Parquet files; reuse an existing set.

    Returns the folder. Column: ``caption`` only (ids derive from file and row).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    pool = caption_pool()
    digest = hashlib.sha256("\n".join(pool).encode()).hexdigest()[:8]
    folder = OUT / f"input-{rows}-s{shards}-seed{seed}-{digest}"
    done = folder / ".complete"
    if done.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arr = pa.array(pool, pa.string())
    bounds = np.linspace(0, rows, shards + 1).astype(np.int64)
    for i in range(shards):
        n = int(bounds[i + 1] - bounds[i])
        idx = rng.integers(0, len(pool), n)
        table = pa.table({"caption": arr.take(pa.array(idx))})
        tmp = folder / f".tmp-part-{i:03d}.parquet"
        pq.write_table(table, tmp, compression="zstd", row_group_size=row_group)
        os.replace(tmp, folder / f"part-{i:03d}.parquet")
    done.write_text(f"{rows} captions from a pool of {len(pool)}, seed {seed}\n")
    return folder


# -- memory of a process tree -------------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may hold spaces and parentheses: ppid follows the last ')'
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(name))
    return kids


def _tree(pid: int) -> list[int]:
    kids = _children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += kids.get(p, [])
    return out


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of one process, in clock ticks (its own threads, not its children)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def _rss_kib(pid: int) -> int:
    """RSS of one process in KiB from ``/proc/PID/statm`` (cheap: no page-table walk); 0 once
    it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, IndexError, ValueError):
        return 0


def _mem_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in KiB; (0, 0) once it is gone."""
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


@dataclass
class TreeMemory:
    """Peaks observed while polling a process tree."""

    peak_rss_sum_kib: int = 0
    peak_pss_sum_kib: int = 0
    peak_single_rss_kib: int = 0
    peak_processes: int = 0
    samples: int = 0
    #: CPU seconds (user + system) last seen per process of the tree: their sum is the tree's
    #: CPU time, whoever reaps the processes (datatrove's forkserver children are not reaped
    #: into our getrusage). A process that lives under one interval is missed.
    cpu_ticks: dict = field(default_factory=dict, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def cpu_seconds(self) -> float:
        return sum(self.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")

    def poll(self, pid: int, interval: float) -> None:
        """RSS every ``interval`` (statm); PSS every :data:`PSS_EVERY` samples only, since
        ``smaps_rollup`` walks the page tables of the process (kernel time that grows with
        its memory: every 50 ms it took a third of a core from a 10M-caption dedup)."""
        while not self._stop.is_set():
            rss_sum = pss_sum = 0
            pids = _tree(pid)
            with_pss = self.samples % PSS_EVERY == 0
            for p in pids:
                ticks = _cpu_ticks(p)
                if ticks is not None:
                    self.cpu_ticks[p] = ticks
                rss = _rss_kib(p)
                if with_pss:
                    pss_sum += _mem_kib(p)[1]
                rss_sum += rss
                self.peak_single_rss_kib = max(self.peak_single_rss_kib, rss)
            self.peak_rss_sum_kib = max(self.peak_rss_sum_kib, rss_sum)
            self.peak_pss_sum_kib = max(self.peak_pss_sum_kib, pss_sum)
            self.peak_processes = max(self.peak_processes, len(pids))
            self.samples += 1
            self._stop.wait(interval)

    def describe(self) -> str:
        mib = 1024
        return (f"peak memory of the process tree: PSS sum {self.peak_pss_sum_kib / mib:,.0f} MiB "
                f"(sampled every {PSS_EVERY} polls), "
                f"RSS sum {self.peak_rss_sum_kib / mib:,.0f} MiB "
                f"(largest single process {self.peak_single_rss_kib / mib:,.0f} MiB RSS; "
                f"up to {self.peak_processes} processes; {self.samples} samples)")


@dataclass
class Measured:
    cmd: list[str]
    seconds: float
    returncode: int
    memory: TreeMemory
    cpu_seconds: float  # user + system CPU of the whole tree, from /proc (see TreeMemory)
    cpu_rusage: float  # the same from getrusage(RUSAGE_CHILDREN): only descendants reaped up the tree
    load_before: str  # /proc/loadavg before the run: other work on the machine skews wall time


def run_measured(cmd: list[str], env: dict | None = None, interval: float = 0.05,
                 quiet: bool = True) -> Measured:
    """Run ``cmd``, timing its wall clock and polling its process tree's memory."""
    import resource

    mem = TreeMemory()
    load = loadavg()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env,
        stdout=subprocess.PIPE if quiet else None, stderr=subprocess.STDOUT if quiet else None,
    )
    poller = threading.Thread(target=mem.poll, args=(proc.pid, interval), daemon=True)
    poller.start()
    out, _ = proc.communicate()
    seconds = time.perf_counter() - t0
    mem._stop.set()
    poller.join()
    if proc.returncode != 0:
        if out:
            sys.stderr.write(out.decode(errors="replace")[-4000:])
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}")
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return Measured(cmd, seconds, proc.returncode, mem, max(mem.cpu_seconds, 0.0), cpu, load)


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def cores() -> str:
    n = os.cpu_count()
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:
        avail = n
    return f"{n} logical cores ({avail} available to this process)"


#: public names for other benchmarks' per-process readings
tree_pids, rss_kib, cpu_ticks = _tree, _rss_kib, _cpu_ticks
