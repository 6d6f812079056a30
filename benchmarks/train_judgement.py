"""Build the ``judgement`` filter's model (curate/scoring/filters/models/judgement.*), byte
for byte, from the labelled captions of the tune half of the images.

    python benchmarks/train_judgement.py            # write the model into the package
    python benchmarks/train_judgement.py --check    # rebuild in a temporary folder, compare bytes
    make judgement-model

Steps, all on the tune half (crc32 of ``group_id`` even; ``judgement_data.py``):

1. the captions are cleaned by the default chain's ``[[clean]]`` transforms and normalised,
   as the filter sees them in a run;
2. features (``curate.scoring.filters.judgement.features``) seen in at least ``MIN_ROWS``
   training captions make the vocabulary;
3. an L2 logistic regression (scikit-learn, lbfgs, one thread) on feature counts divided by
   the square root of the caption's number of features;
4. the feature set and strength C: every pair of ``FEATURE_SETS`` x ``C_GRID`` is scored by
   5-fold cross-validation grouped by image: the agreement of the whole default chain (its
   other filters as they are, and the model's out-of-fold probability at its best
   threshold) with the labels. The cheapest pair (fewest features, then the smallest C,
   the strongest regularisation) within one standard error of the best is chosen: a
   difference smaller than the noise of ~3,600 labels buys no complexity;
5. the threshold: the one at which that pair's out-of-fold chain agrees best, averaged
   over thresholds within 0.03 (the middle of the flat top, not its noisiest point);
6. weights are written rounded to 6 significant digits, so the same labels give the same
   bytes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT  # noqa: E402
from judgement_data import EXTRAS, LABELS, labelled  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

MIN_ROWS = 2
C_GRID = (4.0, 16.0, 64.0)
#: Candidate feature sets, cheapest first: (kinds, max_tokens, head_chars).
FEATURE_SETS = ((("w", "b", "sh", "n"), 12, 80), (("w", "b", "sh", "n"), 16, 110), (("w", "b", "sh", "n"), 24, 160),
                (("w", "b", "s", "p", "sh", "n"), 24, 160))
FOLDS = 5
T_GRID = np.round(np.arange(0.05, 0.951, 0.01), 2)
#: The agreement curve is averaged over this many grid steps either side (0.03).
T_WINDOW = 3
OUT = ROOT / "curate" / "scoring" / "filters" / "models"


def default_chain_parts():
    """(clean transforms, the default chain without the judgement step)."""
    from curate.clean import parse_clean
    from curate.config import read_toml
    from curate.scoring.chain import parse_chain

    data = read_toml(ROOT / "filters" / "default.toml", "chain")
    others = dict(data, filter=[f for f in data["filter"] if f["name"] != "judgement"])
    return parse_clean(data.get("clean"), "default"), parse_chain(others, "default without judgement")


def seen_text(caption: pl.Series, transforms) -> pl.Series:
    """The text the filters see: cleaned, then normalised."""
    from curate.clean import clean_captions
    from curate.scoring.frame import normalised

    clean, _ = clean_captions(caption, transforms)
    return normalised(clean, after_whitespace=bool(transforms) and transforms[-1].name == "whitespace")


def design(text: pl.Series, vocab: pl.DataFrame, fs):
    """Sparse matrix of feature counts / sqrt(features per caption), columns = vocab rows."""
    import scipy.sparse as sp

    from curate.scoring.filters.judgement import features

    f = features(text, fs)
    k = np.bincount(f["i"].to_numpy(), minlength=len(text)).astype(np.float64)
    hit = f.join(vocab.with_row_index("j"), on="f", how="inner")
    rows, cols = hit["i"].to_numpy(), hit["j"].to_numpy()
    x = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(text), vocab.height))
    x.sum_duplicates()
    return sp.diags(1.0 / np.sqrt(np.maximum(k, 1.0))) @ x


def vocabulary(text: pl.Series, fs) -> pl.DataFrame:
    from curate.scoring.filters.judgement import features

    f = features(text, fs).unique()
    return f.group_by("f").len().filter(pl.col("len") >= MIN_ROWS).select("f").sort("f")


def fit(text: pl.Series, y: np.ndarray, c: float, fs):
    from sklearn.linear_model import LogisticRegression

    from threadpoolctl import threadpool_limits

    vocab = vocabulary(text, fs)
    clf = LogisticRegression(C=c, max_iter=5000, tol=1e-8)
    with threadpool_limits(1):  # one BLAS thread: the same sums in the same order, the same bytes
        clf.fit(design(text, vocab, fs), y)
    return vocab, clf


def rounded(vocab: pl.DataFrame, clf) -> tuple[pl.DataFrame, float]:
    w = pl.Series([float(f"{v:.6g}") for v in clf.coef_[0]])
    return vocab.with_columns(w=w), float(f"{clf.intercept_[0]:.6g}")


def out_of_fold(tune: pl.DataFrame, c: float, fs) -> np.ndarray:
    from curate.scoring.filters.judgement import key_table, predict

    fold = _folds(tune["group_id"])
    p = np.zeros(tune.height)
    y = tune["y"].to_numpy()
    for k in range(FOLDS):
        tr, te = fold != k, fold == k
        vocab, clf = fit(tune["text"].filter(pl.Series(tr)), y[tr], c, fs)
        weights, bias = rounded(vocab, clf)
        p[te] = predict(tune["text"].filter(pl.Series(te)), key_table(weights), bias, fs)
    return p


def _folds(group_id: pl.Series) -> np.ndarray:
    """Fold of each row by a stable hash (md5) of its image: an image is in one fold."""
    return np.array([int(hashlib.md5(g.encode()).hexdigest()[:8], 16) % FOLDS for g in group_id.to_list()])


def choose_threshold(kept: np.ndarray, y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(the threshold at which the default chain, whose other filters keep ``kept``,
    agrees best with the labels ``y``, that agreement). The agreement is averaged over
    thresholds within ``T_WINDOW`` first: its curve is flat near the top, and the middle of
    the plateau moves less with one label more than the single best point does (ties: the
    lowest threshold, which drops least)."""
    agree = np.array([float(((kept & (p >= t)) == y).mean()) for t in T_GRID])
    w = 2 * T_WINDOW + 1
    smooth = np.convolve(np.pad(agree, T_WINDOW, mode="edge"), np.ones(w) / w, mode="valid")
    best = int(np.argmax(smooth))
    return float(T_GRID[best]), float(agree[best])


