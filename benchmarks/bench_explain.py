"""`curate explain` on a large run: the index by sample id (build time, size, peak memory)
and explain's latency as a fresh command, locally and from an S3 API server on loopback;
`curate verify --full` and `curate diff` on mixtures of the run, under --memory-limit.

    .venv/bin/python benchmarks/bench_explain.py --run /work/bench100m/run-100m \\
        --run-b /work/bench100m/run-100m-b --work bench-out/explain-100m --mix-size 50000000

RUN is taken as read-only: the benchmark works on a copy made of hard links (``cp -al``) in
WORK and writes the index there (``curate index``). RUN_B (a rescored twin of RUN, from
``benchmarks/synth_run.py --like RUN --vary F``) gives the second mixture for ``diff``.
Each explain is a fresh ``python -m curate.cli explain`` process: Python's start and every
import are in the time. Ids: 5 present (rows of random parts), 2 absent (random 64-bit
numbers that the index does not hold, an error line in one command). The same ids are
explained once on the run as copied without an index (the scan explain falls back to).

For the store, the S3 server (moto, in its own process, holding objects in memory) gets the
run's ``.current`` pointer, ``run.json``, ``chain.toml``, ``by-id/by-id.json`` and the buckets
and parts the looked-up ids fall in: a lookup reads no other object (uploading every part of
a 100M-row run would hold its gigabytes in the server's memory).

Wall times depend on what else the machine runs (the load average is printed with each);
the CPU seconds of the command (user + system) are steadier. Run the benchmark itself at the
default priority: each explain runs at it, as a command typed at a shell does, while index,
mix, verify and diff run under ``nice`` (batch work, as the other jobs of a shared machine).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_storage import start_server  # noqa: E402
from common import ROOT, cores, loadavg, run_measured  # noqa: E402

QUALITY = "ln(1 + score__specificity) * (1 - score__junk) * (1 - score__repetition)"


def curate(*args: str) -> list[str]:
    return [sys.executable, "-m", "curate.cli", *map(str, args)]


def env(extra: dict | None = None) -> dict:
    e = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(extra or {})}
    return e


def timed(cmd: list[str], extra_env: dict | None = None) -> dict:
    """One fresh command: wall seconds, CPU seconds (user + system), exit code, output."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = loadavg()
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env(extra_env), capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return {"wall": wall, "cpu": cpu, "rc": p.returncode, "out": p.stdout + p.stderr, "load": load,
            "peak_rss_mib": r1.ru_maxrss / 1024}


def copy_run(src: Path, dst: Path) -> Path:
    if not dst.exists():
        subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
    return dst


def measured(label: str, cmd: list[str]) -> dict:
    """A long command (index, mix, verify, diff), run under ``nice`` as batch work is."""
    m = run_measured(["nice", *cmd], env=env())
    print(f"{label}: {m.seconds:,.1f} s wall, {m.cpu_seconds:,.1f} CPU-s, peak RSS sum "
          f"{m.memory.peak_rss_sum_kib / 1024:,.0f} MiB (load before {m.load_before})", flush=True)
    return {"wall_s": round(m.seconds, 2), "cpu_s": round(m.cpu_seconds, 2),
            "peak_rss_sum_mib": round(m.memory.peak_rss_sum_kib / 1024), "load_before": m.load_before}


def pick_ids(run: Path, n_present: int, n_absent: int, seed: int = 11) -> tuple[list[int], list[int]]:
    import pyarrow.parquet as pq

    from curate.layout import pinned_run, score_parts
    from curate.scoring.byid import locate, read_info

    rng = random.Random(seed)
    parts = score_parts(pinned_run(run))
    present = []
    for p in rng.sample(parts, n_present):
        ids = pq.read_table(p, columns=["sample_id"]).column("sample_id")
        present.append(ids[rng.randrange(len(ids))].as_py())
    info = read_info(pinned_run(run))
    absent = []
    while len(absent) < n_absent:
        sid = rng.getrandbits(64)
        if not locate(pinned_run(run), info, sid):
            absent.append(sid)
    return present, absent


#: with --realtime: explain runs under ``chrt -f 5`` (a real-time priority: it gets a core
#: as soon as it can run, as on an idle machine; it runs about a second, so it takes little
#: from the other jobs)
REALTIME: list[str] = []


