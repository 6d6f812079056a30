"""The learned filter: training time on 10k labelled captions, and scoring throughput of
the ``classifier`` filter beside the other filters of a chain that uses it.

    python benchmarks/bench_classifier.py [--train-rows 10000] [--score-rows 100000] [--method fasttext|probe]

Labels: human captions (a_*) against web alt-text (c_*) from ../shared/data, sampled with
replacement to --train-rows (fixed seed). Scoring: --score-rows captions from the benchmark
pool (common.caption_pool), in batches of 100k as `curate score` does, one process; each
filter is timed on its own (the language filter first, since specificity reads lang).
Prints captions/s per filter, the load average and peak memory (ru_maxrss).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, OUT, caption_pool, loadavg  # noqa: E402

from curate.scoring.chain import parse_chain  # noqa: E402
from curate.scoring.frame import normalised  # noqa: E402
from curate.train.fit import Settings  # noqa: E402
from curate.train.run import train  # noqa: E402

SEED = 7


def labels(rows: int, path: Path) -> Path:
    a = pl.concat([pl.read_parquet(f, columns=["caption", "group_id"]) for f in sorted(DATA.glob("a_*.parquet"))])
    c = pl.concat([pl.read_parquet(f, columns=["caption", "group_id"]) for f in sorted(DATA.glob("c_*.parquet"))],
                  how="vertical_relaxed")
    df = pl.concat([a.with_columns(label=pl.lit(1)), c.with_columns(label=pl.lit(0))])
    df = df.filter(pl.col("caption").str.strip_chars() != "").sample(rows, with_replacement=True, seed=SEED)
    df.write_parquet(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-rows", type=int, default=10_000)
    ap.add_argument("--score-rows", type=int, default=100_000)
    ap.add_argument("--method", choices=["fasttext", "probe"], default="fasttext")
    args = ap.parse_args()
    out = OUT / "classifier"
    out.mkdir(parents=True, exist_ok=True)
    print(f"load average before: {loadavg()}")
    path = labels(args.train_rows, out / "labels.parquet")
    t0 = time.perf_counter()
    meta = train([str(path)], "label", out / f"model-{args.method}", group="group_id",
                 settings=Settings(method=args.method))
    wall = time.perf_counter() - t0
    print(f"train {args.method} on {args.train_rows:,} labelled captions: fit {meta['timings']['fit_s']:.2f} s, "
          f"whole command {wall:.2f} s (reading, split, held-out metrics and the specificity baseline included); "
          f"held-out AUC {meta['validation']['classifier']['roc_auc']:.3f}")

    pool = caption_pool()
    captions = pl.Series("caption", pool).sample(args.score_rows, with_replacement=True, seed=SEED)
    chain = parse_chain({"name": "bench", "filter": [
        {"name": "length"}, {"name": "language"}, {"name": "specificity"}, {"name": "junk"},
        {"name": "repetition"}, {"name": "classifier", "params": {"model": str(out / f"model-{args.method}")}},
    ]})
    batch = pl.DataFrame({"caption": captions}).with_columns(normalised(captions))
    warm = batch.head(1000)
    for step in sorted(chain.steps, key=lambda s: s.filter.name != "language"):
        warm = warm.with_columns(step.filter.score(warm, step.column))  # one-off loads, not timed
    print(f"load average: {loadavg()}")
    df = batch
    rates = {}
    for step in sorted(chain.steps, key=lambda s: s.filter.name != "language"):
        t = time.perf_counter()
        for s in range(0, df.height, 100_000):
            part = df.slice(s, 100_000)
            step.filter.score(part, step.column)
        rates[step.id] = df.height / (time.perf_counter() - t)
        if step.filter.name == "language":
            df = df.with_columns(step.filter.score(df, step.column))
    for k, v in sorted(rates.items(), key=lambda kv: kv[1]):
        print(f"  {k:12s} {v:>12,.0f} captions/s")
    slowest = min(rates, key=rates.get)
    print(f"slowest filter: {slowest}; classifier is {rates['classifier'] / rates[slowest]:.1f}x its rate")
    print(f"peak memory (ru_maxrss): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
          f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
