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
from dataclasses import dataclass
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
FEATURES_VERSION = 2
#: A token: a run of letters and digits, or one other visible character (punctuation, symbol).
TOKEN = r"[\p{L}\p{N}]+|[^\s\p{L}\p{N}]"
#: Words of at least this many characters also give their first four and last three letters.
AFFIX_MIN = 5
#: Feature kinds, in the order of their prefixes; a feature's key is a 64-bit mix of its
#: kind and the hashes of its strings (:func:`feature_keys`).
KINDS = ("w", "b", "s", "p", "sh", "n")


@dataclass(frozen=True)
class FeatureSet:
    """Which features a model uses (``judgement.json``'s ``feature_set``): the ``kinds``
    of :func:`features`, from the first ``max_tokens`` tokens found in the first
    ``head_chars`` characters of a caption (its length counts them all): a long description
    has said what it is by then, and the cost stays per caption, not per word."""

    kinds: tuple[str, ...] = ("w", "b", "sh", "n")
    max_tokens: int = 16
    head_chars: int = 110

    @classmethod
    def of(cls, meta: dict) -> "FeatureSet":
        fs = meta.get("feature_set") or {}
        kinds = tuple(fs.get("kinds", cls.kinds))
        if not set(kinds) <= set(KINDS):
            raise CurateError(f"the judgement model names unknown feature kinds {sorted(set(kinds) - set(KINDS))}; "
                              "rebuild it with `make judgement-model`")
        return cls(kinds, int(fs.get("max_tokens", cls.max_tokens)), int(fs.get("head_chars", cls.head_chars)))

    def as_meta(self) -> dict:
        return {"kinds": list(self.kinds), "max_tokens": self.max_tokens, "head_chars": self.head_chars}


def shape(token: pl.Expr) -> pl.Expr:
    """A token's shape: capitals X, small letters x, digits d, runs of 3+ cut to 3
    ("Stock" -> "Xxxx", "15129753" -> "ddd", "iPhone" -> "xXxxx")."""
    return (token.str.replace_all(r"\p{Lu}", "X").str.replace_all(r"\p{Ll}", "x").str.replace_all(r"\p{N}", "d")
            .str.replace_all("xxx+", "xxx").str.replace_all("XXX+", "XXX").str.replace_all("ddd+", "ddd"))


def tokens(text: pl.Series, fs: FeatureSet) -> pl.DataFrame:
    """The first tokens of every caption, one row each: ``i`` (the caption's row), ``o``
    (as written), ``w`` (lower-cased) and ``shaped`` (it has a capital or a digit: its
    shape is a feature)."""
    ex = (text.cast(pl.String).fill_null("").str.head(fs.head_chars).str.extract_all(TOKEN)
          .list.head(fs.max_tokens).alias("o").to_frame().with_row_index("i").explode("o", empty_as_null=False))
    ex = ex.with_columns(w=pl.col("o").str.to_lowercase())
    return ex.with_columns(shaped=(pl.col("o") != pl.col("w")) | pl.col("o").str.contains(r"\p{N}"))


def size_bucket(text: pl.Series) -> pl.Series:
    """The length of the whole caption in bytes (UTF-8), log2-bucketed: free to read."""
    size = text.cast(pl.String).fill_null("").str.len_bytes().clip(0, 1 << 15)
    return ((size + 1).log(2).floor().cast(pl.Int32)).rename("n")


