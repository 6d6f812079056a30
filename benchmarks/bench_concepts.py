"""Balanced-mixture benchmark: `curate concepts` and a `[balance] per_concept` mixture on N rows.

Uses the synthetic scored runs of bench_mix.py (the three real sources of ../shared/data,
scored once, their rows repeated to N/3 each with new sample ids; under bench-out/,
git-ignored). Then, each as a fresh process:

* `curate concepts RUNS...` with the default vocabulary (built from the runs: one pass to
  count words and word pairs, one to match), and again with that vocabulary given as a
  file (matching alone): captions/s over the command's wall clock, CPU seconds, peak memory,
  and the matching rate that concepts.json records;
* `curate mix` of the same recipe without and with ``[balance] per_concept = T`` (and a
  length mix and an opening cap), DuckDB limited to --threads;
* in this process: matching (`curate.mix.concepts.annotate`) of short captions
  (a_*, c_*: human captions and web alt-text) and of long descriptions (d_*, about 130
  words) separately, in captions per CPU-second: the corpus above is one third long
  descriptions, which hold most of its text and most of its matches.

Wall time depends on what else runs on the machine: the load average before each command is
printed with it.

    python benchmarks/bench_concepts.py                   # 1M rows, 2 threads
    python benchmarks/bench_concepts.py --rows 10000000
    python benchmarks/bench_concepts.py --rows 10000000 --steps mix   # the mixtures alone (concepts made)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_mix import curate_cmd, seed_runs, synthetic_runs  # noqa: E402
from common import OUT, ROOT, cores, loadavg, run_measured  # noqa: E402

QUALITY = "ln(1 + score__specificity) * (1 - score__junk)"
#: captions/s the matching must reach on 2 cores
TARGET = 100_000


def concepts_pass(runs: dict[str, Path], rows: int, vocabulary: Path | None) -> dict:
    cmd = curate_cmd() + ["concepts", *map(str, runs.values())]
    if vocabulary is not None:
        cmd += ["--vocabulary", str(vocabulary)]
    m = run_measured(cmd)
    if m.returncode != 0:
        sys.exit(f"curate concepts failed (exit {m.returncode}); run it to see why: {' '.join(cmd)}")
    infos = [json.loads((r / "concepts" / "concepts.json").read_text()) for r in runs.values()]
    match_s = sum(i["timings"]["match_s"] for i in infos)
    label = "given vocabulary (matching only)" if vocabulary else "default vocabulary (built, then matched)"
    entries = sum(infos[0]["vocabulary_source"]["entries"].values())
    print(f"  concepts, {label}: {rows:,} captions, {entries:,} entries in {m.seconds:.1f} s wall "
          f"({rows / m.seconds:,.0f} captions/s), {m.cpu_seconds:.1f} CPU s; load before {m.load_before}")
    print(f"    vocabulary {infos[0]['timings']['vocabulary_s']:.1f} s; matching {match_s:.1f} s "
          f"({rows / match_s:,.0f} captions/s in process)")
    print(f"    {m.memory.describe()}")
    return {"wall_s": m.seconds, "cpu_s": m.cpu_seconds, "match_s": match_s, "entries": entries,
            "vocabulary_s": infos[0]["timings"]["vocabulary_s"], "captions_per_s": rows / m.seconds,
            "match_captions_per_s": rows / match_s, "peak_rss_mib": m.memory.peak_rss_sum_kib / 1024,
            "load_before": m.load_before}


def per_kind(vocabulary: Path, rows: int = 200_000) -> dict:
    """Matching (`annotate`) of short captions and of long ones apart, as `curate concepts`
    runs it: batches of BATCH rows, WORKERS of them at once in threads. Captions per second
    of wall clock and per CPU-second (all threads counted), and this process's peak memory
    while it matches (RSS, polled)."""
    import os
    import threading

    import polars as pl

    from common import DATA, TreeMemory

    from curate.mix.concepts import BATCH, annotate
    from curate.mix.vocabulary import WORKERS, in_order, load_vocabulary
    from curate.mix.wordmatch import keep_freed_memory

    vocab = load_vocabulary(vocabulary)
    keep_freed_memory()  # as `curate concepts` does
    out = {}
    for kind, prefix in (("short (a_*, c_*)", "[ac]_"), ("long (d_*)", "d_")):
        files = sorted(DATA.glob(f"{prefix}*.parquet"))
        df = pl.concat([pl.read_parquet(f, columns=["caption"]) for f in files])
        # matched as English (the vocabulary's lists are per language; these files are English)
        df = df.sample(rows, with_replacement=True, seed=1).select(pl.col("caption").alias("t"), pl.lit("en").alias("lang"))
        batches = [df.slice(i, BATCH) for i in range(0, rows, BATCH)]
        annotate(batches[0].head(10), vocab)  # the list's index is built once per command
        mem = TreeMemory()
        poller = threading.Thread(target=mem.poll, args=(os.getpid(), 0.05), daemon=True)
        load = loadavg()
        poller.start()
        c0, w0 = time.process_time(), time.perf_counter()
        got = pl.concat(list(in_order(lambda b: annotate(b, vocab), batches)))
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        mem._stop.set()
        poller.join()
        words = df["t"].str.split(" ").list.len().mean()
        print(f"  matching {kind}: {rows:,} captions ({words:.0f} words on average, "
              f"{got['concepts'].list.len().mean():.1f} entries matched), {WORKERS} threads over batches of "
              f"{BATCH:,}: {wall:.2f} s wall, {cpu:.2f} CPU s: {rows / wall:,.0f} captions/s wall, "
              f"{rows / cpu:,.0f} captions per CPU-second; {cores()}, load before {load}; "
              f"peak RSS of this process {mem.peak_rss_sum_kib / 1024:,.0f} MiB")
        out[kind] = {"captions_per_s": rows / wall, "captions_per_cpu_s": rows / cpu, "wall_s": wall, "cpu_s": cpu,
                     "mean_words": words, "peak_rss_mib": mem.peak_rss_sum_kib / 1024, "load_before": load}
    return out


def write_recipe(path: Path, runs: dict[str, Path], size: int, balance: dict | None) -> Path:
    lines = [f"size = {size}", "seed = 7", f"quality = {json.dumps(QUALITY)}"]
    for name, share in zip(runs, (0.5, 0.3, 0.2)):
        lines += ["[[source]]", f"name = {json.dumps(name)}", f"run = {json.dumps(str(runs[name]))}",
                  f"share = {share}"]
    if balance:
        lines += ["[balance]"] + [f"{k} = {v}" for k, v in balance.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def entry_counts(mix: Path, runs: dict[str, Path], memory: str) -> list[tuple[str, int, int]]:
    """(entry, rows of the mixture holding it, rows of all the runs holding it), the mixture's
    rows joined with the runs' concepts in DuckDB (a plain mixture's manifest has no concepts)."""
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory}'")
    parts = " UNION ALL ".join(
        f"SELECT sample_id, source, \"row\", concepts FROM read_parquet('{r / 'concepts' / 'concepts.parquet'}')"
        for r in runs.values())
    sql = (f"WITH c AS ({parts}), m AS (SELECT DISTINCT sample_id, source, \"row\" FROM "
           f"read_parquet('{mix / 'manifest.parquet'}')), e AS (SELECT unnest(c.concepts) AS e FROM m JOIN c "
           "USING (sample_id, source, \"row\")), me AS (SELECT e, count(*) AS n FROM e GROUP BY e), "
           "pe AS (SELECT e, count(*) AS n FROM (SELECT unnest(concepts) AS e FROM c) GROUP BY e) "
           "SELECT me.e, me.n, pe.n FROM me JOIN pe USING (e) ORDER BY me.n DESC, me.e")
    return [(e, int(n), int(p)) for e, n, p in con.execute(sql).fetchall()]


def commonest(mix: Path, runs: dict[str, Path], memory: str, per_concept: int) -> dict:
    """The mixture's commonest entry, entries covered, and the tail share: the share of its
    (row, entry) matches on entries that fewer than T rows of the runs hold (MetaCLIP's t_to_p)."""
    got = entry_counts(mix, runs, memory)
    matches = sum(n for _, n, _ in got)
    tail = sum(n for _, n, p in got if p < per_concept)
    return {"commonest": got[0][0], "rows": got[0][1], "entries_covered": len(got),
            "tail_share": tail / matches if matches else 0.0}


def validate(base: Path, runs: dict[str, Path], per_concept: int, cap: int, memory: str) -> dict:
    """The balanced mixture against the plain one (the same recipe without [balance])."""
    import polars as pl

    res = {name: commonest(base / f"mix-{name}", runs, memory, per_concept) for name in ("plain", "balanced")}
    for name, got in res.items():
        print(f"  mix {name}: commonest entry {got['commonest']!r} in {got['rows']:,} rows; "
              f"{got['entries_covered']:,} entries covered; tail share {got['tail_share']:.4f} "
              f"(matches on entries held by fewer than T = {per_concept:,} rows of the runs)")
    bal = pl.read_parquet(base / "mix-balanced" / "manifest.parquet",
                          columns=["sample_id", "source", "row", "opening", "concept_drawn_by"]).unique(
                              ["sample_id", "source", "row"])
    draws = bal.group_by("concept_drawn_by").len().sort("len", descending=True)
    model = bal.filter(pl.col("source").str.contains("mllm")).group_by("opening").len().sort("len", descending=True)
    p, b = res["plain"], res["balanced"]
    checks = {
        "most rows one entry drew": (int(draws["len"][0]), draws["len"][0] <= per_concept),
        "commonest entry, balanced / plain": (round(b["rows"] / p["rows"], 4), b["rows"] <= p["rows"] / 2),
        "entries covered, balanced - plain": (b["entries_covered"] - p["entries_covered"],
                                              b["entries_covered"] >= p["entries_covered"]),
        "tail share, balanced - plain": (round(b["tail_share"] - p["tail_share"], 4), b["tail_share"] > p["tail_share"]),
        "commonest opening of model captions (rows)": (int(model["len"][0]) if model.height else 0,
                                                       (model["len"][0] if model.height else 0) < cap),
    }
    for what, (value, ok) in checks.items():
        print(f"    validation: {what}: {value:,} -> {'holds' if ok else 'does not hold'}")
    return {**res, "checks": {k: {"value": v, "holds": bool(ok)} for k, (v, ok) in checks.items()},
            "drawn_by": draws.head(5).rows(), "model_openings": model.head(5).rows()}


def mix_pass(recipe: Path, out: Path, rows: int, threads: int, memory: str) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    m = run_measured(curate_cmd() + ["mix", str(recipe), "--out", str(out), "--threads", str(threads),
                                     "--memory-limit", memory])
    if m.returncode != 0:
        sys.exit(f"curate mix failed (exit {m.returncode}); run `curate mix {recipe} --out {out}` to see why")
    info = json.loads((out / "manifest.json").read_text())
    print(f"  mix {recipe.stem}: {rows:,} scored rows -> {info['counts']['rows']:,} in {m.seconds:.1f} s wall "
          f"({rows / m.seconds:,.0f} rows/s), {m.cpu_seconds:.1f} CPU s; load before {m.load_before}")
    print(f"    {m.memory.describe()}")
    bal = info["counts"].get("balance", {}).get("concepts")
    if bal:
        print(f"    commonest entries: {bal['commonest'][:5]}; entries covered {bal['entries_covered']:,}")
    return {"wall_s": m.seconds, "cpu_s": m.cpu_seconds, "peak_rss_mib": m.memory.peak_rss_sum_kib / 1024,
            "load_before": m.load_before, "timings": info["timings"], "balance": info["counts"].get("balance")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="scored rows over the 3 sources")
    ap.add_argument("--size", type=int, default=None, help="rows in the mixture (default: rows / 10)")
    ap.add_argument("--per-concept", type=int, default=20_000, help="T of [balance] per_concept (MetaCLIP: 20,000)")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads")
    ap.add_argument("--steps", default="default,file,kinds,mix",
                    help="which parts to run, comma-separated: default (concepts with the default vocabulary), file "
                         "(concepts with that vocabulary given), kinds (short and long captions apart), mix")
    ap.add_argument("--concepts-only", action="store_true",
                    help="the balanced recipe without its length mix (per_concept and the opening cap only)")
    ap.add_argument("--memory-limit", default="6GB", help="memory a mixture's query may use (curate mix --memory-limit)")
    args = ap.parse_args()
    args.steps = set(args.steps.split(","))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    size = args.size or args.rows // 10
    print(f"balanced-mixture benchmark: {args.rows:,} scored rows, mixture of {size:,}, per_concept "
          f"{args.per_concept:,}, {args.threads} DuckDB threads; {cores()}; load {loadavg()}")
    seeds = seed_runs()
    base = OUT / f"concepts-{args.rows}"
    runs = synthetic_runs(seeds, base, args.rows)
    results = {"rows": args.rows, "size": size, "per_concept": args.per_concept, "cores": cores()}
    vocab = base / "vocabulary.json"
    if "default" in args.steps:
        results["concepts_default"] = concepts_pass(runs, args.rows, None)
        shutil.copyfile(runs["web"] / "concepts" / "concepts.json", vocab)
    if "file" in args.steps:
        results["concepts_file"] = concepts_pass(runs, args.rows, vocab)
        rate = results["concepts_file"]["match_captions_per_s"]
        print(f"target: matching >= {TARGET:,} captions/s on 2 cores: {'meets' if rate >= TARGET else 'misses'} it "
              f"on this corpus ({rate:,.0f} captions/s wall in process, "
              f"{args.rows / results['concepts_file']['cpu_s']:,.0f} captions per CPU-second of the command)")
    if "kinds" in args.steps:
        results["per_kind"] = per_kind(vocab)
    if "mix" in args.steps:
        results["mix_plain"] = mix_pass(write_recipe(base / "plain.toml", runs, size, None), base / "mix-plain",
                                        args.rows, args.threads, args.memory_limit)
        balance = {"per_concept": args.per_concept, "max_per_opening": max(1, size // 100),
                   "length_mix": '{ "0-12" = 0.4, "13-" = 0.6 }'}
        if args.concepts_only:
            balance = {"per_concept": args.per_concept, "max_per_opening": balance["max_per_opening"]}
        results["mix_balanced"] = mix_pass(write_recipe(base / f"balanced-t{args.per_concept}.toml", runs, size, balance),
                                           base / "mix-balanced", args.rows, args.threads, args.memory_limit)
        results["validation"] = validate(base, runs, args.per_concept, balance["max_per_opening"],
                                         args.memory_limit)
    name = f"results-{'-'.join(sorted(args.steps))}-t{args.per_concept}{'-concepts' if args.concepts_only else ''}.json"
    (base / name).write_text(json.dumps(results, indent=2))
    print(f"wrote {base / name}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - t0:.0f} s")
