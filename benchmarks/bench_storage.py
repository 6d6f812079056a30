"""Read throughput from an S3 API server on loopback vs local disk: Parquet, JSONL.gz and a
WebDataset tar, through curate's readers (no scoring), and the listing of many objects.

    .venv/bin/python benchmarks/bench_storage.py [--rows 1000000] [--tar-rows 100000] [--listing 0]

Writes the same real captions (repeated from ../shared/data) as Parquet (row groups of 100k),
JSONL.gz and a WebDataset shard (``key.jpg`` of 1-2 KB, ``key.txt``, ``key.json``), starts
moto's S3 server in its own process (so that its CPU and memory are not the reader's),
uploads them, then reads each file with ``resolve_inputs`` + ``read_batches`` as
``curate score`` does, once from local disk and once from ``s3://``, each read in a fresh
process. Prints captions/s and MB/s of the file over the wall clock, captions per CPU-second of the
reading process (steadier when other work shares the machine) and its peak RSS.
``--listing N`` also puts N small objects under one prefix and times ``list_objects`` on it
(paginated listing, 1,000 keys a request). The loopback server has no network latency and
serves every request from one Python process: it shows the client's overhead, not a real
store's bandwidth.
"""
from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import resource
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, caption_pool, cores, loadavg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def write_inputs(d: Path, rows: int, tar_rows: int) -> dict[str, Path]:
    import pyarrow.parquet as pq

    d.mkdir(parents=True, exist_ok=True)
    files = {"parquet": d / "captions.parquet", "jsonl.gz": d / "captions.jsonl.gz", "tar": d / "shard.tar"}
    if all(p.exists() for p in files.values()):
        return files
    pool = caption_pool()
    df = pl.DataFrame({"caption": [pool[i % len(pool)] for i in range(rows)],
                       "url": [f"https://img.example/{i}.jpg" for i in range(rows)]})
    pq.write_table(df.to_arrow(), files["parquet"], row_group_size=100_000)
    files["jsonl.gz"].write_bytes(gzip.compress(df.write_ndjson().encode(), compresslevel=6))
    with tarfile.open(files["tar"], "w", format=tarfile.USTAR_FORMAT) as tf:
        for i in range(tar_rows):  # writing the input, not curate
            for ext, data in (("jpg", bytes(1024 + i % 1024)), ("txt", pool[i % len(pool)].encode()),
                              ("json", json.dumps({"key": f"{i:09d}"}).encode())):
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return files


def read_one(path: str) -> None:
    """Child process: read one input as `curate score` does; print one JSON line."""
    import s3fs  # noqa: F401  (imported before the clock starts, as for a local read)

    from curate.ingest import inputs, readers

    t0, c0 = time.perf_counter(), time.process_time()
    [inp] = inputs.resolve_inputs([path])
    inputs.inspect_input(inp)
    n = sum(b.height for b in readers.read_batches(inp, "caption", None, [], 100_000))
    print(json.dumps({"rows": n, "bytes": inp.size, "wall_s": time.perf_counter() - t0,
                      "cpu_s": time.process_time() - c0,
                      "peak_rss_mb": peak_rss_kib() / 1024}))


def peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited from the parent that
    forked it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "import logging, sys; from moto.server import main; "
                             "logging.getLogger('werkzeug').setLevel(logging.ERROR); main(sys.argv[1:])",
                             "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    sys.exit("moto's S3 server did not start")


def child_result(args: list[str], env: dict) -> dict:
    """Run ``python ARGS`` in a fresh process (its own peak memory) and return the JSON of its
    last output line; its error's tail ends this benchmark."""
    out = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def store_env(endpoint: str) -> dict:
    """The environment of a command that talks to the server at ``endpoint`` (returned); this
    process's AWS variables pointed at it too."""
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
               AWS_DEFAULT_REGION="us-east-1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    os.environ.update({k: env[k] for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_DEFAULT_REGION")})
    return env


def bench_listing(client, bucket: str, n: int) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from curate.storage.listing import list_objects

    t0 = time.perf_counter()
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: client.put_object(Bucket=bucket, Key=f"many/{i:07d}.jsonl", Body=b"{}\n"), range(n)))
    put = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    objs = list_objects(f"s3://{bucket}/many/")
    s, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"listing: {len(objs):,} objects in {s:.1f} s ({len(objs) / s:,.0f} objects/s, "
          f"{-(-len(objs) // 1000)} list requests; CPU of this process {cpu:.1f} s, the rest is the server's; "
          f"putting them took {put:.0f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tar-rows", type=int, default=100_000)
    ap.add_argument("--listing", type=int, default=0, help="also list this many objects under one prefix")
    ap.add_argument("--read-one", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.read_one:
        return read_one(a.read_one)
    files = write_inputs(OUT / f"storage-{a.rows}-{a.tar_rows}", a.rows, a.tar_rows)
    proc, endpoint = start_server()
    env = store_env(endpoint)
    try:
        import boto3

        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bench")
        for p in files.values():
            client.upload_file(str(p), "bench", p.name)
        print(f"{cores()}; load average {loadavg()}; {a.rows:,} captions (Parquet, JSONL.gz), "
              f"{a.tar_rows:,} tar samples")
        for fmt, p in files.items():
            for where, path in (("local", str(p)), ("s3", f"s3://bench/{p.name}")):
                r = child_result([__file__, "--read-one", path], env)
                print(f"{fmt:9s} {where:5s}: {r['rows']:,} captions in {r['wall_s']:.2f} s, "
                      f"{r['rows'] / r['wall_s']:,.0f} captions/s, {r['bytes'] / 1e6 / r['wall_s']:,.1f} MB/s "
                      f"({r['bytes'] / 1e6:,.1f} MB), CPU {r['cpu_s']:.2f} s ({r['rows'] / r['cpu_s']:,.0f} captions per "
                      f"CPU-second), peak RSS {r['peak_rss_mb']:,.0f} MB")
        if a.listing:
            bench_listing(client, "bench", a.listing)
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
