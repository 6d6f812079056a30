"""Read throughput per input format: captions/s through curate's readers (no scoring).

    .venv/bin/python benchmarks/bench_read.py [--rows 1000000] [--tar-rows 100000]
    .venv/bin/python benchmarks/bench_read.py --img2dataset 100000 [--shards 10] [--pythonpath OLD]

Writes the same real captions (repeated from ../shared/data) as Parquet, JSONL (plain, .gz,
.zst), CSV .gz and .bz2, headerless TSV, Feather and a WebDataset shard (fake 1-2 KB images), then
reads each with ``read_batches`` as ``curate score`` does (the reader alone: a whole
``curate score`` is dominated by scoring). Prints captions/s over the wall clock, captions
per CPU-second of this process (all its threads: steady when other work shares the
machine), MB/s of the file and the peak RSS of this process.

``--img2dataset N`` instead writes an img2dataset output folder of N samples under
``bench-out/`` (kept for reruns): per shard ``NNNNN.tar`` written by ``webdataset.TarWriter``
(a pax header per member, as img2dataset writes them) with ``key.jpg`` (10-30 KB of random
bytes), ``key.txt`` (a real caption) and ``key.json`` (img2dataset's fields), the sidecar
``NNNNN.parquet`` and ``NNNNN_stats.json``. It times the tar scan alone (``read_batches``),
then the whole command ``curate score FOLDER --out RUN --carry-all`` (default chain and
workers): samples/s over its wall clock, CPU seconds and peak memory of its process tree.
``--pythonpath DIR`` runs the command with another checkout's ``curate`` (a before/after
comparison on the same shards; ``--tars-only`` scores ``FOLDER/*.tar``, for a checkout that
would read the sidecars as captions too).
"""
from __future__ import annotations

import argparse
import gzip
import io
import resource
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.feather as feather

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import caption_pool, loadavg  # noqa: E402

from curate.ingest import inputs, readers  # noqa: E402


