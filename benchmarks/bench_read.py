"""Read throughput per input format: captions/s through curate's readers (no scoring).

    .venv/bin/python benchmarks/bench_read.py [--rows 1000000] [--tar-rows 100000]

Writes the same real captions (repeated from ../shared/data) as Parquet, JSONL (plain, .gz,
.zst), CSV .gz and .bz2, headerless TSV, Feather and a WebDataset shard (fake 1-2 KB images), then
reads each with ``read_batches`` as ``curate score`` does (the reader alone: a whole
``curate score`` is dominated by scoring). Prints captions/s over the wall clock, captions
per CPU-second of this process (all its threads: steady when other work shares the
machine), MB/s of the file and the peak RSS of this process.
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--tar-rows", type=int, default=100_000)
    a = ap.parse_args()
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
    import shutil

    shutil.rmtree(d)


if __name__ == "__main__":
    main()
