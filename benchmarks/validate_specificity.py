"""Validity of the specificity filter, on the half of the images it was not tuned on.

Every file of ``../shared/data`` is scored in a run of its own with the default chain
(``filters/default.toml``: the language filter gives ``lang``, as in ``curate score``).
Images are split in two halves by a stable hash of ``group_id`` (crc32, even = "tune",
odd = "held-out"): the filter's constants were chosen looking at the tune half only, so
the held-out columns are the ones to believe (DESIGN convention 13). Printed:

* the median score per file and half, and the targets of issue 11: every d_* file median
  above every a_* file median above every c_* file median, pooled a_*/c_* medians;
* THumB recall Spearman (pooled and per half), ImageInWords side-by-side agreement;
* Multi30k parallel translations: median ratio to English and Spearman with English;
* among the 200 highest-scored c_laion rows: how many are keyword lists or product titles
  (by the surface rules in ``surface_kind``, which share nothing with the filter's);
* the default chain: share of a_* captions kept, and what it drops per c_* file, by reason;
* the ten highest-scored rows of each c_* file, the three highest and lowest of every file;
* speed: CPU-s per 100k captions sampled as the benchmark input is (``common.caption_pool``),
  against the previous version of the filter, loaded from git for this run only.

    python benchmarks/validate_specificity.py
    python benchmarks/validate_specificity.py --speed-rows 0      # skip the timing
    python benchmarks/validate_specificity.py --old-rev 790f3d1   # compare with that commit
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import types
import zlib
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, caption_pool, cores, loadavg  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

#: where the filter lives (before and after the package is laid out by stage)
FILTER_PATHS = ["curate/scoring/filters/specificity.py", "curate/filters/specificity.py"]
HALVES = {0: "tune", 1: "held-out"}


def half_of(group_id: pl.Series) -> pl.Series:
    """0 or 1 by crc32 of ``group_id``: stable across runs, machines and library versions."""
    ids = group_id.cast(pl.String).fill_null("")
    uniq = ids.unique().to_list()
    table = {g: zlib.crc32(g.encode()) % 2 for g in uniq}  # one entry per image, not per row
    return ids.replace_strict(table, return_dtype=pl.Int8)


def score_file(path: Path, column: str = "caption") -> pl.DataFrame:
    """One file scored in a run of its own with the default chain."""
    from curate.scoring.chain import load_chain
    from curate.scoring.frame import score_frame

    df = pl.read_parquet(path)
    batch = df.select(pl.col(column).cast(pl.String).alias("caption"))
    scored = score_frame(batch, load_chain("default"))
    out = df.drop("lang", strict=False).rename({"caption": "caption_orig"} if column != "caption" else {})
    return pl.concat([out, scored.select("lang", "score__specificity", "keep", "reason", pl.col("caption").alias("text"))],
                     how="horizontal").with_columns(half=half_of(df["group_id"]), file=pl.lit(path.stem))


def surface_kind(text: pl.Series) -> pl.Series:
    """"keyword list", "product/title" or "other", by surface rules alone, for the count in
    the top rows: a keyword list has 3 or more commas/pipes/semicolons and at most 3 words
    per piece, or repeats 2 or more words with under 15% small English function words; a
    product title or headline has 4 or more words of which 60% or more start with a capital
    (or is all capitals)."""
    t = pl.col("t")
    n = t.str.count_matches(r"[\p{L}\p{N}]+")
    seps = t.str.count_matches(r"[,|;]")
    caps = t.str.count_matches(r"(?:^|[\s(/-])\p{Lu}")
    small = t.str.count_matches(r"(?i)\b(?:a|an|the|of|in|on|with|and|is|are|at|to|for|by|from)\b")
    words = t.str.to_lowercase().str.extract_all(r"\p{L}{3,}")
    repeats = words.list.len() - words.list.n_unique()
    return pl.DataFrame({"t": text}).select(
        pl.when((seps >= 3) & (n / (seps + 1) <= 3.0)).then(pl.lit("keyword list"))
        .when((repeats >= 2) & (small / n < 0.15)).then(pl.lit("keyword list"))
        .when((~t.str.contains(r"\p{Ll}") & (n >= 4)) | ((n >= 4) & (caps / n >= 0.6))).then(pl.lit("product/title"))
        .otherwise(pl.lit("other")).alias("kind")
    ).to_series()


def rho(a, b) -> float:
    return float(spearmanr(a, b).statistic)


def show(df: pl.DataFrame, n: int, width: int = 150) -> None:
    with pl.Config(tbl_rows=n, fmt_str_lengths=width, tbl_width_chars=width + 40, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        print(df.select(pl.col("score__specificity").alias("score"), "half", "lang",
                        pl.col("text").str.slice(0, width).alias("caption")))


def report(data: Path, top: int, old) -> None:
    files = sorted(p for p in data.glob("*.parquet"))
    scored = {p.stem: score_file(p) for p in files}
    if old is not None:  # the previous version, on the same text and lang
        from curate.scoring.filters import TEXT

        scored = {k: d.with_columns(old=old.Specificity().score(d.select(pl.col("text").alias(TEXT), "lang"), "s")["s"])
                  for k, d in scored.items()}
    every = pl.concat([d.select("file", "half", "lang", "score__specificity", "keep", "reason", "text",
                                *(["old"] if old is not None else [])) for d in scored.values()])

    print("== median score__specificity per file (each file scored in a run of its own)")
    med = (every.group_by("file", "half").agg(pl.col("score__specificity").median())
           .pivot("half", index="file", values="score__specificity")
           .rename({"0": "tune", "1": "held-out"})
           .join(every.group_by("file").agg(pl.col("score__specificity").median().alias("all")), on="file"))
    if old is not None:
        med = med.join(every.group_by("file").agg(pl.col("old").median().alias("all, previous version")), on="file")
    with pl.Config(tbl_rows=40, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(med.select("file", "tune", "held-out", pl.exclude("file", "tune", "held-out")).sort("file"))

    print("\n== targets per half")
    for h, name in HALVES.items():
        d = every.filter(pl.col("half") == h)
        m = dict(d.group_by("file").agg(pl.col("score__specificity").median()).iter_rows())
        a = {k: v for k, v in m.items() if k.startswith("a_")}
        c = {k: v for k, v in m.items() if k.startswith("c_")}
        dd = {k: v for k, v in m.items() if k.startswith("d_")}
        pooled = {p: d.filter(pl.col("file").str.starts_with(p))["score__specificity"].median() for p in ("a_", "c_")}
        print(f"[{name}] min d_ {min(dd.values()):.2f} > max a_ {max(a.values()):.2f}: {min(dd.values()) > max(a.values())}; "
              f"min a_ {min(a.values()):.2f} ({min(a, key=a.get)}) > max c_ {max(c.values()):.2f} ({max(c, key=c.get)}): "
              f"{min(a.values()) > max(c.values())} (margin x{min(a.values()) / max(c.values()):.3f}); "
              f"pooled a_/c_ = {pooled['a_']:.2f}/{pooled['c_']:.2f} = x{pooled['a_'] / pooled['c_']:.3f} (target >= 1.3)")

    thumb = scored["e_thumb_mscoco_human_scores"]
    r = {name: rho(thumb.filter(pl.col("half") == h)["score__specificity"], thumb.filter(pl.col("half") == h)["score_recall_1to5"])
         for h, name in HALVES.items()}
    print(f"\nTHumB recall Spearman: pooled {rho(thumb['score__specificity'], thumb['score_recall_1to5']):.3f}, "
          + ", ".join(f"{k} {v:.3f}" for k, v in r.items()) + " (targets 0.35 pooled, 0.30 each half)")
    wc = thumb["text"].str.count_matches(r"\S+")
    print(f"  (word count alone: pooled {rho(wc, thumb['score_recall_1to5']):.3f})")
    if old is not None:
        print(f"  (previous version: pooled {rho(thumb['old'], thumb['score_recall_1to5']):.3f}, " + ", ".join(
            f"{name} {rho(thumb.filter(pl.col('half') == h)['old'], thumb.filter(pl.col('half') == h)['score_recall_1to5']):.3f}"
            for h, name in HALVES.items()) + ")")

    sxs_path = data / "e_imageinwords_sxs_judgments.parquet"
    a_side = scored["e_imageinwords_sxs_judgments"]
    b_side = score_file(sxs_path, "caption_b")
    both = a_side.with_columns(b=b_side["score__specificity"]).filter(
        pl.col("caption_b").is_not_null() & (pl.col("a_minus_b_specificity") != 0))
    agree = (both["score__specificity"] - both["b"]).sign() == both["a_minus_b_specificity"].sign()
    per = {name: f"{int(agree.filter(both['half'] == h).sum())}/{int((both['half'] == h).sum())}" for h, name in HALVES.items()}
    print(f"IIW side-by-side specificity agreement: {agree.mean():.3f} ({int(agree.sum())}/{len(agree)}; "
          + ", ".join(f"{k} {v}" for k, v in per.items()) + ") (target 0.94)")

    print("\n== parallel translations (align_id): median ratio to English, Spearman with English")
    t1 = scored["b_multi30k_task1_en_de_fr_cs"].with_columns(label=pl.read_parquet(data / "b_multi30k_task1_en_de_fr_cs.parquet")["lang"])
    ms = scored["b_multiscript30k_mt"].with_columns(label=pl.read_parquet(data / "b_multiscript30k_mt.parquet")["lang"])
    en = t1.filter(pl.col("label") == "en").select("align_id", en="score__specificity")
    for lang in ["de", "fr", "cs", "es", "uk", "ar", "zh"]:
        src = t1 if lang in ("de", "fr", "cs") else ms
        x = src.filter(pl.col("label") == lang).join(en, on="align_id")
        cells = []
        for h, name in [(None, "all"), *HALVES.items()]:
            y = x if h is None else x.filter(pl.col("half") == h)
            cells.append(f"{name}: x{y['score__specificity'].median() / y['en'].median():.3f}, rho {rho(y['score__specificity'], y['en']):.3f}")
        target = " (target 0.67-1.5x, rho >= 0.7)" if lang in ("de", "fr", "cs") else ""
        print(f"  {lang}: " + "; ".join(cells) + target)

    print("\n== the 200 highest-scored c_laion rows, by surface kind (rules in surface_kind)")
    laion = scored["c_laion_web_alttext_sample"].sort("score__specificity", descending=True).head(200)
    laion = laion.with_columns(kind=surface_kind(laion["text"]))
    print("  " + ", ".join(f"{k}: {v}" for k, v in laion["kind"].value_counts().sort("kind").iter_rows()))
    if old is not None:
        prev = scored["c_laion_web_alttext_sample"].sort("old", descending=True).head(200)
        print("  previous version: " + ", ".join(
            f"{k}: {v}" for k, v in surface_kind(prev["text"]).value_counts().sort("kind").iter_rows()))
    for kind in ("keyword list", "product/title"):
        rows = laion.with_row_index("rank").filter(pl.col("kind") == kind)
        for rank, s, t in rows.select("rank", "score__specificity", pl.col("text").str.slice(0, 110)).iter_rows():
            print(f"    #{rank:<3} {s:7.2f} [{kind}] {t}")

    print("\n== the default chain: kept a_* captions, dropped c_* captions")
    for name, d in scored.items():
        if name.startswith("a_"):
            print(f"  {name}: kept {d['keep'].mean():.3%} (" + ", ".join(
                f"{HALVES[h]} {d.filter(pl.col('half') == h)['keep'].mean():.3%}" for h in HALVES) + ")")
    pooled_a = pl.concat([d for n, d in scored.items() if n.startswith("a_")])
    print(f"  all a_*: kept {pooled_a['keep'].mean():.3%} (target >= 95%); dropped by specificity: "
          f"{(pooled_a['reason'] == 'specificity').fill_null(False).mean():.3%} of all a_* rows")
    for name, d in scored.items():
        if name.startswith("c_"):
            reasons = d.filter(~pl.col("keep"))["reason"].value_counts().sort("count", descending=True)
            print(f"  {name}: dropped {1 - d['keep'].mean():.1%} of {d.height}: "
                  + ", ".join(f"{r} {c / d.height:.1%}" for r, c in reasons.iter_rows()))

    print(f"\n== the {top} highest-scored rows of each c_* file")
    for name, d in scored.items():
        if name.startswith("c_"):
            print(f"-- {name}")
            show(d.sort("score__specificity", descending=True).head(top), top)
    print("\n== the three highest- and lowest-scored rows of every file")
    for name, d in scored.items():
        print(f"-- {name}")
        ranked = d.filter(pl.col("text").str.len_chars() > 0).sort("score__specificity", descending=True)
        show(pl.concat([ranked.head(3), ranked.tail(3)]), 6, 120)


def old_filter(rev: str | None):
    """The previous specificity (version 2) as a module, from git, for the timing only."""
    def show_file(r: str) -> str | None:
        for path in FILTER_PATHS:
            res = subprocess.run(["git", "show", f"{r}:{path}"], cwd=ROOT, capture_output=True, text=True)
            if res.returncode == 0:
                return res.stdout
        return None

    if rev is None:  # the newest commit whose filter says version = 2
        revs = subprocess.run(["git", "rev-list", "HEAD", "--", *FILTER_PATHS], cwd=ROOT, capture_output=True,
                              text=True).stdout.split()
        for r in revs:
            src = show_file(r)
            if src and "    version = 2\n" in src:
                rev = r
                break
    src = show_file(rev) if rev else None
    if src is None:
        return None, rev
    import curate.scoring.filters as pkg

    # the old version's own relative imports, as the package is laid out now
    src = src.replace("from ..embed import cache_root", "from curate.layout import cache_root")
    src = src.replace("from ..io import file_sha256", "from curate.hashing import file_sha256")
    mod = types.ModuleType(pkg.__name__ + ".specificity_old")
    mod.__package__ = pkg.__name__
    exec(compile(src, f"{rev}:specificity.py", "exec"), mod.__dict__)
    return mod, rev


def speed(rows: int, old, rev: str | None, reps: int) -> None:
    from curate.scoring.filters import Language
    from curate.scoring.filters.specificity import Specificity
    from curate.scoring.frame import normalised

    pool = caption_pool(DATA)
    rng = np.random.default_rng(20240611)
    frame = pl.DataFrame({"caption": [pool[i] for i in rng.integers(0, len(pool), rows)]})
    frame = frame.with_columns(normalised(frame["caption"]))
    frame = frame.with_columns(Language().score(frame, "score__language"))  # lang, as in a run
    contenders = {"new": Specificity()}
    if old is not None:
        contenders[f"old ({rev[:10]})"] = old.Specificity()
    times = {name: [] for name in contenders}
    for f in contenders.values():
        f.score(frame, "s")  # load the word tables once
    for _ in range(reps):  # alternate, so that both see the same load on the machine
        for name, f in contenders.items():
            t0 = time.process_time()
            f.score(frame, "s")
            times[name].append(time.process_time() - t0)
    print(f"\n== speed: {rows:,} captions, {reps} runs each, alternating; {cores()}; load {loadavg()}; "
          f"POLARS_MAX_THREADS={os.environ.get('POLARS_MAX_THREADS', 'unset')}")
    for name, ts in times.items():
        per = [t * 100_000 / rows for t in ts]
        print(f"  {name}: CPU-s per 100k captions: min {min(per):.3f}, median {float(np.median(per)):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--top", type=int, default=10)
    ap.add_argument("--speed-rows", type=int, default=100_000)
    ap.add_argument("--speed-reps", type=int, default=5)
    ap.add_argument("--old-rev", default=None, help="git revision of the previous filter (default: the newest version 2)")
    args = ap.parse_args()
    import curate

    print(f"curate from {Path(curate.__file__).parent}")
    old, rev = old_filter(args.old_rev)
    print(f"previous version: {rev or 'not found'}")
    report(args.data, args.top, old)
    if args.speed_rows:
        speed(args.speed_rows, old, rev, args.speed_reps)


if __name__ == "__main__":
    main()