def explain_latency(label: str, ids: list[int], args: list[str], extra_env: dict | None = None) -> list[dict]:
    rows = []
    for sid in ids:
        r = timed(REALTIME + curate("explain", sid, *args), extra_env)
        note = "note:" in r["out"]
        status = "found" if r["rc"] == 0 else ("absent" if "is not in" in r["out"] else "ERROR")
        if status == "ERROR":
            print(r["out"][-2000:])
        rows.append({"id": sid, "status": status, "wall_s": round(r["wall"], 3), "cpu_s": round(r["cpu"], 3),
                     "note": note, "load": r["load"]})
        print(f"  {label:<28} {sid:>20}  {status:<6} {r['wall']:6.3f} s wall  {r['cpu']:6.3f} CPU-s"
              f"{'  (note: no usable index)' if note else ''}  load {r['load']}", flush=True)
    return rows


def upload_for_lookups(run: Path, ids: list[int], url: str, client, bucket: str) -> None:
    """The objects a lookup of ``ids`` reads, under ``url``'s current version (see the module
    docstring)."""
    from curate.layout import BUCKET, BY_ID, BY_ID_JSON, CHAIN_TOML, CURRENT, RUN_JSON, SCORES, VERSIONS, \
        numbered, pinned_run
    from curate.scoring.byid import locate, read_info

    v = pinned_run(run)
    info = read_info(v)
    names = {RUN_JSON, CHAIN_TOML, f"{BY_ID}/{BY_ID_JSON}"}
    for sid in ids:
        b = int(sid >> (64 - info["bits"])) if info["bits"] else 0
        names.add(f"{BY_ID}/{numbered('', BUCKET, b).name}")
        for part, _ in locate(v, info, sid):
            names.add(f"{SCORES}/{info['parts'][part]}")
    prefix = url.split("/", 3)[3]
    for n in sorted(names):
        client.upload_file(str(v / n), bucket, f"{prefix}/{VERSIONS}/{v.name}/{n}")
    client.put_object(Bucket=bucket, Key=f"{prefix}/{CURRENT}", Body=json.dumps({"version": v.name}).encode())
    size = sum((v / n).stat().st_size for n in names)
    print(f"uploaded {len(names)} objects ({size / 2**20:,.0f} MiB) to {url}", flush=True)


def summary(rows: list[dict]) -> str:
    import statistics

    w = [r["wall_s"] for r in rows]
    c = [r["cpu_s"] for r in rows]
    return (f"median {statistics.median(w):.3f} s wall (max {max(w):.3f}), "
            f"median {statistics.median(c):.3f} CPU-s (max {max(c):.3f})")


