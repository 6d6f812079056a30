"""Export with images from WebDataset tars in an S3 store vs on local disk.

    .venv/bin/python benchmarks/bench_store_export.py [--samples 20000] [--tars 4] [--share 0.5]

Writes ``--tars`` WebDataset tars of real captions (repeated from ../shared/data) with
generated image members of 4-12 KB, starts moto's S3 server in its own process, uploads
them, scores them once from local disk and once from ``s3://`` (two runs), mixes about
``--share`` of the samples from each, and exports each mixture with
``curate export --format webdataset`` in a fresh process: from the local tars (memory-mapped)
and from the store (only the selected members, read by coalesced byte ranges). Prints images/s,
MB/s of images copied, the range requests and bytes fetched, the CPU seconds and the peak
RSS of the exporting process. The loopback server has no network latency and serves every
request from one Python process on the same cores: its figures show the client's cost.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_storage import child_result, peak_rss_kib, start_server, store_env  # noqa: E402
from common import OUT, caption_pool, cores, loadavg  # noqa: E402


def write_tars(d: Path, samples: int, tars: int) -> list[Path]:
    import webdataset as wds

    d.mkdir(parents=True, exist_ok=True)
    caps = caption_pool()
    rng = np.random.default_rng(0)
    per = -(-samples // tars)
    paths = []
    for k in range(tars):
        p = d / f"{k:05d}.tar"
        paths.append(p)
        if p.exists():
            continue
        with wds.TarWriter(str(p)) as w:
            for i in range(k * per, min(samples, (k + 1) * per)):
                img = b"\xff\xd8" + rng.bytes(int(rng.integers(4096, 12288))) + b"\xff\xd9"
                w.write({"__key__": f"{i:08d}", "txt": caps[i % len(caps)], "jpg": img})
    return paths


def export_one(mix: str, out: str) -> None:
    """Child process: one export, counting the range requests; print one JSON line."""
    from curate.export.shards import export
    from curate.storage.fs import filesystem

    fetched = {"requests": 0, "calls": 0, "bytes": 0}
    fs, _ = filesystem("s3://bench")  # the client the export reads through
    real = fs.cat_ranges

    def counted(paths, starts, ends, **kw):
        fetched["calls"] += 1
        fetched["requests"] += len(starts)
        fetched["bytes"] += sum(e - s for s, e in zip(starts, ends))
        return real(paths, starts, ends, **kw)

    fs.cat_ranges = counted
    t0, c0 = time.perf_counter(), time.process_time()
    index = export(mix, "webdataset", out, shard_rows=5000, overwrite=True)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tars = sorted(Path(out).glob("shard-*.tar"))
    print(json.dumps({"images": index["images_copied"], "wall_s": wall, "cpu_s": cpu,
                      "out_bytes": sum(p.stat().st_size for p in tars), **fetched,
                      "peak_rss_mb": peak_rss_kib() / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--tars", type=int, default=4)
    ap.add_argument("--share", type=float, default=0.5, help="about this share of the samples is selected")
    ap.add_argument("--export-one", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.export_one:
        return export_one(*a.export_one)
    base = OUT / f"store-export-{a.samples}-{a.tars}"
    tars = write_tars(base / "tars", a.samples, a.tars)
    proc, endpoint = start_server()
    env = store_env(endpoint)
    try:
        import boto3

        from curate.mix.build import build_mixture
        from curate.scoring.chain import load_chain
        from curate.scoring.runner import ScoreOptions, score

        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket="bench")
        for p in tars:
            client.upload_file(str(p), "bench", f"tars/{p.name}")
        size = sum(p.stat().st_size for p in tars)
        print(f"{cores()}; load average {loadavg()}; {a.samples:,} samples in {a.tars} tars "
              f"({size / 1e6:,.0f} MB), about {a.share:.0%} selected")
        for where, inputs in (("local", [str(p) for p in tars]), ("s3", ["s3://bench/tars/"])):
            run, mix = base / f"run-{where}", base / f"mix-{where}"
            score(inputs, run, load_chain(None), ScoreOptions(overwrite=True))
            recipe = base / f"recipe-{where}.toml"
            recipe.write_text(f'size = {int(a.samples * a.share)}\nseed = 1\n'
                              f'[[source]]\nname = "tars"\nrun = "{run}"\nshare = 1.0\n')
            build_mixture(recipe, mix, overwrite=True)
            r = child_result([__file__, "--export-one", str(mix), str(base / f"out-{where}")], env)
            print(f"{where:5s}: {r['images']:,} images in {r['wall_s']:.2f} s, "
                  f"{r['images'] / r['wall_s']:,.0f} images/s, "
                  f"{r['out_bytes'] / 1e6 / r['wall_s']:,.1f} MB/s of shards written; {r['requests']:,} range requests "
                  f"in {r['calls']:,} rounds, {r['bytes'] / 1e6:,.1f} MB fetched; CPU {r['cpu_s']:.2f} s, "
                  f"peak RSS {r['peak_rss_mb']:,.0f} MB")
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