def features(text: pl.Series, fs: FeatureSet = FeatureSet()) -> pl.DataFrame:
    """Every feature of every caption, one row each: ``i`` (the caption's row) and ``f``.

    Per token (:func:`tokens`): ``w:`` the word, ``b:`` it and the next one, ``s:``/``p:``
    the last three and first four letters of a word of ``AFFIX_MIN``+ letters, ``sh:`` the
    shape of a token with a capital or a digit; per caption: ``n:`` :func:`size_bucket`.
    Only the kinds of ``fs``."""
    ex = tokens(text, fs)
    same = pl.col("i").shift(-1) == pl.col("i")
    long = ex.filter(pl.col("w").str.len_chars() >= AFFIX_MIN)
    parts = {
        "w": lambda: ex.select("i", f="w:" + pl.col("w")),
        "b": lambda: ex.select("i", f=pl.when(same).then("b:" + pl.col("w") + " " + pl.col("w").shift(-1))).drop_nulls(),
        "s": lambda: long.select("i", f="s:" + pl.col("w").str.tail(3)),
        "p": lambda: long.select("i", f="p:" + pl.col("w").str.head(4)),
        "sh": lambda: ex.filter(pl.col("shaped")).select("i", f="sh:" + shape(pl.col("o"))),
        "n": lambda: size_bucket(text).to_frame().with_row_index("i").select("i", f=pl.format("n:{}", "n")),
    }
    frames = [parts[k]() for k in KINDS if k in fs.kinds]
    return pl.concat(frames)


_K = np.uint64(0x9E3779B97F4A7C15)
_SEED = 20