def shard(path: Path, df: pl.DataFrame) -> None:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for i, (cap, url) in enumerate(zip(df["caption"], df["url"])):  # writing the input, not curate
            for ext, data in (("jpg", bytes(1024 + i % 1024)), ("txt", cap.encode()),
                              ("json", ('{"url": "%s", "key": "%09d"}' % (url, i)).encode())):
                info = tarfile.TarInfo(f"{i:09d}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


def img2dataset_folder(d: Path, n: int, shards: int) -> None:
    """An img2dataset output folder of ``n`` samples (see the module docstring)."""
    import json

    import numpy as np
    import pyarrow.parquet as pq
    import webdataset as wds

    if (d / "done").exists():
        return
    d.mkdir(parents=True, exist_ok=True)
    pool = caption_pool()
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    per = -(-n // shards)
    for s in range(shards):
        rows = []
        with open(d / f"{s:05d}.tar", "wb") as f:
            tw = wds.TarWriter(f)
            for j in range(min(per, n - s * per)):  # writing the input, not curate
                i = s * per + j
                size, at = int(rng.integers(10_000, 30_001)), int(rng.integers(0, (64 << 20) - 30_001))
                meta = {"url": f"https://img.example/{i}.jpg", "caption": pool[i % len(pool)],
                        "similarity": float(rng.random()), "key": f"{s:05d}{j:04d}", "status": "success",
                        "error_message": None, "width": 256, "height": 256, "original_width": 640,
                        "original_height": 480}
                rows.append(meta)
                tw.write({"__key__": meta["key"], "jpg": noise[at:at + size], "txt": meta["caption"],
                          "json": json.dumps(meta, indent=4)})
            tw.close()
        pq.write_table(pa.Table.from_pylist(rows), d / f"{s:05d}.parquet")
        (d / f"{s:05d}_stats.json").write_text(json.dumps({"count": len(rows), "successes": len(rows)}))
    (d / "done").write_text("")


def bench_img2dataset(n: int, shards: int, pythonpath: str | None, tars_only: bool) -> None:
    import os
    import shutil

    from common import OUT, run_measured

    d = OUT / f"img2dataset-{n}"
    img2dataset_folder(d, n, shards)
    size = sum(p.stat().st_size for p in d.glob("*.tar")) / 1e6
    print(f"{n:,} samples in {shards} shards, {size:,.0f} MB of tars; {os.cpu_count()} cores; load average {loadavg()}")
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    cmd = [sys.executable, "-m", "curate.cli"]
    if pythonpath:  # that checkout's curate first on the path (the packaged chains still resolve)
        cmd = [sys.executable, "-c", "import sys, runpy; sys.path.insert(0, sys.argv.pop(1)); "
               "runpy.run_module('curate.cli', run_name='__main__')", pythonpath]
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        rows = 0
        for path in sorted(d.glob("*.tar")):
            [inp] = inputs.resolve_inputs([str(path)])
            inputs.inspect_input(inp)
            rows += sum(b.height for b in readers.read_batches(inp, "caption", None, [], 100_000))
        s, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"tar scan alone (read_batches): {rows:,} samples in {s:.2f} s, {rows / s:,.0f} samples/s, "
              f"{size / s:,.0f} MB/s; CPU {cpu:.2f} s ({rows / cpu:,.0f} samples per CPU-second)")
    run = OUT / "img2dataset-run"
    shutil.rmtree(run, ignore_errors=True)
    cmd += ["score", str(d / "*.tar") if tars_only else str(d), "--out", str(run), "--carry-all"]
    m = run_measured(cmd, env=env)
    got = pl.read_parquet(run / "scores" / "*.parquet", columns=["row"]).height
    print(f"curate score (whole command{', PYTHONPATH=' + pythonpath if pythonpath else ''}): {got:,} rows in "
          f"{m.seconds:.1f} s, {got / m.seconds:,.0f} samples/s; CPU {m.cpu_seconds:.1f} s "
          f"({got / max(m.cpu_seconds, 1e-9):,.0f} samples per CPU-second); load average before {m.load_before}")
    print(m.memory.describe())
    shutil.rmtree(run, ignore_errors=True)


def cutter(csv: bytes) -> None:
    """CPU of the CSV reader's check of the fields of every record (it names a ragged line)
    on one block of real captions, as ``compressed.csv_batches`` runs it per block."""
    from curate.ingest import compressed

    block = csv[: compressed.CHUNK_BYTES]
    block = block[: block.rfind(b"\n") + 1]
    lines = block.count(b"\n")
    c0 = time.process_time()
    compressed.check_fields("a.csv", block, ",", True, 2, 1)
    print(f"CSV block of {len(block) / 1e6:.0f} MB ({lines:,} lines): fields of every record counted in "
          f"{time.process_time() - c0:.3f} CPU-s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tar-rows", type=int, default=100_000)
    ap.add_argument("--img2dataset", type=int, default=0, help="samples of an img2dataset folder to score")
    ap.add_argument("--shards", type=int, default=10)
    ap.add_argument("--pythonpath", default=None, help="run curate score from this checkout")
    ap.add_argument("--tars-only", action="store_true", help="score FOLDER/*.tar, not the folder (no sidecars)")
    a = ap.parse_args()
    if a.img2dataset:
        bench_img2dataset(a.img2dataset, a.shards, a.pythonpath, a.tars_only)
        return
    pool = caption_pool()
    caps = (pool * (a.rows // len(pool) + 1))[: a.rows]
    df = pl.DataFrame({"caption": caps}).with_row_index("i").select(
        "caption", ("https://img.example/" + pl.col("i").cast(pl.String)).alias("url"))
    d = Path(tempfile.mkdtemp(prefix="bench-read-"))
    files: dict[str, tuple[Path, tuple]] = {}
    df.write_parquet(d / "a.parquet")
    files["parquet"] = (d / "a.parquet", ())
    nd = df.write_ndjson().encode()
    (d / "a.jsonl").write_bytes(nd)
    files["jsonl"] = (d / "a.jsonl", ())
    (d / "a.jsonl.gz").write_bytes(gzip.compress(nd, 6))
    files["jsonl.gz"] = (d / "a.jsonl.gz", ())
    (d / "a.csv.gz").write_bytes(gzip.compress(df.write_csv().encode(), 6))
    files["csv.gz"] = (d / "a.csv.gz", ())
    with pa.CompressedOutputStream(str(d / "a.jsonl.zst"), "zstd") as f:
        f.write(nd)
    files["jsonl.zst"] = (d / "a.jsonl.zst", ())
    tsv = df.with_columns(pl.col("caption").str.replace_all(r"[\t\r\n]", " "))
    tsv.write_csv(d / "a.tsv", separator="\t", include_header=False, quote_style="never")
    files["tsv (headerless)"] = (d / "a.tsv", ("caption", "url"))
    with pa.CompressedOutputStream(str(d / "a.csv.bz2"), "bz2") as f:
        f.write(df.write_csv().encode())
    files["csv.bz2"] = (d / "a.csv.bz2", ())
    feather.write_feather(df.to_arrow(), d / "a.feather")
    files["feather"] = (d / "a.feather", ())
    shard(d / "a.tar", df.head(a.tar_rows))
    files["webdataset tar"] = (d / "a.tar", ())
    print(f"load average before: {loadavg()}")
    for name, (path, names) in files.items():
        [inp] = inputs.resolve_inputs([str(path)])
        t0, c0 = time.perf_counter(), time.process_time()
        inputs.inspect_input(inp, names)
        n = sum(b.height for b in readers.read_batches(inp, "caption", None, ["url"], 100_000))
        s, cpu = time.perf_counter() - t0, time.process_time() - c0
        mb = path.stat().st_size / 1e6
        print(f"{name:18s} {n:>9,} captions {s:6.2f} s {n / s:>11,.0f} captions/s {n / cpu:>11,.0f} per CPU-s "
              f"{mb / s:8.1f} MB/s (file {mb:,.0f} MB)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:,.0f} MiB; load average after: {loadavg()}")
    cutter(df.write_csv().encode())
    import shutil

    shutil.rmtree(d)


if __name__ == "__main__":
    main()
