"""Held-out figures: ROC AUC, and accuracy, precision and recall at a threshold; the same
for the ``specificity`` filter alone, as the baseline a learned filter has to beat."""
from __future__ import annotations

import numpy as np
import polars as pl

from curate.scoring.chain import parse_chain
from curate.scoring.frame import score_frame


def roc_auc(y: np.ndarray, score: np.ndarray) -> float | None:
    """Probability that a random positive scores above a random negative (ties count half);
    None when one class is missing."""
    from scipy.stats import rankdata

    y = np.asarray(y, bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return None
    ranks = rankdata(score)
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def binary_metrics(y: np.ndarray, score: np.ndarray, threshold: float) -> dict:
    """ROC AUC, and accuracy / precision / recall of ``score >= threshold`` as positive."""
    y = np.asarray(y, bool)
    pred = np.asarray(score, np.float64) >= threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    return {
        "roc_auc": roc_auc(y, score),
        "threshold": threshold,
        "accuracy": float((pred == y).mean()) if len(y) else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "rows": int(len(y)),
        "positives": int(y.sum()),
    }


def specificity_baseline(captions: pl.Series, y: np.ndarray) -> dict:
    """``specificity`` (after ``language``, which it reads) at its default threshold."""
    chain = parse_chain({"name": "specificity-baseline", "filter": [{"name": "language"}, {"name": "specificity"}]})
    scored = score_frame(pl.DataFrame({"caption": captions.cast(pl.String)}), chain)
    step = chain.steps[1]
    out = binary_metrics(y, scored[step.column].fill_null(0.0).to_numpy(), step.min)
    out["filter"] = step.filter.ident
    return out