def write_recipe(path: Path, run: Path, size: int, name: str, eligible: str = "keep") -> Path:
    path.write_text(f'name = "{name}"\nsize = {size}\nseed = 42\neligible = {json.dumps(eligible)}\n'
                    f'quality = "{QUALITY}"\n'
                    f'[[source]]\nname = "synth"\nrun = "{run.resolve()}"\nshare = 1.0\n')
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, required=True, help="a scored run (read only; copied with hard links)")
    ap.add_argument("--run-b", type=Path, help="its rescored twin, for the second mixture of diff")
    ap.add_argument("--work", type=Path, required=True, help="folder for the copies, mixtures and outputs")
    ap.add_argument("--bare", type=Path, help="the run without an index, for the scan (default: --run as given)")
    ap.add_argument("--mix-size", type=int, default=0, help="rows of the mixtures to make (0: no mixtures)")
    ap.add_argument("--mix", type=Path, nargs="*", default=[],
                    help="mixtures made already (A, B) instead of --mix-size: A over a run with an index")
    ap.add_argument("--eligible", default="keep",
                    help='the mixtures\' eligible expression, e.g. \'keep AND "row" < 100000\' (the first 100k rows of '
                         'each input file: a mix that scans every row but sorts few)')
    ap.add_argument("--memory-limit", default="2GB", help="--memory-limit of verify and diff")
    ap.add_argument("--mix-memory-limit", default="6GB", help="--memory-limit of the mixes this makes")
    ap.add_argument("--no-s3", action="store_true", help="skip the S3 server")
    ap.add_argument("--no-run", action="store_true", help="skip explain --run (local and scan): the mixtures only")
    ap.add_argument("--realtime", action="store_true",
                    help="run each explain under chrt -f 5 (a core as soon as it can run: the latency of an idle machine)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    a = ap.parse_args()
    if a.realtime:
        REALTIME[:] = ["chrt", "-f", "5"]
    sys.path.insert(0, str(ROOT))
    a.work.mkdir(parents=True, exist_ok=True)
    print(f"{cores()}; load {loadavg()}", flush=True)
    res: dict = {"run": str(a.run), "load_start": loadavg(), "realtime": a.realtime}

    def save() -> None:  # after every step: a partial run keeps what it measured
        if a.json:
            a.json.write_text(json.dumps(res, indent=2) + "\n")

    run = copy_run(a.run, a.work / "run")
    bare = a.bare or a.run  # the run as given: no index (explain scans)
    from curate.layout import BY_ID, pinned_run
    from curate.scoring.byid import read_info

    if read_info(pinned_run(run)) is None:
        res["index"] = measured("curate index", curate("index", run))
    v = pinned_run(run)
    info = read_info(v)
    size = sum(p.stat().st_size for p in (v / BY_ID).iterdir())
    res["index_size_mib"] = round(size / 2**20, 1)
    res["rows"] = info["rows"]
    print(f"index: {info['rows']:,} rows, {1 << info['bits']} buckets, {size / 2**20:,.0f} MiB "
          f"({size / info['rows']:.1f} bytes a row)", flush=True)

    present, absent = pick_ids(run, 5, 2)
    ids = present + absent
    print("explain as a fresh command (Python start and imports included):", flush=True)
    if not a.no_run:
        res["explain_run"] = explain_latency("--run (index)", ids, ["--run", run])
        print(f"  --run with the index: {summary(res['explain_run'])}")
        res["explain_scan"] = explain_latency("--run (no index: scan)", present[:2], ["--run", bare])
        print(f"  --run, scan: {summary(res['explain_scan'])}")
        save()

    if not a.no_s3:
        import boto3

        server, endpoint = start_server()
        try:
            s3env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                     "AWS_DEFAULT_REGION": "us-east-1"}
            client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench",
                                  aws_secret_access_key="bench", region_name="us-east-1")
            client.create_bucket(Bucket="bench")
            url = "s3://bench/runs/big"
            upload_for_lookups(run, ids, url, client, "bench")
            res["explain_s3"] = explain_latency("--run s3:// (index)", ids, ["--run", url], s3env)
            print(f"  --run on S3 with the index: {summary(res['explain_s3'])}")
            save()
        finally:
            server.kill()
    mixes = dict(zip("ab", a.mix))
    if a.mix_size and not mixes:
        for label, r in (("a", run), ("b", copy_run(a.run_b, a.work / "run-b") if a.run_b else None)):
            if r is None:
                continue
            if read_info(pinned_run(r)) is None:
                res[f"index_{label}"] = measured(f"curate index ({label})", curate("index", r))
            out = a.work / f"mix-{label}"
            if not (out / "manifest.json").exists():
                recipe = write_recipe(a.work / f"mix-{label}.toml", r, a.mix_size, f"synth-{label}", a.eligible)
                res[f"mix_{label}"] = measured(f"curate mix ({label}, {a.mix_size:,} rows)",
                                               curate("mix", recipe, "--out", out, "--memory-limit",
                                                      a.mix_memory_limit, "--overwrite"))
                save()
            mixes[label] = out
    if mixes:
        res["explain_mix"] = explain_latency("--mix (index)", ids, ["--mix", mixes["a"]])
        print(f"  --mix with the index: {summary(res['explain_mix'])}")
        save()
        res["verify"] = measured(f"curate verify --full --memory-limit {a.memory_limit}",
                                 curate("verify", mixes["a"], "--full", "--memory-limit", a.memory_limit))
        save()
        if "b" in mixes:
            res["diff"] = measured(f"curate diff --memory-limit {a.memory_limit}",
                                   curate("diff", mixes["a"], mixes["b"], "--memory-limit", a.memory_limit))

    res["load_end"] = loadavg()
    save()
    shutil.rmtree(a.work / ".tmp", ignore_errors=True)


if __name__ == "__main__":
    main()
