"""Scores before and after a change, compared bit for bit on every file of ../shared/data.

    python benchmarks/check_identical.py --write bench-out/scores-before   # on the old code
    python benchmarks/check_identical.py --against bench-out/scores-before # on the new code

Scores every Parquet file of ``../shared/data`` (its ``caption`` column) with every chain in
``filters/`` through ``score_frame`` (the function each worker calls per batch; a score
carried from outside, such as ``neardup``, is a null column here), one Parquet file per
(chain, input). ``--against``
scores again and compares every column: dtype, nulls and values; floats by their bits
(NaN and -0.0 included), strings and lists exactly. It prints the columns that differ
and exits 1 if any does. ``--write`` and ``--against`` may be given together.

``--unchanged-only`` (a change to the clean stage): only the rows whose ``caption_clean``
is the same before and after are compared, and the rows whose cleaning changed are counted.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT  # noqa: E402


def chains() -> list[str]:
    return sorted(p.stem for p in (ROOT / "filters").glob("*.toml"))


def scored() -> dict[str, pl.DataFrame]:
    from curate.scoring.chain import load_chain
    from curate.scoring.frame import score_frame

    out: dict[str, pl.DataFrame] = {}
    files = sorted(DATA.glob("*.parquet"))
    for name in chains():
        chain = load_chain(name)
        for f in files:
            frame = pl.read_parquet(f)
            if "caption" not in frame.columns:
                continue
            out[f"{name}--{f.stem}"] = score_frame(frame.select("caption"), chain)
    return out


def _bits(s: pl.Series) -> pl.Series:
    """A float column as the integers of its bits (nulls kept): equal bits, equal values."""
    if s.dtype not in (pl.Float32, pl.Float64):
        return s
    ints = s.fill_null(0.0).to_numpy().view("i8" if s.dtype == pl.Float64 else "i4")
    return pl.Series(s.name, ints).zip_with(s.is_not_null(), pl.Series([None] * len(s), dtype=pl.Int64))


def differences(before: pl.DataFrame, after: pl.DataFrame, unchanged_only: bool = False) -> list[str]:
    out = []
    if unchanged_only and "caption_clean" in before.columns and "caption_clean" in after.columns:
        same = before["caption_clean"].eq_missing(after["caption_clean"])
        if not same.all():
            out.append(f"({int((~same).sum())} rows cleaned differently, not compared)")
        before, after = before.filter(same), after.filter(same)
    if before.columns != after.columns:
        out.append(f"columns {before.columns} -> {after.columns}")
    for c in before.columns:
        if c not in after.columns:
            continue
        a, b = before[c], after[c]
        if a.dtype != b.dtype:
            out.append(f"{c}: dtype {a.dtype} -> {b.dtype}")
        elif len(a) != len(b):
            out.append(f"{c}: {len(a)} rows -> {len(b)}")
        else:
            x, y = _bits(a), _bits(b)
            if not x.equals(y):
                same = pl.DataFrame({"x": x, "y": y}).select(pl.col("x").eq_missing(pl.col("y"))).to_series()
                out.append(f"{c}: {int((~same).sum())} rows differ")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", type=Path, help="write the scores to this folder")
    ap.add_argument("--against", type=Path, help="compare with the scores in this folder")
    ap.add_argument("--unchanged-only", action="store_true",
                    help="compare only the rows whose caption_clean did not change")
    a = ap.parse_args()
    if not a.write and not a.against:
        ap.error("give --write, --against or both")
    frames = scored()
    if a.write:
        a.write.mkdir(parents=True, exist_ok=True)
        for key, df in frames.items():
            df.write_parquet(a.write / f"{key}.parquet")
        print(f"wrote {len(frames)} score tables ({sum(f.height for f in frames.values()):,} rows) to {a.write}")
    if a.against:
        bad = 0
        for key, df in frames.items():
            path = a.against / f"{key}.parquet"
            if not path.exists():
                print(f"{key}: no earlier scores")
                bad += 1
                continue
            diff = differences(pl.read_parquet(path), df, a.unchanged_only)
            if a.unchanged_only and diff and all(d.startswith("(") for d in diff):
                print(f"{key}: {diff[0]}")
            elif diff:
                bad += 1
                print(f"{key}: " + "; ".join(diff))
        rows = sum(f.height for f in frames.values())
        print(f"{len(frames) - bad} of {len(frames)} score tables ({rows:,} rows, every column) bit-identical")
        sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
