"""Mixture benchmark: `curate mix` over N scored rows from 3 sources, and `curate explain`.

Builds synthetic scored runs under bench-out/ (git-ignored) by replicating real scored
rows: the three real sources of ../shared/data (web alt-text c_*, human captions a_*, long
captions d_*) are scored once with the default chain, then each run's rows are repeated to
N/3 rows with new sample ids (SplitMix64 of the original id and the copy number), shifted
row numbers and suffixed group_id / image_id, so caps have as many groups as a real corpus
of that size. Parts hold 100,000 rows and are written with curate's own Parquet writer, as
`curate score` writes them.

Then it runs, each as a fresh process (as a user would), with DuckDB limited to --threads:

* `curate mix` with shares and a quality tilt (no caps), and again with "the best caption
  per image" (group_by = "group_id"), printing rows/s, wall and CPU seconds, peak memory;
* `curate explain SAMPLE --mix MIX` for a selected sample and for one that was not
  selected (the latter looks the sample up in the runs' 10M rows), printing the latency
  of the lookup inside the process and of the whole command.

With ``--scale`` it measures instead a realistic recipe at a given size under DuckDB's
memory limit: three synthetic runs made by benchmarks/synth_run.py (``web``: ``--rows`` rows
or ``--web RUN``; ``human``: a tenth; ``long``: a fiftieth), shares 0.8 / 0.1 / 0.1 with an
eligibility condition per source, a quality tilt, at most two captions per image across the
mixture and repeats for the small source, a mixture of a tenth of the rows. For each
``--memory-limit`` (default 2GB and 4GB) `curate mix` runs as a fresh process: wall and CPU
seconds, peak RSS of the process tree, the peak size of DuckDB's spill folder (sampled every
0.25 s) and the manifest rows. ``--s3`` repeats it with the runs committed to a local S3
server (moto) and the mixture written there.

Wall time depends on what else runs on the machine: the load average before each command
is printed with it. CPU seconds do not.

    python benchmarks/bench_mix.py                    # 10M rows, 2 threads
    python benchmarks/bench_mix.py --rows 1000000     # quicker
    python benchmarks/bench_mix.py --bloom            # parts with a sample_id Bloom filter
    python benchmarks/bench_mix.py --scale --rows 10000000 --s3
    python benchmarks/bench_mix.py --scale --rows 100000000 --web RUN-100M --memory-limit 2GB
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, OUT, ROOT, cores, loadavg, run_measured  # noqa: E402

SOURCES = {"web": "c_", "human": "a_", "long": "d_"}
PART_ROWS = 100_000
TARGET_S = 20.0
QUALITY = "ln(1 + score__specificity) * (1 - score__junk) * (1 - score__repetition)"


def curate_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("curate")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "curate.cli"]


def seed_runs() -> dict[str, Path]:
    """The three real sources, scored once with the default chain (reused afterwards)."""
    from curate.scoring.chain import load_chain
    from curate.scoring.runner import ScoreOptions, score

    out = {}
    for name, prefix in SOURCES.items():
        run = OUT / "mix-seed-runs" / name
        if not (run / "run.json").exists():
            files = sorted(str(p) for p in DATA.glob(f"{prefix}*.parquet"))
            if not files:
                sys.exit(f"no {prefix}*.parquet in {DATA}")
            print(f"scoring {len(files)} real file(s) for {name} ...", flush=True)
            score(files, run, load_chain(None), ScoreOptions(carry=("group_id",), overwrite=True))
        out[name] = run
    return out


def replicate(seed: Path, out: Path, rows: int, salt: int, bloom: bool) -> None:
    """Write ``rows`` scored rows to ``out`` by repeating ``seed``'s rows (vectorised per part)."""
    import polars as pl
    import pyarrow.parquet as pq

    from curate.atomic import atomic_path
    from curate.hashing import splitmix64

    done = out / "run.json"
    if done.exists() and json.loads(done.read_text()).get("rows") == rows:
        return
    shutil.rmtree(out, ignore_errors=True)
    (out / "scores").mkdir(parents=True)
    src = pl.read_parquet(seed / "scores" / "part-*.parquet")
    n = src.height
    for p in range((rows + PART_ROWS - 1) // PART_ROWS):
        idx = np.arange(p * PART_ROWS, min(rows, (p + 1) * PART_ROWS), dtype=np.int64)
        base, copy = idx % n, idx // n
        df = src[base]
        mixed = copy.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)
        sid = splitmix64(df["sample_id"].to_numpy() ^ mixed)
        tag = "#" + pl.Series(copy).cast(pl.String)
        df = df.with_columns(
            pl.Series("sample_id", sid, pl.UInt64),
            (pl.col("row") + pl.Series(copy * n)).alias("row"),
            *[(pl.col(c) + tag).alias(c) for c in ("group_id", "image_id") if c in df.columns],
        )
        table = df.to_arrow()
        opts = {"bloom_filter_options": {"sample_id": {"ndv": table.num_rows, "fpp": 0.01}}} if bloom else {}
        with atomic_path(out / "scores" / f"part-00000-{p:05d}.parquet") as tmp:
            pq.write_table(table, tmp, compression="zstd", **opts)
    info = json.loads((seed / "run.json").read_text())
    info.update(rows=rows, synthetic=f"{seed} repeated to {rows} rows (benchmarks/bench_mix.py)")
    done.write_text(json.dumps(info))


