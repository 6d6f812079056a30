"""WebDataset resharding throughput: ``curate export MIX --format webdataset`` with images.

    .venv/bin/python benchmarks/bench_export.py [--rows 40000] [--select 20000] [--image-kb 16]
    .venv/bin/python benchmarks/bench_export.py --for open_clip --for mds --for hf ...

Writes WebDataset shards of real captions with fake images of about ``--image-kb`` KB,
scores them, mixes ``--select`` samples (``eligible = "true"``) and exports them as WebDataset (images copied byte
for byte from the source tars). Prints samples/s and MB/s of the export, and peak RSS. With
``--for TRAINER`` (repeatable) it times ``curate export --for TRAINER`` instead, one after
the other (peak RSS is then the largest of them).
"""
from __future__ import annotations

import argparse
import io
import resource
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import caption_pool, loadavg  # noqa: E402

from curate.export.shards import export  # noqa: E402
from curate.export.trainers import export_for  # noqa: E402
from curate.mix.build import build_mixture  # noqa: E402
from curate.scoring.chain import load_chain  # noqa: E402
from curate.scoring.runner import ScoreOptions, score  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=40_000)
    ap.add_argument("--select", type=int, default=20_000)
    ap.add_argument("--image-kb", type=int, default=16)
    ap.add_argument("--per-shard", type=int, default=10_000)
    ap.add_argument("--for", dest="trainers", action="append", default=[],
                    choices=["open_clip", "energon", "mds", "litdata", "hf"])
    a = ap.parse_args()
    pool = caption_pool()
    d = Path(tempfile.mkdtemp(prefix="bench-export-"))
    img = bytes(range(256)) * (a.image_kb * 4)
    for s in range(0, a.rows, a.per_shard):
        with tarfile.open(d / f"{s // a.per_shard:05d}.tar", "w", format=tarfile.USTAR_FORMAT) as tf:
            for i in range(s, min(s + a.per_shard, a.rows)):  # writing the input, not curate
                for ext, data in (("jpg", img[: len(img) - i % 997]), ("txt", pool[i % len(pool)].encode()),
                                  ("json", b'{"url": "https://img.example/%d"}' % i)):
                    info = tarfile.TarInfo(f"{i:09d}.{ext}")
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    score(sorted(str(p) for p in d.glob("*.tar")), d / "run", load_chain(None), ScoreOptions())
    (d / "m.toml").write_text(f'size = {a.select}\neligible = "true"\n[[source]]\nname = "w"\nrun = "{d / "run"}"\nshare = 1.0\n')
    build_mixture(d / "m.toml", d / "mix")
    print(f"load average before: {loadavg()}")
    for trainer in a.trainers:
        t0 = time.perf_counter()
        index = export_for(d / "mix", trainer, d / f"out-{trainer}")
        s = time.perf_counter() - t0
        mb = sum(f.stat().st_size for f in (d / f"out-{trainer}").rglob("*") if f.is_file()) / 1e6
        print(f"--for {trainer}: {index['rows']:,} samples ({index['images_copied']:,} images, {mb:,.0f} MB) in "
              f"{s:.2f} s: {index['rows'] / s:,.0f} samples/s, {mb / s:,.0f} MB/s")
    if a.trainers:
        print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB; "
              f"load average after: {loadavg()}")
        import shutil

        shutil.rmtree(d)
        return
    t0 = time.perf_counter()
    index = export(d / "mix", "webdataset", d / "out")
    s = time.perf_counter() - t0
    mb = sum(x["bytes"] for x in index["shards"]) / 1e6
    print(f"exported {index['rows']:,} samples ({index['images_copied']:,} images, {mb:,.0f} MB) in {s:.2f} s: "
          f"{index['rows'] / s:,.0f} samples/s, {mb / s:,.0f} MB/s")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB; "
          f"load average after: {loadavg()}")
    import shutil

    shutil.rmtree(d)


if __name__ == "__main__":
    main()
