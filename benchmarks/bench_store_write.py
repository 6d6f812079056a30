"""Runs and mixtures on object storage: write throughput to a local S3 API server (moto's
server mode, in this process) against local disk, and `curate mix` over runs on the store
against the same mix over the same runs on disk.

* **Write**: the synthetic scored runs of benchmarks/bench_mix.py (real rows replicated)
  are committed to ``s3://bench/runs/NAME`` as `curate score --out s3://...` commits them
  (:class:`curate.storage.commit.StoreWrite`: parts, then run.json, then the pointer), and
  copied on local disk with an fsync of every file, as a local run's parts are flushed.
  Printed: MB/s of each and the peak memory of this process.
* **Mix**: `curate mix` as a fresh process (as a user runs it) over the runs on disk into
  a local folder, then over the runs on the store into ``s3://bench/mixes/...``, each with
  ``--memory-limit``; wall and CPU seconds, peak memory of the process tree, and whether
  the two manifests are the same bytes.

The S3 server is moto's, in memory and in Python: its throughput is a floor for the
client's overhead, not a prediction of a real store's. The load average is printed with
every timing (the machine is shared).

    python benchmarks/bench_store_write.py                  # 3M rows
    python benchmarks/bench_store_write.py --rows 300000    # quicker
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mix import curate_cmd, seed_runs, synthetic_runs  # noqa: E402
from common import OUT, cores, loadavg, run_measured  # noqa: E402


def start_store() -> str:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
                      AWS_DEFAULT_REGION="us-east-1")
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    return endpoint


def size_mb(run: Path) -> float:
    return sum(p.stat().st_size for p in run.rglob("*") if p.is_file()) / 1e6


def write_to_disk(run: Path, dest: Path) -> float:
    """Copy a run's files to ``dest`` and flush each (a local run's parts are written so)."""
    shutil.rmtree(dest, ignore_errors=True)
    t0 = time.perf_counter()
    for p in sorted(run.rglob("*")):
        if p.is_file():
            out = dest / p.relative_to(run)
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(p, "rb") as src, open(out, "wb") as f:
                shutil.copyfileobj(src, f, 4 << 20)
                f.flush()
                os.fsync(f.fileno())
    return time.perf_counter() - t0


def write_to_store(run: Path, url: str) -> float:
    """Commit a local run to ``url`` as `curate score --out URL` does after scoring."""
    from curate.storage.commit import store_write

    t0 = time.perf_counter()
    with store_write(url, "a run") as w:
        w.commit_run(run)
    return time.perf_counter() - t0


def recipe(path: Path, runs: dict[str, str], size: int) -> Path:
    lines = [f"name = {json.dumps(path.stem)}", f"size = {size}", "seed = 7",
             'quality = "ln(1 + score__specificity) * (1 - score__junk)"']
    for name, share in zip(runs, (0.5, 0.3, 0.2)):
        lines += ["[[source]]", f"name = {json.dumps(name)}", f"run = {json.dumps(runs[name])}", f"share = {share}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def mix(recipe_file: Path, out: str, memory: str, threads: int, rows: int) -> dict:
    m = run_measured(curate_cmd() + ["mix", str(recipe_file), "--out", out, "--threads", str(threads),
                                     "--memory-limit", memory, "--overwrite"], env=dict(os.environ))
    print(f"  {out}: {rows:,} scored rows in {m.seconds:.1f} s wall ({rows / m.seconds:,.0f} rows/s), "
          f"{m.cpu_seconds:.1f} CPU s, peak RSS of the tree {m.memory.peak_rss_sum_kib / 1024:,.0f} MiB; "
          f"load before {m.load_before}")
    return {"wall_s": m.seconds, "cpu_s": m.cpu_seconds, "peak_rss_mib": m.memory.peak_rss_sum_kib / 1024,
            "load_before": m.load_before}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=3_000_000, help="scored rows over the 3 sources")
    ap.add_argument("--size", type=int, default=300_000, help="rows in the mixture")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--memory-limit", default="2GB", help="curate mix --memory-limit")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    print(f"object-storage benchmark: {args.rows:,} scored rows; {cores()}; load {loadavg()}")
    base = OUT / f"store-{args.rows}"
    runs = synthetic_runs(seed_runs(), base, args.rows)
    start_store()
    results: dict = {"rows": args.rows, "cores": cores(), "write": {}}
    store_runs = {}
    for name, run in runs.items():
        mb = size_mb(run)
        disk_s = write_to_disk(run, base / "copies" / name)
        store_runs[name] = f"s3://bench/runs/{name}"
        store_s = write_to_store(run, store_runs[name])
        print(f"  write {name} ({mb:,.1f} MB): local disk {mb / disk_s:,.0f} MB/s, S3 server {mb / store_s:,.0f} MB/s "
              f"({store_s:.2f} s); load {loadavg()}")
        results["write"][name] = {"mb": mb, "disk_mb_s": mb / disk_s, "store_mb_s": mb / store_s}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  peak RSS of this process (S3 server included): {peak:,.0f} MiB")
    local = mix(recipe(base / "local.toml", {k: str(v) for k, v in runs.items()}, args.size),
                str(base / "mix-local"), args.memory_limit, args.threads, args.rows)
    store = mix(recipe(base / "store.toml", store_runs, args.size), "s3://bench/mixes/m", args.memory_limit,
                args.threads, args.rows)
    from curate.layout import pinned_store
    from curate.storage.fs import filesystem

    fs, p = filesystem(pinned_store("s3://bench/mixes/m") + "/manifest.parquet")
    same = fs.cat_file(p) == (base / "mix-local" / "manifest.parquet").read_bytes()
    print(f"  manifest.parquet from the store's runs is the local mix's bytes: {same}")
    results.update(mix_local=local, mix_store=store, same_manifest=same)
    (base / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {base / 'results.json'}")


if __name__ == "__main__":
    main()