def synthetic_runs(seeds: dict[str, Path], base: Path, rows: int, bloom: bool = False) -> dict[str, Path]:
    """``rows`` scored rows split over the seed runs, under ``base/runs`` (reused when present)."""
    runs = {}
    for i, (name, seed) in enumerate(seeds.items()):
        n = rows // len(seeds) + (1 if i < rows % len(seeds) else 0)
        runs[name] = base / "runs" / name
        replicate(seed, runs[name], n, salt=i + 1, bloom=bloom)
    return runs


def write_recipe(path: Path, runs: dict[str, Path], size: int, caps: bool) -> Path:
    lines = [f"name = {json.dumps(path.stem)}", f"size = {size}", "seed = 7",
             f"quality = {json.dumps(QUALITY)}", "alpha = 1.0"]
    if caps:
        lines += ["[caps]", 'group_by = "group_id"', "per_group = 1"]
    for name, share in zip(runs, (0.5, 0.3, 0.2)):
        lines += ["[[source]]", f"name = {json.dumps(name)}", f"run = {json.dumps(str(runs[name]))}",
                  f"share = {share}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def bench_mix(recipe: Path, out: Path, rows: int, threads: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    m = run_measured(curate_cmd() + ["mix", str(recipe), "--out", str(out), "--threads", str(threads)])
    info = json.loads((out / "manifest.json").read_text())
    print(f"  {recipe.stem}: {rows:,} scored rows -> {info['counts']['rows']:,} in {m.seconds:.1f} s wall "
          f"({rows / m.seconds:,.0f} rows/s), {m.cpu_seconds:.1f} CPU s; load before {m.load_before}")
    print(f"    in-process timings {info['timings']}")
    print(f"    {m.memory.describe()}")
    return {"wall_s": m.seconds, "cpu_s": m.cpu_seconds, "timings": info["timings"],
            "peak_rss_mib": m.memory.peak_rss_sum_kib / 1024, "load_before": m.load_before}


def bench_explain(mix: Path, runs: dict[str, Path]) -> dict:
    import duckdb

    from curate.audit.explain import explain

    con = duckdb.connect()
    man = str(mix / "manifest.parquet")
    picked = con.execute(
        f"SELECT sample_id FROM read_parquet('{man}') ORDER BY sample_key LIMIT 1 OFFSET 1000").fetchall()[0][0]
    glob = str(runs["long"] / "scores" / "part-*.parquet")
    missing = con.execute(
        f"SELECT sample_id FROM read_parquet('{glob}') WHERE keep AND sample_id > 9223372036854775807 "
        f"AND sample_id NOT IN (SELECT sample_id FROM read_parquet('{man}')) ORDER BY sample_id LIMIT 1"
    ).fetchall()[0][0]  # a mid-range id: row-group statistics cannot skip parts for it
    con.close()
    out = {}
    # "not selected": the long source is looked up last, so all N rows of the runs are searched
    for label, sid in (("selected", picked), ("not selected", missing)):
        explain(sid, mix=mix)  # warm the file cache
        t = []
        for _ in range(3):
            t0 = time.perf_counter()
            e = explain(sid, mix=mix)
            t.append(time.perf_counter() - t0)
        m = run_measured(curate_cmd() + ["explain", str(sid), "--mix", str(mix)])
        why = "selected" if e["mix"]["selected"] else e["mix"]["why"].split(":")[0]
        print(f"  explain ({label}: {why}): {min(t) * 1000:.0f} ms in process (best of 3), "
              f"{m.seconds * 1000:.0f} ms as a command (with Python start-up); load {m.load_before}")
        out[label] = {"in_process_ms": min(t) * 1000, "command_ms": m.seconds * 1000}
    return out


# -- at scale: a realistic recipe under --memory-limit, spill measured ----------------------


def spill_bytes(folder: Path, prefix: str = "") -> int:
    """Bytes on disk (allocated blocks) of every DuckDB temporary folder below the entries
    of ``folder`` whose names start with ``prefix`` (one mixture's staging folder)."""
    from curate.layout import DUCKDB_TMP

    total = 0
    try:
        tops = [e.path for e in os.scandir(folder) if e.name.startswith(prefix) and e.is_dir()]
    except OSError:
        return 0
    for root, dirs, files in (w for top in tops for w in os.walk(top)):
        if Path(root).name == DUCKDB_TMP:
            for f in files:
                try:
                    total += os.stat(os.path.join(root, f)).st_blocks * 512
                except OSError:
                    pass
    return total


class SpillSampler:
    """The peak of :func:`spill_bytes` over the folders given, sampled every ``interval`` s."""

    def __init__(self, folders: list[tuple[Path, str]], interval: float = 0.25):
        import threading

        self.folders, self.interval, self.peak = folders, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(spill_bytes(f, prefix) for f, prefix in self.folders))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def scale_runs(given: dict[str, Path | None], rows: int, base: Path) -> dict[str, Path]:
    """Three synthetic runs (benchmarks/synth_run.py): ``web`` (``rows`` rows), ``human``
    (rows/10) and ``long`` (rows/50), each from input files of its own, so their sample ids
    and images differ; a run in ``given`` is taken as it is, the others are made once."""
    from synth_run import generate

    runs = {}
    for name, n in (("web", rows), ("human", rows // 10), ("long", rows // 50)):
        if given.get(name) is not None:
            runs[name] = Path(os.path.abspath(given[name]))
            continue
        runs[name] = base / f"{name}-{n}"
        if not (runs[name] / "run.json").exists():
            print(f"generating the {name} run ({n:,} rows) ...", flush=True)
            generate(runs[name], n, max(1, n // 1_000_000), PART_ROWS, 7, None, None, 0.0, 2, True)
    return runs


def scale_recipe(path: Path, runs: dict[str, str], size: int) -> Path:
    """Shares 0.8 / 0.1 / 0.1, a quality tilt, per-source eligibility, at most two captions
    per image across the mixture, and repeats for the small source of long captions."""
    per = {"web": ("0.8", "keep AND score__junk < 0.3", 1),
           "human": ("0.1", "keep AND lang = 'en'", 1),
           "long": ("0.1", "keep AND score__length >= 12", 4)}
    lines = [f"name = {json.dumps(path.stem)}", f"size = {size}", "seed = 7", 'eligible = "keep"',
             f"quality = {json.dumps(QUALITY)}", "alpha = 1.0",
             "[caps]", 'group_by = "group_id"', "per_group = 2"]
    for name, run in runs.items():
        share, eligible, repeat = per[name]
        lines += ["[[source]]", f"name = {json.dumps(name)}", f"run = {json.dumps(run)}", f"share = {share}",
                  f"eligible = {json.dumps(eligible)}", f"repeat = {repeat}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def scale_mix(recipe: Path, out: str, rows: int, memory: str, threads: int, spill_in: list[tuple[Path, str]],
              env: dict | None = None) -> dict:
    """`curate mix` as a fresh process under ``--memory-limit memory``: wall, CPU, peak RSS
    of the tree, peak DuckDB spill, manifest rows."""
    from curate.mix.manifest import load_mixture

    with SpillSampler(spill_in) as spill:
        m = run_measured(curate_cmd() + ["mix", str(recipe), "--out", out, "--threads", str(threads),
                                         "--memory-limit", memory, "--overwrite"], env=env)
    info = load_mixture(out)
    res = {"rows": rows, "memory_limit": memory, "wall_s": round(m.seconds, 1), "cpu_s": round(m.cpu_seconds, 1),
           "peak_rss_mib": round(m.memory.peak_rss_sum_kib / 1024), "spill_peak_mib": round(spill.peak / 2**20),
           "manifest_rows": info["counts"]["rows"], "samples": info["counts"]["samples"],
           "timings": info["timings"], "load_before": m.load_before, "load_after": loadavg(), "cores": cores()}
    print(f"  {rows:,} scored rows, --memory-limit {memory}: {res['manifest_rows']:,} rows in {m.seconds:.1f} s wall, "
          f"{m.cpu_seconds:.1f} CPU s; peak RSS of the tree {res['peak_rss_mib']:,} MiB; DuckDB spill peak "
          f"{res['spill_peak_mib']:,} MiB; load before {m.load_before}, after {res['load_after']}")
    print(f"    in-process timings {info['timings']}", flush=True)
    return res


def scale_main(args) -> None:
    """--scale: the realistic recipe over ``--rows`` scored rows (or ``--web RUN``) under each
    ``--memory-limit``; with ``--s3``, from runs on a local S3 server as well."""
    base = OUT / "mix-scale"
    base.mkdir(parents=True, exist_ok=True)
    runs = scale_runs({"web": args.web, "human": args.human, "long": args.long}, args.rows, base)
    rows = sum(json.loads((r / "run.json").read_text())["rows"] for r in runs.values())
    size = args.size or rows // 10
    print(f"curate mix at scale: {rows:,} scored rows in 3 runs, mixture of {size:,}; {cores()}; load {loadavg()}")
    tag = f"{rows}"
    recipe = scale_recipe(base / f"scale-{tag}.toml", {k: str(v) for k, v in runs.items()}, size)
    results = []
    for memory in [] if args.s3_only else args.memory_limit or ["2GB", "4GB"]:
        out = base / f"mix-{tag}-{memory}"
        spill = [(base, f".{out.name}.staging-")]  # this mixture's staging folder only
        results.append({"where": "local", **scale_mix(recipe, str(out), rows, memory, args.threads, spill)})
    if args.s3 or args.s3_only:
        results += scale_s3(runs, rows, size, base, args)
    path = base / f"results-{tag}{'-s3' if args.s3 or args.s3_only else ''}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


def scale_s3(runs: dict[str, Path], rows: int, size: int, base: Path, args) -> list[dict]:
    """The same recipe over the same runs committed to a local S3 server (moto), the
    mixture written there too; DuckDB spills into the local working folder."""
    from bench_store_write import start_store, write_to_store

    cache = base / f"s3-cache-{rows}-{os.getpid()}"
    os.environ["CURATE_CACHE"] = str(cache)
    endpoint = start_store()
    store = {}
    for name, run in runs.items():
        store[name] = f"s3://bench/scale/{name}"
        t = write_to_store(run, store[name])
        print(f"  committed {name} to {store[name]} in {t:.1f} s ({endpoint})", flush=True)
    recipe = scale_recipe(base / f"scale-{rows}-s3.toml", store, size)
    out = []
    for memory in args.memory_limit or ["2GB", "4GB"]:
        out.append({"where": "s3", **scale_mix(recipe, f"s3://bench/mixes/scale-{memory}", rows, memory,
                                               args.threads, [(cache, "")], env=dict(os.environ))})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000, help="scored rows over the 3 sources")
    ap.add_argument("--size", type=int, default=1_000_000, help="rows in the mixture")
    ap.add_argument("--threads", type=int, default=2, help="DuckDB threads (the target is for 2 cores)")
    ap.add_argument("--bloom", action="store_true", help="write the parts with a Bloom filter on sample_id")
    ap.add_argument("--skip-caps", action="store_true", help="only the mixture without caps")
    ap.add_argument("--scale", action="store_true",
                    help="the realistic recipe (3 runs, caps, repeats) under --memory-limit, with spill")
    ap.add_argument("--web", type=Path, help="with --scale: the run of the main source (e.g. a 100M-row run)")
    ap.add_argument("--human", type=Path, help="with --scale: the run of the second source (default: made, rows/10)")
    ap.add_argument("--long", type=Path, help="with --scale: the run of the third source (default: made, rows/50)")
    ap.add_argument("--memory-limit", action="append", help="with --scale: curate mix --memory-limit (repeatable)")
    ap.add_argument("--s3", action="store_true", help="with --scale: also from runs on a local S3 server (moto)")
    ap.add_argument("--s3-only", action="store_true", help="with --scale: only from runs on the local S3 server")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.scale:
        if args.size == ap.get_default("size"):
            args.size = None  # a tenth of the scored rows
        return scale_main(args)
    print(f"curate mix benchmark: {args.rows:,} scored rows, mixture of {args.size:,}, "
          f"{args.threads} DuckDB threads; {cores()}; load {loadavg()}")
    seeds = seed_runs()
    tag = f"{args.rows}" + ("-bloom" if args.bloom else "")
    base = OUT / f"mix-{tag}"
    t0 = time.perf_counter()
    runs = synthetic_runs(seeds, base, args.rows, args.bloom)
    print(f"synthetic runs ready in {time.perf_counter() - t0:.1f} s under {base / 'runs'}")
    results = {"rows": args.rows, "size": args.size, "threads": args.threads, "cores": cores(), "bloom": args.bloom}
    results["mix"] = bench_mix(write_recipe(base / "shares.toml", runs, args.size, caps=False),
                               base / "mix-shares", args.rows, args.threads)
    if not args.skip_caps:
        results["mix_caps"] = bench_mix(write_recipe(base / "best-per-image.toml", runs, args.size, caps=True),
                                        base / "mix-caps", args.rows, args.threads)
    results["explain"] = bench_explain(base / "mix-shares", runs)
    verdict = "meets" if results["mix"]["wall_s"] <= TARGET_S else "misses"
    print(f"target: a mixture over {args.rows:,} rows in <= {TARGET_S:.0f} s on 2 cores: {verdict} it "
          f"({results['mix']['wall_s']:.1f} s wall, {results['mix']['cpu_s']:.1f} CPU s)")
    (base / "results.json").write_text(json.dumps(results, indent=2))
    print(f"wrote {base / 'results.json'}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
