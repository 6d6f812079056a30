"""Check new caption-worth labels and add them beside the others (``benchmarks/labels/``).

    python benchmarks/add_labels.py FOLDER_OR_CSV... --out benchmarks/labels/caption_worth_pass3.csv
    python benchmarks/add_labels.py FOLDER --check        # report only, write nothing

Input: CSV files with the columns ``file,row,label,reason,labeller`` (a folder: every
``*.csv`` in it). A label is refused, with its file and row named, when:

* a column is missing or extra, the label is not keep/drop/fix, or a drop/fix has no reason;
* its file is not a caption file of ``../shared/data`` or its row is not in it;
* its image is in the held-out half (crc32 of ``group_id`` odd): labels are for the tune
  half only, so the held-out figures stay unseen;
* its reason holds caption text (a reason is 2 to 6 words by the rubric: more than 8
  words is refused, and so are 4 consecutive words of the caption outside quotation marks,
  or the whole caption in them; a quoted piece of junk, 'strip "Royalty Free Stock
  Photos"', is what a reason names): labels are file + row + label + reason, never the
  caption;
* it is labelled twice in the input with two labels.

A row already labelled (the 3,500 or another ``caption_worth_*.csv``) keeps that label and
is left out. Written sorted by file and row, atomically; the refused rows are listed and
left out (``--strict``: any refusal writes nothing and exits 1).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA  # noqa: E402
from judgement_data import EXTRAS, LABEL_COLUMNS, LABELS, captions, half_of  # noqa: E402

import polars as pl  # noqa: E402


def read_inputs(paths: list[Path]) -> pl.DataFrame:
    files = [f for p in paths for f in (sorted(p.glob("*.csv")) if p.is_dir() else [p])]
    if not files:
        sys.exit(f"no CSV files in {', '.join(map(str, paths))}")
    parts = []
    for f in files:
        d = pl.read_csv(f, infer_schema=False)
        if d.columns != LABEL_COLUMNS:
            sys.exit(f"{f}: columns {d.columns}, expected {LABEL_COLUMNS}")
        parts.append(d.with_columns(source=pl.lit(f.name)))
    return pl.concat(parts).with_columns(pl.col("row").cast(pl.Int64, strict=False), pl.col("reason").fill_null(""))


def problems(new: pl.DataFrame) -> pl.DataFrame:
    """The refused rows with ``problem`` (see the module docstring)."""
    known = {p.stem for p in DATA.glob("*.parquet")}
    new = new.with_columns(pl.col("file").is_in(list(known)).alias("_known"))
    caps = captions(sorted(set(new.filter("_known")["file"].to_list())))
    d = new.join(caps, on=["file", "row"], how="left")
    d = d.with_columns(half=pl.when(pl.col("group_id").is_not_null()).then(half_of(d["group_id"].fill_null(""))))
    words = pl.col("reason").str.to_lowercase().str.extract_all(r"[\p{L}\p{N}']+")
    unquoted = (pl.col("reason").str.to_lowercase().str.replace_all(r'"[^"]*"|“[^”]*”', " ")
                .str.extract_all(r"[\p{L}\p{N}']+"))
    cap_words = pl.col("caption").fill_null("").str.to_lowercase().str.extract_all(r"[\p{L}\p{N}']+")
    # any 4 consecutive words of the reason found, as words, in the caption
    quads = unquoted.list.eval(pl.element() + " " + pl.element().shift(-1) + " " + pl.element().shift(-2) + " "
                            + pl.element().shift(-3)).list.drop_nulls()
    d = d.with_columns(_quads=quads, _cap=" " + cap_words.list.join(" ") + " ",
                       _whole=(" " + words.list.join(" ") + " ").str.contains(" " + cap_words.list.join(" ") + " ",
                                                                               literal=True))
    quoted = d.select(pl.struct("_quads", "_cap").map_batches(
        lambda s: pl.Series([any(f" {q} " in c for q in qs) for qs, c in
                             zip(s.struct.field("_quads").to_list(), s.struct.field("_cap").to_list())]),
        return_dtype=pl.Boolean)).to_series()
    dup = d.group_by("file", "row").agg(pl.col("label").n_unique().alias("_labels"))
    d = d.with_columns(quoted=quoted | pl.col("_whole")).join(dup, on=["file", "row"], how="left")
    problem = (
        pl.when(~pl.col("label").is_in(["keep", "drop", "fix"])).then(pl.lit("label not keep/drop/fix"))
        .when((pl.col("label") != "keep") & (pl.col("reason").str.strip_chars() == "")).then(pl.lit("no reason"))
        .when(~pl.col("_known")).then(pl.lit("no such caption file"))
        .when(pl.col("caption").is_null()).then(pl.lit("no such row"))
        .when(pl.col("half") != 0).then(pl.lit("held-out image"))
        .when(words.list.len() > 8).then(pl.lit("reason over 8 words"))
        .when(pl.col("quoted")).then(pl.lit("reason quotes the caption"))
        .when(pl.col("_labels") > 1).then(pl.lit("two labels"))
    )
    return d.with_columns(problem=problem).filter(pl.col("problem").is_not_null()).select(
        "source", "file", "row", "label", "problem")


def already_labelled() -> pl.DataFrame:
    parts = [pl.read_parquet(LABELS, columns=["file", "row"]).with_columns(pl.col("row").cast(pl.Int64))]
    parts += [pl.read_csv(p, columns=["file", "row"], schema_overrides={"row": pl.Int64}) for p in EXTRAS]
    return pl.concat(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, help="the CSV to write (benchmarks/labels/caption_worth_*.csv)")
    ap.add_argument("--check", action="store_true", help="check only")
    ap.add_argument("--strict", action="store_true", help="write nothing if any label is refused")
    args = ap.parse_args()
    if not args.check and (args.out is None or not args.out.name.startswith("caption_worth_")):
        ap.error("give --out benchmarks/labels/caption_worth_NAME.csv, or --check")
    new = read_inputs(args.inputs)
    bad = problems(new)
    others = already_labelled()
    if args.out is not None:
        others = others.join(pl.read_csv(args.out, columns=["file", "row"], schema_overrides={"row": pl.Int64}),
                             on=["file", "row"], how="anti") if args.out.is_file() else others
    fresh = (new.join(bad, on=["file", "row"], how="anti").unique(["file", "row"], keep="first", maintain_order=True)
             .join(others, on=["file", "row"], how="anti"))
    print(f"{new.height} labels read from {new['source'].n_unique()} files; {bad.height} refused (left out); "
          f"{new.height - bad.height - fresh.height} already labelled (left out); {fresh.height} new")
    print(fresh.group_by("file", "label").len().sort("file", "label"))
    if bad.height:
        with pl.Config(tbl_rows=50):
            print(bad)
        if args.strict:
            sys.exit(1)
    if args.check:
        return
    out = fresh.select(LABEL_COLUMNS).sort("file", "row")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, suffix=".tmp")
    os.close(fd)
    out.write_csv(tmp)
    os.replace(tmp, args.out)
    print(f"wrote {out.height} labels to {args.out}")


if __name__ == "__main__":
    main()
