"""The ``classifier`` filter: a caption-quality model trained with ``curate train``.

This module owns the model folder format, so that scoring (which comes before training in
the package's flow) can read what ``curate.train`` writes::

    MODEL/metrics.json   what the model is: format, method and its version, the model
                         file and its sha256, the positive label, the threshold, the
                         embedder (probe), training settings, labels' fingerprint, and the
                         held-out metrics next to the specificity baseline
    MODEL/model.bin      fastText supervised model (method "fasttext"), or
    MODEL/probe.npy      logistic-probe weights, float64 ``[coef (d values)..., intercept]``,
                         over an embedder's L2-normalised vectors (method "probe")

``prepare_fasttext_text`` is the one text preparation used by training and by scoring.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.scoring.filters.base import TEXT, Filter
from curate.scoring.filters.language import open_fasttext, predict_batch
from curate.storage.commit import reading_copy
from curate.storage.fs import is_url

MODEL_FORMAT = "curate-classifier"
METRICS_FILE = "metrics.json"
#: method -> (model file, method version). A change in how a method prepares text, trains or
#: predicts bumps its version; a model of another version is refused (retrain it).
METHODS = {"fasttext": ("model.bin", 1), "probe": ("probe.npy", 1)}
#: fastText's labels in the training file (the positive class and the other one)
POSITIVE_LABEL, NEGATIVE_LABEL = "__label__pos", "__label__neg"


def prepare_fasttext_text(text: pl.Series) -> pl.Series:
    """What fastText reads of a normalised caption: lower case, punctuation and symbols set
    apart as words of their own (fastText splits at white space only, so "dog." would
    otherwise be another word than "dog"), one line (no newline inside)."""
    return (
        text.fill_null("").str.to_lowercase()
        .str.replace_all(r"([\p{P}\p{S}])", " $1 ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def read_metrics(folder: str | os.PathLike) -> dict:
    """``MODEL/metrics.json`` checked as a model written by this curate: one-line errors for
    a folder that is not a model and for a model of another method version."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CurateError(f"classifier model {str(folder)!r} is not a folder (train one with `curate train`)")
    path = folder / METRICS_FILE
    if not path.is_file():
        raise CurateError(f"{folder}: not a curate classifier model (no {METRICS_FILE}; train one with `curate train`)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CurateError(f"{path}: unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != MODEL_FORMAT:
        raise CurateError(f"{folder}: {METRICS_FILE} is not a curate classifier's (format {MODEL_FORMAT!r} expected)")
    method = meta.get("method")
    if method not in METHODS:
        raise CurateError(f"{folder}: unknown method {method!r}; this curate reads {', '.join(METHODS)}")
    want = METHODS[method][1]
    if meta.get("method_version") != want:
        raise CurateError(
            f"{folder}: trained by {method} version {meta.get('method_version')}, this curate reads "
            f"version {want}; retrain it with `curate train`"
        )
    file = folder / str(meta.get("model_file", ""))
    if meta.get("model_file") != METHODS[method][0] or not file.is_file():
        raise CurateError(f"{folder}: the model file {METHODS[method][0]} is missing")
    return meta


@lru_cache(maxsize=32)
def _sha256(path: str, stamp: tuple) -> str:
    from curate.hashing import file_sha256

    return file_sha256(path)


def model_file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a model file, cached per (path, size, mtime)."""
    st = os.stat(path)
    return _sha256(str(path), (st.st_size, st.st_mtime_ns))


@dataclass
class Model:
    folder: Path
    meta: dict
    impl: object  # the fastText model, or (coef, intercept, embedder)

    @property
    def method(self) -> str:
        return self.meta["method"]

    def predict(self, text: pl.Series) -> np.ndarray:
        """Probability of the positive label for each normalised caption (float64), one
        model call for the whole series; empty text gets 0."""
        text = text.fill_null("")
        out = np.zeros(len(text), np.float64)
        need = (text.str.strip_chars() != "").arg_true()
        if len(need) == 0:
            return out
        sub = text.gather(need)
        if self.method == "fasttext":
            out[need.to_numpy()] = fasttext_positive(self.impl, prepare_fasttext_text(sub))
        else:
            coef, intercept, embedder = self.impl
            z = embedder.encode(sub).astype(np.float64) @ coef + intercept
            out[need.to_numpy()] = 1.0 / (1.0 + np.exp(-z))
        return out


def fasttext_positive(model, lines: pl.Series) -> np.ndarray:
    """P(positive) from fastText's batched call (both labels' probabilities, k = 2; a
    label left out for a probability that rounds to 0 counts 0)."""
    labels, p, counts = predict_batch(model, lines.to_list(), 2)
    line = np.repeat(np.arange(len(lines)), counts)
    pos = (labels == POSITIVE_LABEL).to_numpy()
    out = np.zeros(len(lines), np.float64)
    out[line[pos]] = p[pos]
    return out.clip(0.0, 1.0)


def _stamp(folder: Path) -> tuple:
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.iterdir()) if p.is_file())


def load_model(folder: str | os.PathLike, device: str = "cpu") -> Model:
    """The model in ``folder``, checked against its ``metrics.json`` (its file's sha256),
    loaded once per process (and again when its files change). A model on a store is read
    from a local copy of its current version."""
    folder = reading_copy(os.fspath(folder)) if is_url(folder) else Path(folder).resolve()
    read_metrics(folder)
    return _load(str(folder), _stamp(folder), device)


@lru_cache(maxsize=8)
def _load(folder: str, stamp: tuple, device: str) -> Model:
    meta = read_metrics(folder)
    file = Path(folder) / meta["model_file"]
    if model_file_sha256(file) != meta.get("model_sha256"):
        raise CurateError(f"{folder}: {file.name}'s sha256 differs from the one in {METRICS_FILE} (a damaged model?)")
    if meta["method"] == "fasttext":
        impl: object = open_fasttext(str(file))
    else:
        from curate.embed import load_embedder

        try:
            weights = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise CurateError(f"{file}: not a probe's weights ({e})") from None
        if weights.ndim != 1 or len(weights) < 2:
            raise CurateError(f"{file}: not a probe's weights (shape {weights.shape})")
        coef, intercept = weights[:-1].astype(np.float64), float(weights[-1])
        emb = meta.get("embedder") or {}
        embedder = load_embedder(str(emb.get("name")), device)
        if embedder.model_hash != emb.get("model_sha256"):
            raise CurateError(
                f"{folder}: trained on embedder {emb.get('id')!r} with sha256 {str(emb.get('model_sha256'))[:12]}…, "
                f"but {embedder.id!r} here has {embedder.model_hash[:12]}…; retrain it with `curate train`"
            )
        if embedder.dim != len(coef):
            raise CurateError(f"{folder}: {len(coef)} probe weights for a {embedder.dim}-d embedder")
        impl = (coef, intercept, embedder)
    return Model(Path(folder), meta, impl)


class Classifier(Filter):
    """Probability that the caption is of the kind its labels call positive, from a model
    trained with ``curate train`` on a few hundred labelled captions.

    Rule: ``params = { model = "MODEL" }`` names a folder written by ``curate train``; the
    score is the model's probability of the positive label (0 to 1), for the normalised
    caption, computed in one model call per batch. Methods: fastText supervised (Joulin et
    al. 2016, "Bag of Tricks for Efficient Text Classification"; word bigrams over the lower-
    cased caption with punctuation set apart), or a logistic probe over the ``static`` or
    ``minilm`` sentence embeddings (``curate.embed``). Empty text scores 0. The default
    threshold is min 0.5 (the positive label is the likelier one); ``MODEL/metrics.json``
    holds the held-out ROC AUC, accuracy, precision and recall next to ``specificity``'s.
    The model file's sha256 is recorded in ``run.json``. Learned filters in the same spirit:
    DataComp's and DFN's filtering networks, datatrove's fastText classifier filter.
    """

    name = "classifier"
    version = 1
    params = {"model": "", "device": "cpu"}
    choices = {"device": ("cpu", "cuda")}
    default_min = 0.5

    def __init__(self, **params) -> None:
        super().__init__(**params)
        if not self.p["model"]:
            raise CurateError('filter \'classifier\' needs params = { model = "MODEL" }, a folder written by `curate train`')
        model = self.p["model"]  # the same model from any working folder
        self.p["model"] = model.rstrip("/") if is_url(model) else os.path.abspath(model)
        self._local: str | None = None

    def folder(self) -> str:
        """The model's local folder: for a model on a store (``s3://...``, written by
        ``curate train --out s3://...``) a local copy of its current version, made once."""
        if self._local is None:
            model = self.p["model"]
            self._local = str(reading_copy(model)) if is_url(model) else model
        return self._local

    def model_files(self) -> dict[str, str]:
        meta = read_metrics(self.folder())
        name = f"{self.p['model'].rstrip('/').rsplit('/', 1)[-1]}/{meta['model_file']}"
        out = {name: model_file_sha256(Path(self.folder()) / meta["model_file"])}
        if meta["method"] == "probe":
            emb = meta.get("embedder") or {}
            out[f"{name}:embedder:{emb.get('id')}"] = str(emb.get("model_sha256"))
        return out

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        model = load_model(self.folder(), self.p["device"])
        return pl.DataFrame({column: model.predict(batch[TEXT])})
