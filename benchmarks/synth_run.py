"""A synthetic scored run of N rows that curate takes for a real one, made from real scored rows.

Real captions of ../shared/data (a_*, b_*, c_*, d_*: human, multilingual, web alt-text and
long captions) are scored once with the default chain (``--carry group_id``; cached under
bench-out/synth-seed). The synthetic run has ``--files`` input files of equal size; global
row ``i`` copies seed row ``perm_k(i mod n)`` of copy ``k = i // n`` (n seed rows; each copy
visits every seed row once, in an order of its own), so the run has the seed's distribution of
scores, reasons and languages, and its caption groups: ``group_id``, ``image_id`` and ``url``
get ``#k@T`` (T: a hash of the inputs' folder), so copy k of an image is an image of its own,
in this run alone, and caps see as many groups as a real corpus of that size. Every row gets the ``sample_id``, ``source`` and ``row`` that `curate
score` gives row ``row`` of that input file.

The run folder is written as `curate score` writes it (file names from curate.layout; a
version under ``.v/`` behind ``.current``; parts ``part-FFFFF-BBBBB.parquet`` of ``--batch-rows``
rows, one row group, zstd, the score schema; ``run.json`` with inputs, chain, counts).
With ``--inputs`` the input Parquet files (caption, group_id, image_id, url; row groups of
``--batch-rows``) are written too (to ``OUT-inputs`` or the folder given) and their
fingerprints recorded as `curate score` records them, so `curate verify` and `curate explain`
read them back. With ``--like RUN --vary F`` the run has RUN's inputs and rows, and a share
F of its rows (chosen by a hash of sample_id) takes the scores, lang, keep and reason of
another seed row: a rescored run for `curate diff`.

Generation streams part by part in ``--workers`` processes (memory: the seed plus one part
per worker). Everything is written under temporary names beside OUT and renamed at the end.

    python benchmarks/synth_run.py --rows 1000000 --out bench-out/synth-1m --inputs
    python benchmarks/synth_run.py --rows 100000000 --out /work/bench100m/run-100m --inputs
    python benchmarks/synth_run.py --like /work/bench100m/run-100m --vary 0.01 --out /work/bench100m/run-100m-b
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import DATA, OUT, cores, loadavg  # noqa: E402

SEED_PREFIXES = ("a_", "b_", "c_", "d_")
CARRY = ("group_id",)
#: input columns written besides the caption (those the seed run carries)
INPUT_COLUMNS = ("group_id", "image_id", "url")
#: columns a rescored row (--vary) takes from another seed row
RESCORED = ("lang", "score__", "junk_kind", "reason", "keep")
#: with --vary F, rescored rows are in a share F * this of the parts (the others are hard
#: links to the --like run's parts, so the second run costs little disk)
TOUCHED_PER_VARIED = 10
#: odd multiplier of the per-copy order (an affine permutation of the seed rows)
STRIDE = 0x9E3779B1


def seed_run() -> Path:
    """The real captions scored with the default chain (scored once, then reused)."""
    from curate.layout import RUN_JSON
    from curate.scoring.chain import load_chain
    from curate.scoring.runner import ScoreOptions, score

    run = OUT / "synth-seed" / "run"
    files = sorted(str(p) for pre in SEED_PREFIXES for p in DATA.glob(f"{pre}*.parquet"))
    if not files:
        sys.exit(f"no a_/b_/c_/d_ Parquet files in {DATA} (set CURATE_DATA)")
    if (run / RUN_JSON).exists():
        if [i["source"] for i in json.loads((run / RUN_JSON).read_text())["inputs"]] == files:
            return run
    print(f"scoring the seed: {len(files)} real files with the default chain ...", flush=True)
    score(files, run, load_chain(None), ScoreOptions(carry=CARRY, overwrite=True))
    return run


def load_seed(run: Path):
    import polars as pl

    from curate.layout import score_parts

    seed = pl.concat([pl.read_parquet(p) for p in score_parts(run)], how="vertical_relaxed")
    return seed.drop("sample_id", "source", "row")


def seed_order(n: int, idx: np.ndarray) -> np.ndarray:
    """The seed row of each global row index: copy ``k`` visits all ``n`` rows in an order
    of its own (``(pos * STRIDE + offset_k) mod n``, STRIDE coprime with n)."""
    from curate.hashing import splitmix64

    stride = STRIDE
    while np.gcd(stride, n) != 1:
        stride += 2
    copy, pos = idx // n, idx % n
    offset = (splitmix64(copy.astype(np.uint64)) % np.uint64(n)).astype(np.int64)
    return (pos * (stride % n) + offset) % n


def inputs_tag(source: str) -> str:
    """8 hex digits naming the folder of the input files (runs made from other inputs
    have other images; a --like run has the same)."""
    from curate.hashing import key64

    return f"{int(key64(os.path.dirname(source))):016x}"[:8]


# -- one input file, in a worker ------------------------------------------------------------

_SEED = None


def _init(seed_path: str) -> None:
    global _SEED
    from curate.memory import die_with_parent

    die_with_parent()
    os.environ["POLARS_MAX_THREADS"] = "1"
    _SEED = load_seed(Path(seed_path))


def make_part(seed, n_seed: int, source: str, fi: int, start: int, n: int, rows_per_file: int,
              vary: float, salt: int):
    """Part of input file ``fi`` (path ``source``) holding its rows ``start`` to ``start+n``."""
    import polars as pl

    from curate.hashing import derived_ids, splitmix64

    idx = np.arange(fi * rows_per_file + start, fi * rows_per_file + start + n, dtype=np.int64)
    df = seed[seed_order(n_seed, idx)]
    # copy k of an image of the seed is an image of its own, in this run's inputs alone
    tag = "#" + pl.Series(idx // n_seed).cast(pl.String) + "@" + inputs_tag(source)
    sid = derived_ids(source, start, n)
    df = df.with_columns(*[(pl.col(c) + tag).alias(c) for c in INPUT_COLUMNS if c in df.columns])
    if vary > 0:
        # a share ``vary`` of the rows takes the scores and decision of another seed row
        h = splitmix64(sid ^ np.uint64(salt))
        changed = (h % np.uint64(1_000_000)).astype(np.int64) < int(round(vary * 1_000_000))
        other = seed[(seed_order(n_seed, idx) + 1 + (h % np.uint64(n_seed - 1)).astype(np.int64)) % n_seed]
        mask = pl.Series(changed)
        cols = [c for c in df.columns if c.startswith(RESCORED)]
        df = df.with_columns(*[pl.when(mask).then(other[c]).otherwise(df[c]).alias(c) for c in cols])
    df = df.with_columns(
        pl.Series("sample_id", sid, pl.UInt64),
        pl.lit(source, pl.String).alias("source"),
        pl.Series("row", np.arange(start, start + n, dtype=np.int64)),
    )
    return df.select("sample_id", "source", "row", *[c for c in seed.columns])


def part_counts(df) -> dict:
    """What run.json counts, for one part (summed over the parts by the parent)."""
    import polars as pl

    ops = df.select(pl.col("clean_ops").explode().alias("op")).drop_nulls()["op"].value_counts()
    return {
        "reason": {str(k): int(v) for k, v in df["reason"].value_counts().iter_rows() if k is not None},
        "lang": {str(k): int(v) for k, v in df["lang"].value_counts().iter_rows()},
        "ops": {str(k): int(v) for k, v in ops.iter_rows()},
        "changed": int((df["clean_ops"].list.len() > 0).sum()),
        "truncated": int(df["signal__truncated"].sum()),
        "hedging": int((df["signal__hedges"] > 0).sum()),
        "markdown": int(df["signal__markdown"].sum()),
    }


#: the columns :func:`part_counts` reads
COUNTED = ["reason", "lang", "clean_ops", "signal__truncated", "signal__hedges", "signal__markdown"]


def touched(fi: int, bi: int, share: float, salt: int) -> bool:
    """Whether part (fi, bi) of a --vary run holds rescored rows (a share of the parts)."""
    from curate.hashing import splitmix64

    h = splitmix64(np.array([(fi << 20) + bi], np.uint64) ^ np.uint64(salt))[0]
    return int(h % np.uint64(1000)) < round(share * 1000)


def write_file(job: dict) -> dict:
    """Every part of one input file (and the input file itself with ``input_tmp``)."""
    import polars as pl
    import pyarrow.parquet as pq

    from curate.atomic import write_parquet
    from curate.layout import part_path

    seed, rows, batch = _SEED, job["rows"], job["batch_rows"]
    writer = None
    counts: list[dict] = []
    try:
        for bi, start in enumerate(range(0, rows, batch)):
            n = min(batch, rows - start)
            part = part_path(job["version"], job["fi"], bi)
            if job["like"] and not touched(job["fi"], bi, job["touched"], job["salt"]):
                # a part without a rescored row: the same file as the other run's (a hard link)
                os.link(part_path(job["like"], job["fi"], bi), part)
                counts.append(part_counts(pl.read_parquet(part, columns=COUNTED)))
                continue
            df = make_part(seed, seed.height, job["source"], job["fi"], start, n, job["rows_per_file"],
                           job["vary"] / job["touched"] if job["like"] else 0.0, job["salt"])
            write_parquet(df.to_arrow(), part)
            counts.append(part_counts(df))
            if job["input_tmp"]:
                table = df.select("caption", *[c for c in INPUT_COLUMNS if c in df.columns]).to_arrow()
                if writer is None:
                    writer = pq.ParquetWriter(job["input_tmp"], table.schema, compression="zstd")
                writer.write_table(table, row_group_size=batch)
    finally:
        if writer is not None:
            writer.close()
    return {"fi": job["fi"], "counts": counts}


# -- the run ---------------------------------------------------------------------------------


def summed(counts: list[dict]) -> dict:
    out: dict = {"reason": {}, "lang": {}, "ops": {}, "changed": 0, "truncated": 0, "hedging": 0, "markdown": 0}
    for c in counts:
        for k in ("reason", "lang", "ops"):
            for name, v in c[k].items():
                out[k][name] = out[k].get(name, 0) + v
        for k in ("changed", "truncated", "hedging", "markdown"):
            out[k] += c[k]
    return out


def run_json(seed_info: dict, chain, inputs: list[dict], rows: int, total: dict, batch: int,
             workers: int, seconds: float, synthetic: dict) -> dict:
    """run.json as `curate score` writes it; counts exact, score quantiles and caption
    openings those of the seed (every copy holds the seed's rows once)."""
    dropped_all = total["reason"]
    order = ["empty"] + [st.id for st in chain.steps]
    dropped = {s: dropped_all[s] for s in order if s in dropped_all}
    dropped.update({k: v for k, v in dropped_all.items() if k not in dropped})
    kept = rows - sum(dropped.values())
    langs = sorted(total["lang"].items(), key=lambda kv: (-kv[1], kv[0] == "None", kv[0]))[:20]
    share = (lambda n: round(n / rows, 4))
    signals = dict(seed_info.get("model_signals", {}))
    signals.update(truncated=share(total["truncated"]), hedging=share(total["hedging"]),
                   markdown=share(total["markdown"]))
    key = hashlib.sha256(json.dumps(synthetic, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "curate_version": seed_info["curate_version"],
        "command": "score",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "key": key,
        "inputs": inputs,
        "caption_column": "caption",
        "id_column": None,
        "carried_columns": seed_info["carried_columns"],
        "batch_rows": batch,
        "workers": workers,
        "engine": "local",
        "chain": seed_info["chain"],
        "chain_source": seed_info["chain_source"],
        "filters": seed_info["filters"],
        "model_files": seed_info["model_files"],
        "timings": {"total_s": round(seconds, 3), "score_s": round(seconds, 3),
                    "rows_per_s": round(rows / max(seconds, 1e-9), 1)},
        "rows": rows,
        "kept": kept,
        "dropped": dropped,
        "quantiles": seed_info["quantiles"],
        "languages": {k: v for k, v in langs},
        "duplicate_sample_ids": 0,
        "cleaning": {"rows_changed": total["changed"], "per_transform": dict(sorted(total["ops"].items()))},
        "model_signals": signals,
        "decisions": [{"chain": chain.name, "digest": chain.digest(), "kept": kept}],
        "synthetic": synthetic,
    }


def generate(out: Path, rows: int, files: int, batch: int, seed: int, inputs: Path | None,
             like: dict | None, vary: float, workers: int, overwrite: bool, like_run: Path | None = None) -> dict:
    from curate.hashing import input_fingerprints
    from curate.layout import CHAIN_TOML, LOCK, RUN_JSON, SCORES, STATE, pinned_run, run_snapshot
    from curate.scoring.chain import load_chain

    out = Path(os.path.abspath(out))
    for p in (out, inputs):
        if p is not None and os.path.lexists(p):
            if not overwrite:
                sys.exit(f"{p} exists; give --overwrite to replace it")
    seed_path = seed_run()
    seed_info = json.loads((seed_path / RUN_JSON).read_text())
    chain = load_chain(None)
    rows_per_file = -(-rows // files)
    rows_per_file = -(-rows_per_file // batch) * batch  # whole batches, as score cuts them
    sizes = [max(0, min(rows_per_file, rows - i * rows_per_file)) for i in range(files)]
    sizes = [s for s in sizes if s]
    in_folder = inputs if inputs is not None else out.parent / f"{out.name}-inputs"
    sources = [str(in_folder / f"part-{fi:05d}.parquet") for fi in range(len(sizes))]
    if like is not None:
        sources = [i["source"] for i in like["inputs"]]
    tmp_run = out.parent / f".tmp-{out.name}"
    tmp_in = in_folder.parent / f".tmp-{in_folder.name}" if inputs is not None else None
    for t in (tmp_run, tmp_in):
        if t is not None:
            shutil.rmtree(t, ignore_errors=True)
    tmp_run.mkdir(parents=True)
    if tmp_in is not None:
        tmp_in.mkdir(parents=True)
    synthetic = {"generator": "benchmarks/synth_run.py", "seed_run": str(seed_path), "seed_rows": None,
                 "rows": rows, "files": len(sizes), "seed": seed, "vary": vary,
                 "note": "quantiles and caption openings are the seed run's; counts are exact"}
    snap = run_snapshot(tmp_run)
    key = hashlib.sha256(json.dumps(synthetic, sort_keys=True).encode()).hexdigest()[:16]
    version = snap.stage(f"{key}-{time.time_ns()}")
    (version / SCORES).mkdir()
    salt = int.from_bytes(hashlib.sha256(f"{seed}".encode()).digest()[:8], "little")
    like_scores = str(pinned_run(like_run)) if like_run is not None else None
    jobs = [{"fi": fi, "rows": n, "rows_per_file": rows_per_file, "batch_rows": batch, "source": sources[fi],
             "version": str(version), "vary": vary, "salt": salt, "like": like_scores,
             "touched": min(1.0, vary * TOUCHED_PER_VARIED),
             "input_tmp": str(tmp_in / Path(sources[fi]).name) if tmp_in is not None else None}
            for fi, n in enumerate(sizes)]
    t0 = time.perf_counter()
    per_file: dict[int, list[dict]] = {}
    with get_context("spawn").Pool(workers, initializer=_init, initargs=(str(seed_path),)) as pool:
        done = 0
        for res in pool.imap_unordered(write_file, jobs):
            per_file[res["fi"]] = res["counts"]
            done += sizes[res["fi"]]
            print(f"  {done:,} / {rows:,} rows ({time.perf_counter() - t0:.0f} s)", flush=True)
    seconds = time.perf_counter() - t0
    if like is not None:
        records = like["inputs"]
    elif tmp_in is not None:
        fps = input_fingerprints([j["input_tmp"] for j in jobs])
        records = [{"source": s, "format": "parquet", "bytes": os.path.getsize(j["input_tmp"]),
                    "xxh3_128": fp, "rows": n} for s, j, fp, n in zip(sources, jobs, fps, sizes)]
    else:  # the inputs are not written: verify reports them missing
        records = [{"source": s, "format": "parquet", "bytes": None, "xxh3_128": None, "rows": n}
                   for s, n in zip(sources, sizes)]
    total = summed([c for fi in sorted(per_file) for c in per_file[fi]])
    synthetic["seed_rows"] = int(seed_info["rows"])
    info = run_json(seed_info, chain, records, rows, total, batch, workers, seconds, synthetic)
    (version / CHAIN_TOML).write_text((seed_path / CHAIN_TOML).read_text())
    (version / RUN_JSON).write_text(json.dumps(info, indent=2) + "\n")
    (tmp_run / STATE).write_text(json.dumps({"key": info["key"], "version": version.name,
                                             "started": time.time()}, indent=2) + "\n")
    (tmp_run / LOCK).touch()
    snap.commit(version)
    # the switch: inputs first (the run names them), then the run
    for tmp, final in ((tmp_in, in_folder if tmp_in is not None else None), (tmp_run, out)):
        if tmp is None:
            continue
        if os.path.lexists(final):
            shutil.rmtree(final)
        os.rename(tmp, final)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, help="rows of the run")
    ap.add_argument("--out", type=Path, required=True, help="run folder to write (must not exist)")
    ap.add_argument("--parts", type=int, help="input files (default: one per million rows)")
    ap.add_argument("--batch-rows", type=int, default=100_000, help="rows per part, as score --batch-rows")
    ap.add_argument("--seed", type=int, default=7, help="varies the rows --vary changes")
    ap.add_argument("--inputs", nargs="?", const="", default=None, metavar="DIR",
                    help="also write the input Parquet files (to DIR, default OUT-inputs)")
    ap.add_argument("--like", type=Path, help="a synthetic run whose inputs and rows to take (with --vary)")
    ap.add_argument("--vary", type=float, default=0.0, help="share of rows rescored (another seed row's scores)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--overwrite", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    like = None
    if args.like is not None:
        from curate.layout import RUN_JSON

        like = json.loads((args.like / RUN_JSON).read_text())
        syn = like.get("synthetic") or sys.exit(f"{args.like} is not a run made by this script")
        args.rows, args.parts = syn["rows"], syn["files"]
        args.batch_rows = like["batch_rows"]
    if args.vary and like is None:
        sys.exit("--vary rescores rows of the run given with --like")
    if not args.rows or args.rows <= 0:
        sys.exit("give --rows N (or --like RUN)")
    files = args.parts or max(1, -(-args.rows // 1_000_000))
    inputs = None if args.inputs is None or like is not None else \
        Path(os.path.abspath(args.inputs or f"{args.out}-inputs"))
    print(f"synthetic run: {args.rows:,} rows in {files} input file(s) -> {args.out}"
          f"{f' (+ inputs in {inputs})' if inputs else ''}; {args.workers} workers; {cores()}; load {loadavg()}",
          flush=True)
    t0 = time.perf_counter()
    info = generate(args.out, args.rows, files, args.batch_rows, args.seed, inputs, like, args.vary,
                    args.workers, args.overwrite, args.like)
    dt = time.perf_counter() - t0
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*.parquet") if f.is_file() and not f.is_symlink())
    print(f"wrote {info['rows']:,} rows ({info['kept']:,} kept) in {dt:.0f} s ({info['rows'] / dt:,.0f} rows/s), "
          f"{size / 2**30:.2f} GiB of parts; load {loadavg()}")


if __name__ == "__main__":
    main()
