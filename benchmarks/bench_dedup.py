"""Near-duplicate detection benchmark: `curate dedup` end to end on 1M (or 10M) captions.

Builds N captions from the real captions of ../shared/data (fixed seed; see
:func:`perturbed_frame`: by default mostly distinct captions spliced from two real ones, 35%
of the rows replaced by near copies of other rows: a dropped or swapped word; case,
punctuation, white space, a stock-photo prefix or suffix), writes them under bench-out/ (git-ignored),
makes a run folder with `curate score` (chain: length + specificity, so the representative
order has its default column), and then times `curate dedup RUN --embedder static` in a
fresh process: text normalisation, embedding, index, neighbour table, groups, writes.
Prints captions/s over the command's wall clock and its CPU time, the peak memory of the
process, and the stage timings from RUN/dedup/dedup.json. A second, warm run (same run,
other threshold: embeddings and neighbours come from disk) shows the cost of a re-decision.
Finally it times the MiniLM embedder on a smaller sample (--minilm-rows).

    python benchmarks/bench_dedup.py                      # 1M captions, 2 threads
    python benchmarks/bench_dedup.py --rows 10000000 --no-minilm
    python benchmarks/bench_dedup.py --corpus copies      # few distinct bases, many near copies
    python benchmarks/bench_dedup.py --rows 200000 --minilm-rows 500
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
from common import DATA, OUT, SEED, caption_pool, cores, run_measured  # noqa: E402

#: issue 13, on 2 cores: captions -> (seconds end to end, peak MiB of the process tree)
TARGETS = {1_000_000: (120, 1536), 10_000_000: (1800, 6144)}
PREFIXES = ["Stock Photo - ", "Stock Image: ", "Royalty Free Stock Photo: ", "stock photo of "]
SUFFIXES = [" - royalty free image", " stock photo", " | Shutterstock", " - Stock Image #4823991"]


#: corpus kinds (--corpus): see perturbed_frame
CORPORA = ("web", "copies")
#: in the web corpus, the share of rows that are near copies of another row
COPY_SHARE = 0.35


def spliced(pool, rows: int, rng):
    """``rows`` new captions, each the first half of one real caption's words followed by
    the second half of another's: distinct texts (pool size squared combinations) that read
    like captions, with the pool's words, lengths and languages."""
    import polars as pl

    w = pl.col("a").str.split(" ")
    v = pl.col("b").str.split(" ")
    df = pl.DataFrame({"a": pool.gather(rng.integers(0, len(pool), rows)),
                       "b": pool.gather(rng.integers(0, len(pool), rows))})
    return df.select(pl.concat_list(w.list.head(w.list.len() // 2 + 1), v.list.slice(v.list.len() // 2))
                     .list.join(" ").alias("caption"))["caption"]


def perturbed_frame(rows: int, seed: int, corpus: str = "web"):
    """``rows`` captions built from the shared data's captions, with near copies.

    ``web`` (default): mostly distinct captions (:func:`spliced`), of which a share
    :data:`COPY_SHARE` of the rows are replaced by a perturbed copy of another row, as on a
    web crawl where most alt-texts are unique and a minority repeat with small changes.
    ``copies``: every row sampled with replacement from the pool and perturbed (few distinct
    bases, so most rows are near copies of many others: the dedup-heavy case).

    Perturbation: 30% lose a random word, 30% have two random words swapped, and
    independently half get a light edit (upper case, punctuation, white space, a stock
    prefix or suffix)."""
    import numpy as np
    import polars as pl

    pool = pl.Series("caption", caption_pool(), dtype=pl.String)
    rng = np.random.default_rng(seed)
    if corpus == "web":
        base = spliced(pool, rows, rng)
        copy = rng.random(rows) < COPY_SHARE
        src = np.where(copy, rng.integers(0, rows, rows), np.arange(rows))
        captions = base.gather(src)
    else:
        copy = np.ones(rows, bool)
        captions = pool.gather(rng.integers(0, len(pool), rows))
    df = pl.DataFrame({
        "caption": captions, "copy": copy,
        "edit": rng.random(rows), "light": rng.integers(0, 10, rows),
        "r1": rng.random(rows), "r2": rng.random(rows),
        "pre": rng.integers(0, len(PREFIXES), rows), "suf": rng.integers(0, len(SUFFIXES), rows),
    })
    w = pl.col("caption").str.split(" ")
    n = w.list.len()
    i = (pl.col("r1") * n).cast(pl.Int64).clip(0, (n - 1).clip(0, None))
    j = (pl.col("r2") * n).cast(pl.Int64).clip(0, (n - 1).clip(0, None))
    lo, hi = pl.min_horizontal(i, j), pl.max_horizontal(i, j)
    swapped = pl.concat_list(
        w.list.head(lo), w.list.get(hi, null_on_oob=True), w.list.slice(lo + 1, (hi - lo - 1).clip(0, None)),
        w.list.get(lo, null_on_oob=True), w.list.slice(hi + 1),
    ).list.drop_nulls().list.join(" ")
    dropped = pl.concat_list(w.list.head(i), w.list.slice(i + 1)).list.join(" ")
    edited = (
        pl.when((pl.col("edit") < 0.3) & (n >= 4)).then(dropped)
        .when((pl.col("edit") < 0.6) & (n >= 2) & (i != j)).then(swapped)
        .otherwise(pl.col("caption"))
    )
    pre = pl.Series(PREFIXES).gather(df["pre"])
    suf = pl.Series(SUFFIXES).gather(df["suf"])
    c, k = pl.col("c"), pl.col("light")
    light = (
        pl.when(k == 0).then(c.str.to_uppercase())
        .when(k == 1).then(c.str.strip_chars_end(".") + "!")
        .when(k == 2).then(c.str.replace(" ", "   ") + " ")
        .when(k == 3).then(pl.lit(pre) + c)
        .when(k == 4).then(c.str.strip_chars_end(".") + pl.lit(suf))
        .otherwise(c)
    )
    out = df.with_columns(edited.alias("c")).select(pl.when("copy").then(light).otherwise("caption").alias("caption"))
    return out


def make_corpus(rows: int, seed: int = SEED, shards: int = 4, corpus: str = "web") -> Path:
    import numpy as np

    folder = OUT / f"dedup-input-{corpus}-{rows}-seed{seed}"
    if (folder / ".complete").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    df = perturbed_frame(rows, seed, corpus)
    bounds = np.linspace(0, rows, shards + 1).astype(int)
    for s in range(shards):
        part = df.slice(int(bounds[s]), int(bounds[s + 1] - bounds[s]))
        tmp = folder / f".tmp-part-{s:03d}.parquet"
        part.write_parquet(tmp, compression="zstd")
        os.replace(tmp, folder / f"part-{s:03d}.parquet")
    (folder / ".complete").write_text(f"{rows} captions, seed {seed}\n")
    return folder


CHAIN = """name = "bench-dedup"
description = "length and specificity only: what the representative order needs"

[[filter]]
name = "length"

[[filter]]
name = "specificity"

[[filter]]
name = "neardup"
"""


def curate_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("curate")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "curate.cli"]


def make_run(folder: Path, rows: int, corpus: str) -> Path:
    run = OUT / f"dedup-run-{corpus}-{rows}"
    if (run / "run.json").exists():
        return run
    shutil.rmtree(run, ignore_errors=True)
    chain = OUT / "bench-dedup-chain.toml"
    chain.write_text(CHAIN)
    t0 = time.perf_counter()
    run_measured(curate_cmd() + ["score", str(folder), "--out", str(run), "--chain", str(chain)],
                 env=dict(os.environ, HF_HUB_OFFLINE="1"))
    print(f"made the run folder with `curate score` in {time.perf_counter() - t0:.1f} s (not part of the timing)")
    return run


def bench_dedup(run: Path, extra: list[str], threads: int, label: str) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads), RAYON_NUM_THREADS=str(threads))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = run_measured(curate_cmd() + ["dedup", str(run)] + extra, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    info = json.loads((run / "dedup" / "dedup.json").read_text())
    rows = info["counts"]["rows"]
    print(f"\n{label}: {rows:,} captions in {m.seconds:.1f} s wall = {rows / m.seconds:,.0f} captions/s "
          f"({cpu:.0f} CPU seconds; load average {os.getloadavg()[0]:.1f})")
    print("  " + m.memory.describe())
    print("  stages (s): " + ", ".join(f"{k} {v}" for k, v in info["timings"].items()))
    print(f"  path: {'out of core' if info['neighbors'].get('out_of_core') else 'in memory'}; "
          f"index: {info['index']['type']}; texts embedded {info['embedding']['embedded']:,}, "
          f"from cache {info['embedding']['cached']:,}; distinct texts {info['counts']['texts']:,}")
    print(f"  groups: {info['counts']['duplicate_rows']:,} rows are duplicates "
          f"({info['counts']['exact']:,} exact, {info['counts']['near']:,} near)")
    return {"seconds": m.seconds, "rows": rows, "mem": m.memory}


def bench_minilm(rows: int, seed: int) -> None:
    """Embedding only: minilm on ``rows`` captions of the benchmark corpus and on as many
    short human captions (COCO), and the static model on 100k captions of the corpus."""
    import polars as pl

    from curate.embed import load_embedder

    mixed = perturbed_frame(rows, seed + 1)["caption"]
    coco = pl.read_parquet(sorted(DATA.glob("a_coco*.parquet"))[0], columns=["caption"])["caption"].head(rows)
    emb = load_embedder("minilm")
    emb.encode(mixed.head(32))
    for name, texts in (("benchmark corpus", mixed), ("COCO captions", coco)):
        t0 = time.perf_counter()
        emb.encode(texts)
        dt = time.perf_counter() - t0
        print(f"minilm, {name} (mean {texts.str.len_chars().mean():.0f} characters): "
              f"{len(texts):,} in {dt:.1f} s = {len(texts) / dt:,.0f} captions/s")
    st = load_embedder("static")
    big = perturbed_frame(100_000, seed + 2)["caption"]
    t1 = time.perf_counter()
    st.encode(big)
    ds = time.perf_counter() - t1
    print(f"static, benchmark corpus: {len(big):,} in {ds:.1f} s = {len(big) / ds:,.0f} captions/s (embedding only)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2, help="threads for torch/FAISS/Polars (the target is 2 cores)")
    ap.add_argument("--minilm-rows", type=int, default=1_000)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--memory", choices=["auto", "in", "out"], default="auto",
                    help="curate dedup --memory: auto (out of core from 200k distinct texts), in, out")
    ap.add_argument("--corpus", choices=CORPORA, default="web",
                    help="web: mostly distinct captions, 35%% near copies (default); copies: every row a "
                         "perturbed copy of a caption of the shared data (few distinct bases)")
    ap.add_argument("--prepare", action="store_true", help="only build the corpus and its run folder")
    ap.add_argument("--no-minilm", action="store_true", help="skip the MiniLM embedding timing")
    args = ap.parse_args()
    os.environ.setdefault("POLARS_MAX_THREADS", str(args.threads))
    print(f"machine: {cores()}; load average {os.getloadavg()[0]:.1f}; threads {args.threads}; "
          f"corpus {args.corpus}")
    folder = make_corpus(args.rows, args.seed, corpus=args.corpus)
    run = make_run(folder, args.rows, args.corpus)
    if args.prepare:
        return
    shutil.rmtree(run / "dedup", ignore_errors=True)
    mem = ["--memory", args.memory]
    cold = bench_dedup(run, ["--embedder", "static"] + mem, args.threads, "cold (embed + index + neighbours + groups)")
    bench_dedup(run, ["--embedder", "static", "--threshold", "0.85"] + mem, args.threads,
                "warm, new threshold (embeddings and neighbour table reused)")
    if args.rows in TARGETS:
        t_s, t_m = TARGETS[args.rows]
        ok_t = cold["seconds"] <= t_s
        ok_m = cold["mem"].peak_rss_sum_kib / 1024 <= t_m
        print(f"\ntarget: {args.rows:,} captions in <= {t_s} s ({'met' if ok_t else 'NOT met'}), "
              f"peak memory of the process tree <= {t_m} MiB ({'met' if ok_m else 'NOT met'}); "
              f"load average now {os.getloadavg()[0]:.1f}")
    else:
        print(f"\n(targets exist for {', '.join(f'{n:,}' for n in TARGETS)} captions)")
    if not args.no_minilm:
        bench_minilm(args.minilm_rows, args.seed)


if __name__ == "__main__":
    main()
