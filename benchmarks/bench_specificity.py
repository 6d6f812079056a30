"""Speed of the specificity filter against its previous version, and a check that a change
to its code keeps every score.

``speed``: CPU-s per 100k captions (``time.process_time``), the current filter and the
previous version (the newest version 2 in git, as ``validate_specificity.py`` loads it)
alternating on one frame of captions sampled from ``../shared/data`` (fixed seed), with
``lang`` computed beforehand as in a run. Optionally a cProfile of the current filter.

``save`` / ``compare``: every caption column of every file of ``../shared/data`` (with its
``lang``, from the language filter) scored by the current code and written to a folder;
``compare`` scores again and checks each file with ``Series.equals`` (bit for bit), and
checks batch independence: all files scored as one batch, and in chunks of uneven sizes,
give each caption the score it got in its own file.

    python benchmarks/bench_specificity.py speed [--rows 100000] [--reps 5] [--profile] [--lang en]
    python benchmarks/bench_specificity.py save /tmp/spec-before
    python benchmarks/bench_specificity.py compare /tmp/spec-before
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from common import DATA, caption_pool, cores, loadavg  # noqa: E402

TEXT_COLUMNS = ("caption", "caption_b")


def with_lang(captions: pl.Series) -> pl.DataFrame:
    """Normalised text and ``lang``, as a run gives them to the filter."""
    from curate.scoring.filters import Language
    from curate.scoring.frame import normalised

    frame = pl.DataFrame({"caption": captions.cast(pl.String)})
    frame = frame.with_columns(normalised(frame["caption"]))
    return frame.with_columns(Language().score(frame, "score__language"))


def speed(rows: int, reps: int, profile: bool, lang: str | None) -> None:
    from validate_specificity import old_filter

    from curate.scoring.filters.specificity import Specificity

    pool = caption_pool(DATA)
    rng = np.random.default_rng(20240611)
    frame = with_lang(pl.Series([pool[i] for i in rng.integers(0, len(pool), rows)]))
    if lang:  # only the rows of this lang, resampled to ``rows``
        frame = frame.filter(pl.col("lang") == lang).sample(rows, with_replacement=True, seed=1)
    old, rev = old_filter(None)
    contenders = {"new": Specificity()}
    if old is not None:
        contenders[f"old ({rev[:10]})"] = old.Specificity()
    for f in contenders.values():
        f.score(frame, "s")  # load the word tables once
    times = {name: [] for name in contenders}
    for _ in range(reps):  # alternate, so that both see the same load on the machine
        for name, f in contenders.items():
            t0 = time.process_time()
            f.score(frame, "s")
            times[name].append(time.process_time() - t0)
    print(f"== speed: {rows:,} captions{f' of lang {lang}' if lang else ''}, {reps} runs each, alternating; {cores()}; load {loadavg()}; "
          f"POLARS_MAX_THREADS={os.environ.get('POLARS_MAX_THREADS', 'unset')}")
    for name, ts in times.items():
        per = [t * 100_000 / rows for t in ts]
        print(f"  {name}: CPU-s per 100k captions: min {min(per):.3f}, median {float(np.median(per)):.3f}")
    if profile:
        import cProfile
        import pstats

        pr = cProfile.Profile()
        pr.enable()
        for _ in range(3):
            contenders["new"].score(frame, "s")
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)


def inputs(cache: Path) -> dict[str, pl.DataFrame]:
    """Every caption column of every data file, normalised, with ``lang``; cached in ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    out = {}
    for path in sorted(DATA.glob("*.parquet")):
        names = pl.read_parquet_schema(path)
        for col in TEXT_COLUMNS:
            if col not in names:
                continue
            f = cache / f"{path.stem}.{col}.input.parquet"
            if not f.exists():
                with_lang(pl.read_parquet(path, columns=[col])[col]).select("_text", "lang").write_parquet(f)
            out[f"{path.stem}.{col}"] = pl.read_parquet(f)
    return out


def scores(frames: dict[str, pl.DataFrame]) -> dict[str, pl.Series]:
    from curate.scoring.filters.specificity import Specificity

    f = Specificity()
    return {k: f.score(d, "s")["s"] for k, d in frames.items()}


def save(folder: Path) -> None:
    from curate.scoring.filters.specificity import Specificity

    frames = inputs(folder / "inputs")
    for k, s in scores(frames).items():
        s.to_frame().write_parquet(folder / f"{k}.scores.parquet")
    every = pl.concat(list(frames.values())).drop("lang")  # no lang column: English lists for all
    Specificity().score(every, "s").write_parquet(folder / "nolang.scores.parquet")
    print(f"saved the scores of {len(frames)} columns in {folder}")


def compare(folder: Path) -> None:
    from curate.scoring.filters.specificity import Specificity

    frames = inputs(folder / "inputs")
    bad = 0
    for k, s in scores(frames).items():
        ref = pl.read_parquet(folder / f"{k}.scores.parquet")["s"]
        same = s.equals(ref)
        bad += not same
        print(f"  {k}: {len(s)} rows, {'equal' if same else f'DIFFERENT: {int((s != ref).sum())} rows'}")
    # batch independence: one batch of everything; uneven chunks of a shuffled frame
    every = pl.concat(list(frames.values()))
    ref = pl.concat([pl.read_parquet(folder / f"{k}.scores.parquet")["s"] for k in frames])
    f = Specificity()
    whole = f.score(every, "s")["s"]
    print(f"  all files as one batch ({every.height} rows): {'equal' if whole.equals(ref) else 'DIFFERENT'}")
    bad += not whole.equals(ref)
    rng = np.random.default_rng(7)
    order = rng.permutation(every.height)
    shuffled, ref_sh = every[order], ref.gather(order)
    cuts = np.sort(rng.choice(np.arange(1, every.height), 40, replace=False))
    parts = [f.score(c, "s")["s"] for c in np.split(np.arange(every.height), cuts) for c in [shuffled[c]]]
    chunked = pl.concat(parts)
    print(f"  shuffled, in 41 uneven chunks: {'equal' if chunked.equals(ref_sh) else 'DIFFERENT'}")
    bad += not chunked.equals(ref_sh)
    nolang = f.score(every.drop("lang"), "s")["s"]  # no lang column: English lists for all
    ref_nolang = folder / "nolang.scores.parquet"
    same = nolang.equals(pl.read_parquet(ref_nolang)["s"])
    print(f"  without a lang column: {'equal' if same else 'DIFFERENT'}")
    bad += not same
    print("ALL EQUAL" if bad == 0 else f"{bad} DIFFERENT")
    sys.exit(1 if bad else 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--rows", type=int, default=100_000)
    sp.add_argument("--reps", type=int, default=5)
    sp.add_argument("--profile", action="store_true")
    sp.add_argument("--lang", default=None, help="only captions of this lang (e.g. en)")
    for name in ("save", "compare"):
        sub.add_parser(name).add_argument("folder", type=Path)
    args = ap.parse_args()
    if args.cmd == "speed":
        speed(args.rows, args.reps, args.profile, args.lang)
    elif args.cmd == "save":
        save(args.folder)
    else:
        compare(args.folder)


if __name__ == "__main__":
    main()