def _mix(*parts: np.ndarray) -> np.ndarray:
    """One 64-bit key from hashes and a kind number (wrapping multiply-add)."""
    out = np.zeros(len(parts[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for part in parts:
            out = out * _K + part.astype(np.uint64)
    return out


def _h(s: pl.Series) -> np.ndarray:
    return s.hash(seed=_SEED).to_numpy()


def _kind(name: str, n: int) -> np.ndarray:
    return np.full(n, KINDS.index(name) + 1, dtype=np.uint64)


def feature_keys(text: pl.Series, fs: FeatureSet = FeatureSet()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The features of :func:`features` as 64-bit keys, computed from one hash per token:
    (caption row of each key, the keys, the number of features of each caption). The keys
    are only compared with keys made in the same process (:func:`key_table`), so Polars'
    hash need not be stable across versions."""
    n = len(text)
    ex = tokens(text, fs).drop_nulls("o")
    i = ex["i"].to_numpy()
    hw = _h(ex["w"])
    m = len(i)
    rows, keys = [], []
    if "w" in fs.kinds:
        rows.append(i)
        keys.append(_mix(hw, _kind("w", m)))
    if "b" in fs.kinds:
        pair = i[1:] == i[:-1]
        rows.append(i[:-1][pair])
        keys.append(_mix(hw[:-1][pair], hw[1:][pair], _kind("b", int(pair.sum()))))
    if "s" in fs.kinds or "p" in fs.kinds:
        long = ex.filter(pl.col("w").str.len_chars() >= AFFIX_MIN)
        for name, part in (("s", long["w"].str.tail(3)), ("p", long["w"].str.head(4))):
            if name in fs.kinds:
                rows.append(long["i"].to_numpy())
                keys.append(_mix(_h(part), _kind(name, long.height)))
    if "sh" in fs.kinds:
        # shapes of the distinct tokens only ("The", "2", "New" recur), joined back
        todo = ex.filter(pl.col("shaped")).select("i", "o")
        uniq = todo.select("o").unique().with_columns(h=shape(pl.col("o")).hash(seed=_SEED))
        done = todo.join(uniq, on="o", how="left", maintain_order="left")
        rows.append(done["i"].to_numpy())
        keys.append(_mix(done["h"].to_numpy(), _kind("sh", done.height)))
    if "n" in fs.kinds:
        rows.append(np.arange(n, dtype=i.dtype))
        keys.append(_mix(size_bucket(text).cast(pl.UInt64).to_numpy(), _kind("n", n)))
    rows_all = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    found = np.concatenate(keys) if keys else np.zeros(0, dtype=np.uint64)
    return rows_all, found, np.bincount(rows_all, minlength=n)


def key_table(weights: pl.DataFrame) -> pl.DataFrame:
    """The model's features as ``k`` (keyed as :func:`feature_keys` keys a caption's) and
    ``w``; a feature of an unknown kind is an error, two features of one key add up."""
    kind = weights["f"].str.extract(r"^([a-z]+):", 1)
    unknown = weights.filter(~kind.is_in(KINDS).fill_null(False))
    if unknown.height:
        raise CurateError(f"the judgement model has features of unknown kinds ({unknown['f'][0]!r}, ...); "
                          "rebuild it with `make judgement-model`")
    rest = weights["f"].str.replace(r"^[a-z]+:", "")
    keys = np.zeros(weights.height, dtype=np.uint64)
    for name in KINDS:
        sel = (kind == name).to_numpy()
        part = rest.filter(pl.Series(sel))
        if name == "b":
            two = part.str.split_exact(" ", 1).struct.unnest()
            keys[sel] = _mix(_h(two["field_0"]), _h(two["field_1"]), _kind(name, len(part)))
        elif name == "n":
            keys[sel] = _mix(part.cast(pl.UInt64).to_numpy(), _kind(name, len(part)))
        else:
            keys[sel] = _mix(_h(part), _kind(name, len(part)))
    table = pl.DataFrame({"k": pl.Series(keys, dtype=pl.UInt64), "w": weights["w"]})
    return table.group_by("k").agg(pl.col("w").sum())


@lru_cache(maxsize=4)
def load_model(folder: str, stamp: tuple) -> tuple[pl.DataFrame, float, dict]:
    """(feature keys and weights, intercept, metadata) from ``folder``; one-line errors."""
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
    FeatureSet.of(meta)  # a one-line error now for unknown kinds, not at the first batch
    return key_table(table.filter(pl.col("f") != BIAS)), float(bias[0]), meta


def model_stamp(folder: Path) -> tuple:
    return tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns)
                 for n in (WEIGHTS, META) if (folder / n).is_file())


def predict(text: pl.Series, table: pl.DataFrame, bias: float, fs: FeatureSet = FeatureSet()) -> np.ndarray:
    """P(keep) per caption: the logistic function of the summed weights of its features
    (joined by key with :func:`key_table`; an unseen one weighs 0), divided by the square
    root of its number of features (as in training)."""
    rows, found, k = feature_keys(text, fs)
    w = (pl.DataFrame({"k": pl.Series(found, dtype=pl.UInt64)}).join(table, on="k", how="left", maintain_order="left")
         ["w"].fill_null(0.0).to_numpy())
    z = bias + np.bincount(rows, weights=w, minlength=len(text)) / np.sqrt(np.maximum(k, 1))
    return 1.0 / (1.0 + np.exp(-z))


class Judgement(Filter):
    """Whether the caption is worth training a text-to-image model on, as a careful person
    would judge it by the rubric: it describes what a picture shows (keep), or it does not
    (titles of articles, products or news, SEO lists, prices, file names, chatter, generic
    or broken text: drop).

    Rule: ``score__judgement`` is a logistic model's probability of "keep" (0 to 1) for the
    cleaned caption, from the first tokens' lower-cased words and word pairs, the shapes
    of those with a capital or a digit ("Xxxx", "ddd") and its length (the feature set is
    in ``models/judgement.json``); a feature's weight was learned from labelled captions, and an
    unseen one weighs nothing. Default threshold: ``min`` from ``models/judgement.json``,
    chosen on the training half. Trained with scikit-learn's logistic regression (L2) on
    captions of ``../shared/data`` labelled by ``labels/RUBRIC.md``, by image on one half
    (crc32 of ``group_id`` even); its figures on the other half are in ``judgement.json``
    and ``benchmarks/validate_judgement.py``. In the spirit of FineWeb-Edu's classifier
    (labels from a rubric, a small model) and DataComp's text-based filters.
    """

    name = "judgement"
    version = 2
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
        weights, bias, meta = self._model()
        return pl.DataFrame({column: predict(batch[TEXT], weights, bias, FeatureSet.of(meta))})
