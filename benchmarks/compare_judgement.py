"""Caption-worth models side by side: chosen by cross-validation within the tune half, then
reported on the held-out half, per file.

    python benchmarks/compare_judgement.py                # every candidate
    python benchmarks/compare_judgement.py --only logistic

Candidates: the logistic model over bag-of-features (``train_judgement.py``) at several
feature sets and strengths, a fastText supervised classifier (``fasttext-new``, one thread,
fixed seed) on the cleaned captions, and their blend (mean probability). For each: 5-fold
cross-validation grouped by image on the tune half (crc32 of ``group_id`` even), the
threshold that makes the whole default chain agree best on the out-of-fold probabilities,
then the model refitted on the whole tune half and the chain at that threshold on the
held-out half (nothing there chose anything). Agreement is keep-or-fix versus drop.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "POLARS_MAX_THREADS"):
    os.environ.setdefault(_v, "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_judgement as T  # noqa: E402
from judgement_data import labelled  # noqa: E402

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402


def fasttext_fit(train: pl.DataFrame, epoch: int, dim: int, ngrams: int, minn: int, maxn: int, lr: float,
                 save: Path | None = None):
    """A fastText supervised model of keep (``__label__k``) vs drop on the lower-cased text
    (one thread, seed 20); ``save``: also write it there."""
    import fasttext_new

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.txt"
        lines = [f"__label__{'k' if y else 'd'} {t}" for t, y in
                 zip(train["text"].str.to_lowercase().str.replace_all("\n", " ").to_list(), train["y"].to_list())]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        model = fasttext_new.train_supervised(input=str(path), epoch=epoch, dim=dim, wordNgrams=ngrams, minn=minn,
                                              maxn=maxn, lr=lr, thread=1, seed=20, verbose=0, minCount=1)
    if save is not None:
        model.save_model(str(save))
    return model


def fasttext_fit_predict(train: pl.DataFrame, test_text: pl.Series, epoch: int = 25, dim: int = 16,
                         ngrams: int = 2, minn: int = 0, maxn: int = 0, lr: float = 0.25) -> np.ndarray:
    model = fasttext_fit(train, epoch, dim, ngrams, minn, maxn, lr)
    texts = test_text.str.to_lowercase().str.replace_all("\n", " ").to_list()
    labels, probs = model.predict(texts, k=2)
    return np.array([p[list(lab).index("__label__k")] if "__label__k" in lab else 0.0
                     for lab, p in zip(labels, probs)])


def logistic_fit_predict(train: pl.DataFrame, test_text: pl.Series, c: float, fs) -> np.ndarray:
    from curate.scoring.filters.judgement import key_table, predict

    vocab, clf = T.fit(train["text"], train["y"].to_numpy(), c, fs)
    weights, bias = T.rounded(vocab, clf)
    return predict(test_text, key_table(weights), bias, fs)


def out_of_fold(tune: pl.DataFrame, fit_predict) -> np.ndarray:
    fold = T._folds(tune["group_id"])
    p = np.zeros(tune.height)
    for k in range(T.FOLDS):
        tr, te = pl.Series(fold != k), fold == k
        p[te] = fit_predict(tune.filter(tr), tune["text"].filter(pl.Series(te)))
    return p


def chain_agreement(others_keep: np.ndarray, y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """(agreement of the whole chain at the threshold the trainer would choose, that
    threshold: ``train_judgement.choose_threshold``)."""
    t, a = T.choose_threshold(others_keep, y, p)
    return a, t


def per_file(held: pl.DataFrame, keep: np.ndarray) -> dict[str, float]:
    d = held.with_columns(keep=pl.Series(keep))
    web = d.filter(pl.col("file").str.starts_with("c_"))
    out = {"all": float((d["keep"] == d["y"]).mean()), "web": float((web["keep"] == web["y"]).mean())}
    for f, g in d.group_by("file"):
        out[f[0]] = float((g["keep"] == g["y"]).mean())
    return out


def candidates(only: str | None):
    cands = {}
    for i in range(len(T.FEATURE_SETS)):
        fs = T.feature_set(i)
        for c in T.C_GRID:
            name = f"logistic {'+'.join(fs.kinds)}/{fs.max_tokens} C={c:g}"
            cands[name] = lambda tr, te, c=c, fs=fs: logistic_fit_predict(tr, te, c, fs)
    for ep, ng, mn in ((10, 1, 0), (25, 2, 0), (10, 2, 3), (25, 2, 3)):
        cands[f"fasttext ep={ep} ng={ng} minn={mn}"] = (
            lambda tr, te, ep=ep, ng=ng, mn=mn: fasttext_fit_predict(tr, te, epoch=ep, ngrams=ng, minn=mn,
                                                                     maxn=5 if mn else 0))
    if only:
        cands = {k: v for k, v in cands.items() if k.startswith(only)}
    return cands


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=None, help="candidates whose name starts with this")
    ap.add_argument("--blend", nargs=2, default=None, help="two candidate names to blend (mean probability)")
    ap.add_argument("--rebuild-check", action="store_true",
                    help="train the fastText model twice on the tune half and compare the files' bytes")
    args = ap.parse_args()
    from curate.scoring.frame import score_frame

    if args.rebuild_check:
        tr = T.training_rows()
        with tempfile.TemporaryDirectory() as tmp:
            a, b = Path(tmp) / "a.bin", Path(tmp) / "b.bin"
            for p in (a, b):
                fasttext_fit(tr, 25, 16, 2, 3, 5, 0.25, save=p)
            print(f"fastText rebuilt twice: {'identical' if a.read_bytes() == b.read_bytes() else 'DIFFERENT'} bytes "
                  f"({a.stat().st_size:,} bytes)")
        return

    transforms, others = T.default_chain_parts()
    lab = labelled(True).with_columns(text=T.seen_text(labelled(True)["caption"], transforms))
    tune, held = lab.filter(pl.col("half") == 0), lab.filter(pl.col("half") == 1)
    ok_tune = score_frame(tune.select("caption"), others)["keep"].to_numpy()
    ok_held = score_frame(held.select("caption"), others)["keep"].to_numpy()
    yt, yh = tune["y"].to_numpy(), held["y"].to_numpy()
    rows, oofs, fulls = [], {}, {}
    for name, fp in candidates(args.only).items():
        oofs[name] = out_of_fold(tune, fp)
        fulls[name] = fp(tune, held["text"])
    if args.blend:
        a, b = args.blend
        oofs["blend"] = (oofs[a] + oofs[b]) / 2
        fulls["blend"] = (fulls[a] + fulls[b]) / 2
    for name in oofs:
        cv, t = chain_agreement(ok_tune, yt, oofs[name])
        ho = per_file(held, ok_held & (fulls[name] >= t))
        rows.append({"model": name, "cv_acc@0.5": round(float(((oofs[name] >= 0.5) == yt).mean()), 3),
                     "cv_chain": round(cv, 3), "t": t, **{k: round(v, 3) for k, v in sorted(ho.items())}})
    out = pl.DataFrame(rows)
    out = out.rename({c: c.split("_")[0] + "_" + c.split("_")[1][:8] for c in out.columns if c[:2] in ("a_", "b_", "c_", "d_")})
    with pl.Config(tbl_rows=60, tbl_cols=30, tbl_width_chars=400, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True, fmt_str_lengths=40):
        print(out)


if __name__ == "__main__":
    main()
