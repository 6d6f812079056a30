"""Validity of the default chain's keep/drop decision, against careful labels, on the half
of the images nothing was trained or tuned on (crc32 of ``group_id`` odd: "held-out").

Labels: ``../shared/data/labels/caption_worth_3500.parquet`` (rubric: ``labels/RUBRIC.md``);
keep and fix count as keep (a fix is a keep after cleaning). Printed, per file and overall:

* agreement: the chain's ``keep`` equals the label's keep-vs-drop;
* kept_bad: kept rows labelled drop; good_dropped: dropped rows labelled keep or fix;
* fix rows cleaned: the clean stage changed the caption and what is left has none of the
  junk the rubric names (``still_junk``: a hard junk kind, a stock mark, a model opener,
  "image may contain", a file extension);
* targets: agreement >= 0.90 overall and >= 0.85 on web alt-text (c_*), >= 90% of fix rows
  cleaned, human captions (a_*) >= 99% kept, long descriptions (d_*) >= 95% kept;
* language ID on captions of at most 6 words, per language, on the files that name it;
* the 20 highest- and lowest-judged rows of each web file (to look at).

    python benchmarks/validate_judgement.py
    python benchmarks/validate_judgement.py --chain path/to/other.toml --top 0
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA  # noqa: E402
from judgement_data import HALVES, half_of, labelled  # noqa: E402

import polars as pl  # noqa: E402

#: What the rubric calls removable junk, as it can be seen in a cleaned caption.
OPENER = r"(?i)^\W*(?:(?:the|this) (?:image|picture|photo)\b|in (?:the|this) (?:image|picture|photo)\b|image may contain)"
LEFTOVER = (r"(?i)stock (?:photo|image|vector|footage)|royalty[ -]*free|image may contain|\.(?:jpe?g|png|gif|svg)\b"
            r"|&(?:amp|quot|nbsp|#[0-9]+);")


def score_labelled(lab: pl.DataFrame, chain_spec: str | None) -> pl.DataFrame:
    from curate.scoring.chain import load_chain
    from curate.scoring.frame import score_frame

    scored = score_frame(lab.select("caption"), load_chain(chain_spec))
    keep = [c for c in scored.columns if c not in lab.columns or c == "caption"]
    return pl.concat([lab, scored.select(keep).drop("caption")], how="horizontal")


def still_junk(df: pl.DataFrame) -> pl.Series:
    c = pl.col("caption_clean")
    junk = pl.col("score__junk") >= 1.0 if "score__junk" in df.columns else pl.lit(False)
    return df.select((c.str.contains(OPENER) | c.str.contains(LEFTOVER) | junk).fill_null(True)).to_series()


def table(df: pl.DataFrame) -> pl.DataFrame:
    fix = pl.col("label") == "fix"
    return df.group_by("file").agg(
        rows=pl.len(),
        agreement=(pl.col("keep") == pl.col("y")).mean().round(3),
        kept=pl.col("keep").mean().round(3),
        kept_bad=(pl.col("keep") & ~pl.col("y")).sum(),
        good_dropped=(~pl.col("keep") & pl.col("y")).sum(),
        fix=fix.sum(),
        fix_cleaned=(fix & pl.col("cleaned")).sum(),
    ).sort("file")


def targets(df: pl.DataFrame) -> list[tuple[str, float, float]]:
    def agree(d):
        return float((d["keep"] == d["y"]).mean())

    web = df.filter(pl.col("file").str.starts_with("c_"))
    fix = df.filter(pl.col("label") == "fix")
    return [
        ("agreement, all", agree(df), 0.90),
        ("agreement, web alt-text (c_*)", agree(web), 0.85),
        ("agreement, c_laion", agree(df.filter(pl.col("file").str.starts_with("c_laion"))), 0.85),
        ("fix rows cleaned", float(fix["cleaned"].mean()), 0.90),
        ("human captions kept (a_*)", float(df.filter(pl.col("file").str.starts_with("a_"))["keep"].mean()), 0.99),
        ("long descriptions kept (d_*)", float(df.filter(pl.col("file").str.starts_with("d_"))["keep"].mean()), 0.95),
    ]


def evaluate(chain_spec: str | None = None, extra: bool = False, half: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows of one half scored with the chain, with ``cleaned``; the per-file table). Half 1
    is held out; half 0 is the one every constant was chosen on (reported for comparison)."""
    lab = labelled(extra).filter(pl.col("half") == half).rename({"reason": "label_reason"})
    df = score_labelled(lab, chain_spec)
    df = df.with_columns(cleaned=(pl.col("caption_clean") != pl.col("caption")) & ~still_junk(df))
    return df, table(df)