def choose(results: dict[tuple[int, float], tuple[float, float]], rows: int) -> tuple[int, float]:
    """The cheapest (feature set index, C) whose agreement is within one standard error
    (sqrt(a(1-a)/rows)) of the best; ``results`` maps each to (agreement, threshold)."""
    top = max(a for a, _ in results.values())
    se = float(np.sqrt(top * (1 - top) / rows))
    return min(key for key, (a, _) in results.items() if a >= top - se)


def feature_set(index: int):
    from curate.scoring.filters.judgement import FeatureSet

    kinds, tokens, chars = FEATURE_SETS[index]
    return FeatureSet(kinds, tokens, chars)


def training_rows(extra: bool = True) -> pl.DataFrame:
    """The labelled captions of the tune half, with ``text`` as the filter sees it."""
    transforms, _ = default_chain_parts()
    tune = labelled(extra).filter(pl.col("half") == 0)
    return tune.with_columns(text=seen_text(tune["caption"], transforms))


def labels_sha256(tune: pl.DataFrame) -> str:
    return hashlib.sha256(tune.select("file", "row", "label").write_csv().encode()).hexdigest()


def weights_text(tune: pl.DataFrame, c: float, fs) -> str:
    """The weights file of a model fitted on ``tune`` with strength ``c`` and features ``fs``."""
    from curate.scoring.filters.judgement import BIAS

    vocab, clf = fit(tune["text"], tune["y"].to_numpy(), c, fs)
    weights, bias = rounded(vocab, clf)
    lines = ["f\tw", f"{BIAS}\t{bias!r}"] + [f"{f}\t{w!r}" for f, w in weights.iter_rows()]
    return "\n".join(lines) + "\n"


def cross_validate(tune: pl.DataFrame, others) -> dict[tuple[int, float], tuple[float, float]]:
    """(agreement, threshold) of the whole chain on out-of-fold probabilities, per
    (feature set index, C)."""
    from curate.scoring.frame import score_frame

    kept = score_frame(tune.select("caption"), others)["keep"].to_numpy()
    y = tune["y"].to_numpy()
    results = {}
    for i in range(len(FEATURE_SETS)):
        for c in C_GRID:
            t, a = choose_threshold(kept, y, out_of_fold(tune, c, feature_set(i)))
            results[(i, c)] = (a, t)
    return results


def build(out: Path, extra: bool = True) -> dict:
    from curate.scoring.filters.judgement import FEATURES_VERSION, META, WEIGHTS

    _, others = default_chain_parts()
    tune = training_rows(extra)
    y = tune["y"].to_numpy()
    results = cross_validate(tune, others)
    i, c = choose(results, tune.height)
    fs = feature_set(i)
    text = weights_text(tune, c, fs)
    out.mkdir(parents=True, exist_ok=True)
    (out / WEIGHTS).write_text(text, encoding="utf-8")
    meta = {
        "model": "judgement", "features_version": FEATURES_VERSION, "threshold": results[(i, c)][1],
        "feature_set": fs.as_meta(),
        "method": "logistic regression (scikit-learn lbfgs, L2) on feature counts / sqrt(features)",
        "c": c, "features": text.count("\n") - 2, "min_rows_per_feature": MIN_ROWS,
        "cv_chain_agreement": {f"{' '.join(feature_set(j).kinds)} / {feature_set(j).max_tokens} tokens / C={v}":
                               round(a, 4) for (j, v), (a, _) in sorted(results.items())},
        "training": {"rows": tune.height, "keep_or_fix": int(y.sum()), "drop": int((~y).sum()),
                     "by_set": dict(sorted(tune.group_by("set").len().iter_rows())),
                     "labels": [str(LABELS.relative_to(LABELS.parents[2]))]
                     + ([str(p.relative_to(ROOT)) for p in EXTRAS] if extra else []),
                     "split": "images with crc32(group_id) % 2 == 0", "labels_sha256": labels_sha256(tune)},
        "rebuild": "python benchmarks/train_judgement.py (make judgement-model)",
    }
    (out / META).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="rebuild in a temporary folder and compare with the package")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--no-extra", action="store_true", help="train on the 3,500 labels only")
    args = ap.parse_args()
    from curate.scoring.filters.judgement import META, WEIGHTS

    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            build(Path(tmp), not args.no_extra)
            same = [(Path(tmp) / n).read_bytes() == (args.out / n).read_bytes() for n in (WEIGHTS, META)]
        print("identical" if all(same) else f"DIFFERENT: {WEIGHTS} {same[0]}, {META} {same[1]}")
        sys.exit(0 if all(same) else 1)
    meta = build(args.out, not args.no_extra)
    print(json.dumps({k: meta[k] for k in ("threshold", "c", "feature_set", "cv_chain_agreement", "features")}, indent=1))


if __name__ == "__main__":
    main()
