"""Fitting the two methods: fastText supervised on the caption text, and a logistic probe
on sentence embeddings. Both are seeded and single-threaded, so the same labels (in any
order: :func:`curate.train.labels.training_order` fixes it) give the same model bytes."""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from curate.errors import CurateError, first_line
from curate.scoring.filters.classifier import NEGATIVE_LABEL, POSITIVE_LABEL, prepare_fasttext_text

METHODS = ("fasttext", "probe")
EMBEDDERS = ("static", "minilm")


@dataclass
class Settings:
    """How a model is trained; every field is recorded in ``metrics.json``."""

    method: str = "fasttext"
    embedder: str = "static"  # probe only
    holdout: float = 0.3  # share of groups (or captions) held out for the metrics
    seed: int = 0
    threshold: float = 0.5  # P(positive) at or above which a caption counts as positive
    # fastText: the small-data settings of its text-classification tutorial (many epochs,
    # a high learning rate, word bigrams), with a small hashing table and dimension
    epoch: int = 25
    lr: float = 0.5
    word_ngrams: int = 2
    dim: int = 32
    bucket: int = 100_000
    # probe: inverse L2 strength of the logistic regression
    c: float = 1.0

    def check(self) -> None:
        if self.method not in METHODS:
            raise CurateError(f"unknown method {self.method!r}; use one of {', '.join(METHODS)}")
        if self.method == "probe" and self.embedder not in EMBEDDERS:
            raise CurateError(f"unknown embedder {self.embedder!r}; use one of {', '.join(EMBEDDERS)}")
        if not 0.05 <= self.holdout <= 0.9:
            raise CurateError(f"holdout must be between 0.05 and 0.9, got {self.holdout}")
        if not 0.0 < self.threshold < 1.0:
            raise CurateError(f"threshold must be between 0 and 1, got {self.threshold}")

    def to_dict(self) -> dict:
        d = asdict(self)
        keep = ("embedder", "c") if self.method == "probe" else ("epoch", "lr", "word_ngrams", "dim", "bucket")
        common = ("method", "holdout", "seed", "threshold")
        return {k: v for k, v in d.items() if k in common + keep}


def fasttext_lines(frame: pl.DataFrame) -> str:
    """The training file: one ``__label__pos text`` line per row."""
    lab = pl.when(frame["y"]).then(pl.lit(POSITIVE_LABEL)).otherwise(pl.lit(NEGATIVE_LABEL))
    lines = pl.select(pl.concat_str(lab, pl.lit(" "), pl.lit(prepare_fasttext_text(frame["text"])))).to_series()
    return "\n".join(lines.to_list()) + "\n"


def fit_fasttext(frame: pl.DataFrame, s: Settings, out: Path) -> None:
    """Train fastText on ``frame`` (``text``, ``y``, already in training order), save to ``out``.

    One thread: fastText's Hogwild updates with several threads are not reproducible, and on
    tiny or repetitive files they can diverge ("Encountered NaN"). Trained by ``fasttext-new``
    (the distribution curate predicts with); the model file is fastText's format."""
    import fasttext_new as fasttext

    with tempfile.TemporaryDirectory(prefix=".train-", dir=out.parent) as tmp:
        path = Path(tmp) / "train.txt"
        path.write_text(fasttext_lines(frame), encoding="utf-8")
        try:
            model = fasttext.train_supervised(
                input=str(path), epoch=s.epoch, lr=s.lr, wordNgrams=s.word_ngrams, dim=s.dim,
                bucket=s.bucket, minCount=1, loss="softmax", thread=1, seed=s.seed, verbose=0,
            )
        except (RuntimeError, ValueError) as e:
            raise CurateError(f"fastText training failed ({first_line(e)}); try a lower --lr or more labels") from None
    model.save_model(str(out))


def fit_probe(frame: pl.DataFrame, s: Settings, out: Path, embedder) -> None:
    """Fit an L2-regularised logistic regression (scikit-learn's lbfgs, deterministic) on the
    embedder's vectors of ``frame``'s text; save ``[coef..., intercept]`` as float64 ``.npy``
    (a format with no timestamps, so the same fit gives the same bytes)."""
    from sklearn.linear_model import LogisticRegression

    x = embedder.encode(frame["text"]).astype(np.float64)
    clf = LogisticRegression(C=s.c, max_iter=2000, random_state=s.seed)
    clf.fit(x, frame["y"].to_numpy())
    weights = np.concatenate([clf.coef_[0], clf.intercept_]).astype(np.float64)
    with open(out, "wb") as f:
        np.save(f, weights, allow_pickle=False)
