"""End-to-end scoring benchmark: `curate score` (Parquet in, Parquet out, default chain).

Builds N real captions (sampled with replacement from ../shared/data, fixed seed, written as
Parquet shards under bench-out/), runs `curate score` on them as a user would (a fresh
process, default chain, default workers), and prints captions/s over the command's whole
wall clock, and the peak memory of its process tree (the main process and its workers).

With --peer it also runs the same chain in datatrove (benchmarks/peer_datatrove.py) on the
same files with 2 workers, in its own virtual environment bench-out/peer-venv (created on
first use), and prints both rates and their ratio.

    python benchmarks/bench_score.py                       # 1M captions
    python benchmarks/bench_score.py --rows 5000000        # peak memory at 5M
    python benchmarks/bench_score.py --peer                # + datatrove on the same input
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, ROOT, cores, make_input, run_measured  # noqa: E402

PEER_VENV = OUT / "peer-venv"
# datatrove and what its pipeline here needs; spaCy is for the `stock` variant's tokeniser.
PEER_PACKAGES = ["datatrove==0.10.1", "pyarrow", "fasttext-numpy2-wheel", "fasteners", "regex", "spacy"]
TARGET_RATE = 100_000
TARGET_MEM_MIB = 2048


def lid_model() -> Path:
    """The lid.176.ftz that ships inside curate (the model the language filter uses)."""
    from curate.scoring.filters.language import bundled_lid_model

    return bundled_lid_model()


def curate_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("curate")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "curate.cli"]


def bench_curate(folder: Path, rows: int, workers: int | None, label: str,
                 patches: list[str] = (), worker_threads: int | None = None) -> dict:
    out = OUT / f"run-curate-{rows}"
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    if patches or worker_threads:
        # benchmark-only variants: proposals.py patches, polars threads per worker
        cmd = [sys.executable, str(Path(__file__).with_name("patched_cli.py"))]
        env["CURATE_BENCH_PATCHES"] = ",".join(patches)
        if worker_threads:
            env["CURATE_BENCH_WORKER_THREADS"] = str(worker_threads)
        label += f" [patches: {','.join(patches) or 'none'}; polars threads per worker: {worker_threads or 1}]"
    else:
        cmd = curate_cmd()
    cmd += ["score", str(folder), "--out", str(out)]
    if workers:
        cmd += ["--workers", str(workers)]
    m = run_measured(cmd, env=env)
    run = json.loads((out / "run.json").read_text())
    assert run["rows"] == rows, (run["rows"], rows)
    rate = rows / m.seconds
    mib = m.memory.peak_pss_sum_kib / 1024
    print(f"{label}: {rows:,} captions in {m.seconds:.1f} s wall = {rate:,.0f} captions/s end to end "
          f"(run.json: {run['workers']} workers, scoring {run['timings']['score_s']:.1f} s = "
          f"{run['timings']['rows_per_s']:,.0f} rows/s; kept {run['kept']:,})")
    print(f"  {_cpu_line(m, rows)}")
    print(f"  {m.memory.describe()}")
    print(f"  targets: >= {TARGET_RATE:,} captions/s {'MET' if rate >= TARGET_RATE else 'MISSED'}; "
          f"< {TARGET_MEM_MIB:,} MiB (PSS sum) {'MET' if mib < TARGET_MEM_MIB else 'MISSED'}")
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": rows, "seconds": m.seconds, "rate": rate, "workers": run["workers"],
            "cpu_seconds": m.cpu_seconds, "load_before": m.load_before,
            "peak_pss_sum_mib": mib, "peak_rss_sum_mib": m.memory.peak_rss_sum_kib / 1024,
            "peak_single_rss_mib": m.memory.peak_single_rss_kib / 1024}


def _cpu_line(m, rows: int) -> str:
    """CPU time of the tree: unlike wall time, it barely moves when other work shares the machine."""
    per = rows / m.cpu_seconds if m.cpu_seconds else float("nan")
    return (f"CPU time of the process tree {m.cpu_seconds:.1f} s (getrusage says {m.cpu_rusage:.1f} s) "
            f"= {per:,.0f} captions per CPU-second "
            f"(so at best {per * (os.cpu_count() or 1):,.0f} captions/s on {os.cpu_count()} idle cores); "
            f"load average before the run: {m.load_before}")


def distinct(folder: Path) -> int:
    import polars as pl

    return pl.scan_parquet(str(folder / "*.parquet")).select(pl.col("caption").n_unique()).collect().item()


def ensure_peer_venv() -> Path:
    py = PEER_VENV / "bin" / "python"
    ok = py.exists() and subprocess.run(
        [str(py), "-c", "import datatrove, fasttext, pyarrow, spacy, regex, fasteners"],
        capture_output=True).returncode == 0
    if not ok:
        print(f"creating {PEER_VENV} with {' '.join(PEER_PACKAGES)} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
    return py


def bench_peer(folder: Path, rows: int, workers: int, variant: str) -> dict:
    py = ensure_peer_venv()
    out = OUT / f"run-datatrove-{variant}-{rows}"
    cmd = [str(py), str(Path(__file__).with_name("peer_datatrove.py")), "--input", str(folder),
           "--model", str(lid_model()), "--out", str(out), "--workers", str(workers), "--variant", variant]
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    m = run_measured(cmd, env=env)
    rate = rows / m.seconds
    print(f"datatrove 0.10.1 ({variant}, {workers} workers): {rows:,} captions in {m.seconds:.1f} s wall "
          f"= {rate:,.0f} captions/s end to end")
    print(f"  {_cpu_line(m, rows)}")
    print(f"  {m.memory.describe()}")
    shutil.rmtree(out, ignore_errors=True)
    return {"rows": rows, "seconds": m.seconds, "rate": rate, "workers": workers, "variant": variant,
            "cpu_seconds": m.cpu_seconds, "load_before": m.load_before,
            "peak_pss_sum_mib": m.memory.peak_pss_sum_kib / 1024}


def bench_bare_lid(folder: Path, rows: int, cur: dict | None) -> dict:
    """bare_lid.py with each installed binding, and curate's rate against it: over the wall
    clock (paired, a shared machine makes it noisy) and from CPU time (curate's captions per
    CPU-second on every core of the machine against the bare predict's on one)."""
    import importlib.util

    out = {}
    for binding in ("fasttext_new", "fasttext"):
        if importlib.util.find_spec(binding) is None:
            continue
        m = run_measured([sys.executable, str(Path(__file__).with_name("bare_lid.py")), str(folder),
                          "--binding", binding], env=dict(os.environ, POLARS_MAX_THREADS="1"))
        rate, cpu_rate = rows / m.seconds, rows / m.cpu_seconds
        out[binding] = {"seconds": m.seconds, "cpu_seconds": m.cpu_seconds, "rate": rate, "load_before": m.load_before}
        print(f"bare fastText predict ({binding}), one thread: {rows:,} captions in {m.seconds:.1f} s wall = "
              f"{rate:,.0f} captions/s; {cpu_rate:,.0f} per CPU-second; load average before: {m.load_before}")
        if cur:
            n = os.cpu_count() or 1
            wall = cur["rate"] / rate
            cpu = rows / cur["cpu_seconds"] * n / cpu_rate
            out[binding].update(ratio_wall=wall, ratio_cpu=cpu)
            print(f"  curate score / bare predict ({binding}): {wall:.2f}x over the wall clock; {cpu:.2f}x from CPU "
                  f"time ({n} cores for curate, one for the predict; aim: >= 1.3x)")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="captions (default 1,000,000)")
    ap.add_argument("--shards", type=int, default=8, help="input Parquet files (default 8)")
    ap.add_argument("--workers", type=int, default=None, help="curate --workers (default: curate's own choice)")
    ap.add_argument("--patch", action="append", default=[],
                    help="benchmark a proposal from proposals.py (repeatable; 'all' for every one)")
    ap.add_argument("--worker-threads", type=int, default=None,
                    help="polars threads in each worker (curate itself uses 1)")
    ap.add_argument("--skip-curate", action="store_true", help="only run the peer")
    ap.add_argument("--peer", action="store_true", help="also run datatrove (lean) on the same captions")
    ap.add_argument("--peer-workers", type=int, default=2)
    ap.add_argument("--lid", action="store_true",
                    help="also run a bare one-thread batched fastText predict over the same captions "
                         "(benchmarks/bare_lid.py; with each binding installed) and print the ratio")
    ap.add_argument("--peer-stock-rows", type=int, default=0,
                    help="also run datatrove with its stock (spaCy) components on this many captions")
    args = ap.parse_args()

    print(f"machine: {cores()}; python {sys.version.split()[0]}")
    folder = make_input(args.rows, args.shards)
    print(f"input: {folder.relative_to(ROOT)} ({args.rows:,} captions in {args.shards} Parquet files)")
    print(f"distinct captions: {distinct(folder):,} (sampled with replacement from the real captions)")
    result = {"cores": os.cpu_count()}
    if not args.skip_curate:
        result["curate"] = bench_curate(folder, args.rows, args.workers, "curate score", args.patch, args.worker_threads)
    if args.peer:
        peer = bench_peer(folder, args.rows, args.peer_workers, "lean")
        result["datatrove"] = peer
        if "curate" in result:
            cur = result["curate"]
            ratio = cur["rate"] / peer["rate"]
            print(f"ratio (wall clock): curate {cur['rate']:,.0f} / datatrove {peer['rate']:,.0f} captions/s "
                  f"= {ratio:.1f}x (aim: >= 10x)")
            print(f"ratio (CPU time): curate {args.rows / cur['cpu_seconds']:,.0f} / datatrove "
                  f"{args.rows / peer['cpu_seconds']:,.0f} captions per CPU-second "
                  f"= {peer['cpu_seconds'] / cur['cpu_seconds']:.1f}x")
            result["ratio"] = ratio
    if args.lid:
        result["bare_lid"] = bench_bare_lid(folder, args.rows, result.get("curate"))
    if args.peer_stock_rows:
        small = make_input(args.peer_stock_rows, args.shards)
        result["datatrove_stock"] = bench_peer(small, args.peer_stock_rows, args.peer_workers, "stock")
        if "curate" in result:
            print(f"ratio vs stock datatrove (wall clock): "
                  f"{result['curate']['rate'] / result['datatrove_stock']['rate']:.0f}x")
    (OUT / f"bench-{args.rows}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
