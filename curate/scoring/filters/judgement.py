"""The ``judgement`` filter: would you train a text-to-image model on this caption?

A logistic model over the caption's words, word pairs, word shapes and ends, trained on
captions labelled by a written rubric (``../shared/data/labels/RUBRIC.md``: keep, drop, or
fix = keep after cleaning). It ships inside curate, in ``models/``:

    models/judgement.tsv        one line per feature: ``feature<TAB>weight`` (the first line
                                is the header, the second the intercept, ``<bias>``)
    models/judgement.json       what the model is: its version, the feature set's version,
                                the threshold chosen on the training half, the labels'
                                fingerprint, and the held-out figures
    models/JUDGEMENT_NOTICE.md  where the training captions and labels come from, and
                                their licences

``benchmarks/train_judgement.py`` rebuilds both files byte for byte from the labels
(``make judgement-model``). A feature is a plain string, so the weights read the same
whatever the library versions; scoring is one exploded column of features per batch,
joined with the weights and summed per caption (no loop over rows).
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.scoring.filters.base import TEXT, Filter

MODELS = Path(__file__).resolve().parent / "models"
WEIGHTS, META = "judgement.tsv", "judgement.json"
BIAS = "<bias>"
#: How a caption is cut into features; a change here is a new feature set (and model).
FEATURES_VERSION = 1
#: A token: a run of letters and digits, or one other visible character (punctuation, symbol).
TOKEN = r"[\p{L}\p{N}]+|[^\s\p{L}\p{N}]"
#: Words of at least this many characters also give their first four and last three letters.
AFFIX_MIN = 5


def shape(token: pl.Expr) -> pl.Expr:
    """A token's shape: capitals X, small letters x, digits d, runs of 3+ cut to 3
    ("Stock" -> "Xxxx", "15129753" -> "ddd", "iPhone" -> "xXxxx")."""
    return (token.str.replace_all(r"\p{Lu}", "X").str.replace_all(r"\p{Ll}", "x").str.replace_all(r"\p{N}", "d")
            .str.replace_all("xxx+", "xxx").str.replace_all("XXX+", "XXX").str.replace_all("ddd+", "ddd"))


def features(text: pl.Series) -> pl.DataFrame:
    """Every feature of every caption, one row each: ``i`` (the caption's row) and ``f``.

    Per token (lower-cased): ``w:`` the word, ``b:`` it and the next one, ``s:``/``p:`` the
    last three and first four letters of a long word, ``sh:`` the shape of the token as
    written; per caption: ``f:`` and ``l:`` the first and last token, ``n:`` the number of
    tokens (log-bucketed), ``e:`` an empty caption."""
    toks = (pl.DataFrame({"t": text.cast(pl.String).fill_null("")}).with_row_index("i")
            .select("i", pl.col("t").str.extract_all(TOKEN).alias("o")))
    counts = toks.select("i", pl.col("o").list.len().alias("n"))
    ex = toks.explode("o", empty_as_null=True).filter(pl.col("o").is_not_null())
    ex = ex.with_columns(w=pl.col("o").str.to_lowercase())
    same = pl.col("i").shift(-1) == pl.col("i")
    first = pl.col("i").shift(1) != pl.col("i")
    words = ex.select("i", f="w:" + pl.col("w"))
    pairs = ex.select("i", f=pl.when(same).then("b:" + pl.col("w") + " " + pl.col("w").shift(-1))).drop_nulls()
    ends = ex.select("i", f=pl.when(first.fill_null(True)).then("f:" + pl.col("w"))
                     .when(~same.fill_null(False)).then("l:" + pl.col("w"))).drop_nulls()
    last_one = ex.select("i", f=pl.when(first.fill_null(True) & ~same.fill_null(False)).then("l:" + pl.col("w"))).drop_nulls()
    long = ex.filter(pl.col("w").str.len_chars() >= AFFIX_MIN)
    affixes = pl.concat([long.select("i", f="s:" + pl.col("w").str.tail(3)),
                         long.select("i", f="p:" + pl.col("w").str.head(4))])
    shapes = ex.select("i", f="sh:" + shape(pl.col("o")))
    size = counts.select("i", f=pl.format("n:{}", (pl.col("n").clip(0, 400) + 1).log(2).floor().cast(pl.Int32)))
    return pl.concat([words, pairs, ends, last_one, affixes, shapes, size])


@lru_cache(maxsize=4)
def load_model(folder: str, stamp: tuple) -> tuple[pl.DataFrame, float, dict]:
    """(feature weights, intercept, metadata) from ``folder``; one-line errors."""
    meta_path, tsv = Path(folder) / META, Path(folder) / WEIGHTS
    if not meta_path.is_file() or not tsv.is_file():
        raise CurateError(f"the judgement model is missing in {folder} ({META}, {WEIGHTS}); reinstall curate "
                          "or rebuild it with `make judgement-model`")
    try:
        meta = json.loads(meta_path.read_text())
        table = pl.read_csv(tsv, separator="\t", quote_char=None, schema={"f": pl.String, "w": pl.Float64})
    except (OSError, ValueError, pl.exceptions.PolarsError) as e:
        raise CurateError(f"the judgement model in {folder} is unreadable ({str(e).splitlines()[0]})") from None
    if meta.get("features_version") != FEATURES_VERSION:
        raise CurateError(f"the judgement model in {folder} has feature set {meta.get('features_version')}, "
                          f"this curate computes {FEATURES_VERSION}; rebuild it with `make judgement-model`")
    bias = table.filter(pl.col("f") == BIAS)["w"]
    if len(bias) != 1:
        raise CurateError(f"{tsv}: no {BIAS} line")
    return table.filter(pl.col("f") != BIAS), float(bias[0]), meta


def model_stamp(folder: Path) -> tuple:
    return tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns)
                 for n in (WEIGHTS, META) if (folder / n).is_file())


def predict(text: pl.Series, weights: pl.DataFrame, bias: float) -> np.ndarray:
    """P(keep) per caption: the logistic function of the summed weights of its features,
    divided by the square root of its number of features (as in training)."""
    n = len(text)
    feats = features(text)
    per = feats.group_by("i").agg(pl.len().alias("k"))
    hit = feats.join(weights, on="f", how="inner").group_by("i").agg(pl.col("w").sum())
    z = per.join(hit, on="i", how="left").select("i", (pl.col("w").fill_null(0.0) / pl.col("k").sqrt()).alias("z"))
    out = np.full(n, bias, dtype=np.float64)
    out[z["i"].to_numpy()] += z["z"].to_numpy()
    return 1.0 / (1.0 + np.exp(-out))


class Judgement(Filter):
    """Whether the caption is worth training a text-to-image model on, as a careful person
    would judge it by the rubric: it describes what a picture shows (keep), or it does not
    (titles of articles, products or news, SEO lists, prices, file names, chatter, generic
    or broken text: drop).

    Rule: ``score__judgement`` is a logistic model's probability of "keep" (0 to 1) for the
    cleaned caption, from its lower-cased words, word pairs, first and last words, the first
    four and last three letters of words of 5+ letters, the shapes of its tokens ("Xxxx",
    "ddd") and its length; a feature's weight was learned from labelled captions, and an
    unseen one weighs nothing. Default threshold: ``min`` from ``models/judgement.json``,
    chosen on the training half. Trained with scikit-learn's logistic regression (L2) on
    captions of ``../shared/data`` labelled by ``labels/RUBRIC.md``, by image on one half
    (crc32 of ``group_id`` even); its figures on the other half are in ``judgement.json``
    and ``benchmarks/validate_judgement.py``. In the spirit of FineWeb-Edu's classifier
    (labels from a rubric, a small model) and DataComp's text-based filters.
    """

    name = "judgement"
    version = 1
    params = {"model": ""}

    def __init__(self, **params) -> None:
        super().__init__(**params)
        self.folder = Path(os.path.abspath(self.p["model"])) if self.p["model"] else MODELS

    def _model(self):
        return load_model(str(self.folder), model_stamp(self.folder))

    def thresholds(self) -> tuple[float | None, float | None]:
        return float(self._model()[2]["threshold"]), None

    def model_files(self) -> dict[str, str]:
        from curate.hashing import file_sha256

        self._model()
        return {f"judgement/{WEIGHTS}": file_sha256(self.folder / WEIGHTS)}

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        weights, bias, _ = self._model()
        return pl.DataFrame({column: predict(batch[TEXT], weights, bias)})