def short_lid(data: Path = DATA, max_words: int = 6) -> pl.DataFrame:
    """Language ID accuracy on held-out captions of at most ``max_words`` words, per
    language, on the files that name the language (a_*: en; b_*); ``und`` counted apart."""
    from curate.scoring.filters.base import word_count
    from curate.scoring.filters.language import Language
    from curate.scoring.frame import normalised

    parts = []
    for f in sorted(data.glob("[ab]_*.parquet")):
        d = pl.read_parquet(f, columns=["caption", "lang", "group_id"])
        parts.append(d.with_columns(pl.col("caption").cast(pl.String), pl.col("lang").cast(pl.String)))
    d = pl.concat(parts).filter(half_of(pl.concat(parts)["group_id"]) == 1)
    d = d.with_columns(normalised(d["caption"]))
    d = d.filter(d.select(word_count(pl.col("_text")) <= max_words).to_series())
    got = Language().score(d, "s")["lang"]
    return d.with_columns(pred=got).group_by("lang").agg(
        rows=pl.len(), correct=(pl.col("pred") == pl.col("lang")).mean().round(3),
        und=(pl.col("pred") == "und").mean().round(3),
        wrong=((pl.col("pred") != pl.col("lang")) & (pl.col("pred") != "und")).mean().round(3),
    ).sort("rows", descending=True)


def show_extremes(df: pl.DataFrame, top: int) -> None:
    cfg = dict(tbl_rows=2 * top + 2, fmt_str_lengths=110, tbl_width_chars=170, tbl_hide_dataframe_shape=True,
               tbl_hide_column_data_types=True)
    for name in sorted(df.filter(pl.col("file").str.starts_with("c_"))["file"].unique()):
        d = df.filter(pl.col("file") == name).sort("score__judgement", descending=True)
        print(f"-- {name}: {top} highest- and {top} lowest-judged (label, kept, reason)")
        with pl.Config(**cfg):
            print(pl.concat([d.head(top), d.tail(top)]).select(
                pl.col("score__judgement").round(3).alias("score"), "label", "keep",
                pl.col("reason").fill_null(""), pl.col("caption_clean").str.slice(0, 110)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chain", default=None, help="chain to judge (default: the packaged default)")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--half", type=int, choices=(0, 1), default=1, help="1: held out (default); 0: the tune half")
    args = ap.parse_args()
    df, per_file = evaluate(args.chain, half=args.half)
    print(f"== {'held-out' if args.half else 'tune'} half ({HALVES[args.half]}): {df.height} labelled captions, "
          f"chain {args.chain or 'default'}")
    with pl.Config(tbl_rows=40, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_width_chars=170):
        print(per_file)
        print("\n== per label: kept share")
        print(df.group_by("label").agg(rows=pl.len(), kept=pl.col("keep").mean().round(3)).sort("label"))
        print("\n== why good rows were dropped")
        print(df.filter(~pl.col("keep") & pl.col("y"))["reason"].value_counts().sort("count", descending=True))
    print("\n== targets")
    for name, value, target in targets(df):
        print(f"  {name:32s} {value:.3f}  (target >= {target:.2f}) {'ok' if value >= target else 'MISSED'}")
    print("\n== language ID, captions of <= 6 words (held-out half)")
    with pl.Config(tbl_rows=20, tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True):
        print(short_lid())
    if args.top and "score__judgement" in df.columns:
        print()
        show_extremes(df, args.top)


if __name__ == "__main__":
    main()
