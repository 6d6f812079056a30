"""``curate train``: labelled captions in, a model folder out (see
:mod:`curate.scoring.filters.classifier` for its format).

The folder is written beside its final place and switched in by one exchange, under the
folder's lock; ``metrics.json`` is written last into it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from curate.atomic import write_json
from curate.errors import CurateError
from curate.layout import discard_staging, lock_output, output_folder, replace_folder, staging_folder
from curate.storage.commit import store_write
from curate.storage.fs import is_url
from curate.scoring.filters.classifier import METHODS, METRICS_FILE, MODEL_FORMAT, load_model, model_file_sha256
from curate.train.fit import Settings, fit_fasttext, fit_probe
from curate.train.labels import Labels, holdout_mask, read_labels, training_order
from curate.train.metrics import binary_metrics, specificity_baseline
from curate.version import __version__


#: the files of a model folder (any other file there is the user's, and blocks a retrain)
MODEL_FILES = (METRICS_FILE, *(f for f, _ in METHODS.values()))


def _check_out(out: str | os.PathLike, overwrite: bool) -> Path:
    return output_folder(out, "a model", METRICS_FILE, overwrite, owned=MODEL_FILES)


def split(labels: Labels, s: Settings):
    """(training part in training order, held-out part) of the labelled rows."""
    held = holdout_mask(labels.frame["key"], s.holdout, s.seed)
    train, test = labels.frame.filter(~held), labels.frame.filter(held)
    for name, part in (("training", train), ("held-out", test)):
        n_pos = int(part["y"].sum())
        if n_pos == 0 or n_pos == part.height:
            kind = "positive" if n_pos == 0 else "negative"
            raise CurateError(
                f"the {name} part ({part.height} of {labels.rows} rows) holds no {kind} label; "
                "label more rows of that kind (or change --holdout)"
            )
    return training_order(train, s.seed), test


def train(specs: list[str], label: str, out: str | os.PathLike, positive: str | None = None,
          caption: str = "caption", group: str | None = None, settings: Settings | None = None,
          overwrite: bool = False) -> dict:
    """Train a classifier on labelled captions and write ``out``; returns its metrics.json.

    A folder that holds a model is replaced only with ``overwrite``, and only when it holds
    nothing but a model's files. ``out`` may be a URL on a store (written locally, then
    switched in as a new version: :mod:`curate.storage.commit`)."""
    if is_url(out):
        with store_write(os.fspath(out), "a model", METRICS_FILE, overwrite) as w:
            local = w.output_folder()
            meta = _train(specs, label, local, positive, caption, group, settings, overwrite)
            w.commit_folder(local, METRICS_FILE)
        return meta
    return _train(specs, label, out, positive, caption, group, settings, overwrite)


def _train(specs: list[str], label: str, out: str | os.PathLike, positive: str | None, caption: str,
           group: str | None, settings: Settings | None, overwrite: bool) -> dict:
    s = settings or Settings()
    s.check()
    out = _check_out(out, overwrite)
    t0 = time.perf_counter()
    labels = read_labels(list(specs), label, positive, caption, group)
    train_part, test = split(labels, s)
    embedder = None
    if s.method == "probe":
        from curate.embed import load_embedder

        embedder = load_embedder(s.embedder)
    out.parent.mkdir(parents=True, exist_ok=True)
    with lock_output(out):
        _check_out(out, overwrite)  # again, under the lock
        stage = staging_folder(out)
        try:
            file = stage / METHODS[s.method][0]
            t_fit = time.perf_counter()
            if s.method == "fasttext":
                fit_fasttext(train_part, s, file)
            else:
                fit_probe(train_part, s, file, embedder)
            fit_s = time.perf_counter() - t_fit
            meta = {
                "format": MODEL_FORMAT,
                "method": s.method,
                "method_version": METHODS[s.method][1],
                "model_file": file.name,
                "model_sha256": model_file_sha256(file),
                "label_column": label,
                "positive": labels.positive,
                "negatives": labels.negatives[:20],
                "threshold": s.threshold,
                "settings": s.to_dict(),
                "labels": {"fingerprint": labels.fingerprint, "rows": labels.rows,
                           "positives": int(labels.frame["y"].sum()), "inputs": labels.inputs,
                           "left_out": labels.unlabelled, "left_out_why": "label null, blank or NaN",
                           "caption_column": caption, "group_column": group},
                "split": {"by": group or "caption hash", "train_rows": train_part.height, "holdout_rows": test.height},
            }
            if embedder is not None:
                meta["embedder"] = {"name": s.embedder, "id": embedder.id, "model_sha256": embedder.model_hash}
            write_json(meta, stage / METRICS_FILE)  # a loadable model, to score the held-out part
            model = load_model(stage)
            p = model.predict(test["text"])
            y = test["y"].to_numpy()
            meta["validation"] = {
                "classifier": binary_metrics(y, p, s.threshold),
                "specificity": specificity_baseline(test["caption"], y),
            }
            meta["timings"] = {"fit_s": round(fit_s, 3), "total_s": round(time.perf_counter() - t0, 3)}
            meta["curate_version"] = __version__
            write_json(meta, stage / METRICS_FILE)
            replace_folder(stage, out)
        except BaseException:
            discard_staging(stage)
            raise
    return meta


def predictions(model_folder: str | os.PathLike, text) -> np.ndarray:
    """P(positive) of a model for normalised captions (a polars String Series)."""
    return load_model(model_folder).predict(text)
