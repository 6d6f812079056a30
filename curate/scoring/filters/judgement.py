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
#: Only a caption's first tokens give features (its length counts them all): a long
#: description has said what it is by then, and the cost stays per caption, not per word.
MAX_TOKENS = 24
#: ... found in its first this many characters (the tokens past them are only counted).
HEAD_CHARS = 160


def shape(token: pl.Expr) -> pl.Expr:
    """A token's shape: capitals X, small letters x, digits d, runs of 3+ cut to 3
    ("Stock" -> "Xxxx", "15129753" -> "ddd", "iPhone" -> "xXxxx")."""
    return (token.str.replace_all(r"\p{Lu}", "X").str.replace_all(r"\p{Ll}", "x").str.replace_all(r"\p{N}", "d")
            .str.replace_all("xxx+", "xxx").str.replace_all("XXX+", "XXX").str.replace_all("ddd+", "ddd"))


def features(text: pl.Series) -> pl.DataFrame:
    """Every feature of every caption, one row each: ``i`` (the caption's row) and ``f``.

    Per token of the first ``MAX_TOKENS`` in the first ``HEAD_CHARS`` characters
    (lower-cased): ``w:`` the word, ``b:`` it and the next one, ``s:``/``p:`` the
    last three and first four letters of a long word, ``sh:`` the shape of the token as
    written (not for an all-lower-case word); per caption: ``n:`` the number of words
    between spaces in the whole caption (log-bucketed)."""
    frame = pl.DataFrame({"t": text.cast(pl.String).fill_null("")}).with_row_index("i")
    counts = frame.select("i", (pl.col("t").str.count_matches(" ", literal=True) + 1).alias("n"))
    toks = frame.select("i", pl.col("t").str.head(HEAD_CHARS).str.extract_all(TOKEN).list.head(MAX_TOKENS).alias("o"))
    ex = toks.explode("o", empty_as_null=True).filter(pl.col("o").is_not_null())
    ex = ex.with_columns(w=pl.col("o").str.to_lowercase())
    same = pl.col("i").shift(-1) == pl.col("i")
    words = ex.select("i", f="w:" + pl.col("w"))
    pairs = ex.select("i", f=pl.when(same).then("b:" + pl.col("w") + " " + pl.col("w").shift(-1))).drop_nulls()
    long = ex.filter(pl.col("w").str.len_chars() >= AFFIX_MIN)
    affixes = pl.concat([long.select("i", f="s:" + pl.col("w").str.tail(3)),
                         long.select("i", f="p:" + pl.col("w").str.head(4))])
    shapes = ex.filter(~pl.col("o").str.contains(r"^\p{Ll}+$")).select("i", f="sh:" + shape(pl.col("o")))
    size = counts.select("i", f=pl.format("n:{}", (pl.col("n").clip(0, 400) + 1).log(2).floor().cast(pl.Int32)))
    return pl.concat([words, pairs, affixes, shapes, size])


#: Feature kinds, in the order of their prefixes; a feature's key is a 64-bit mix of its
#: kind and the hashes of its strings (:func:`feature_keys`).
KINDS = ("w", "b", "s", "p", "sh", "n")
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


def feature_keys(text: pl.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The features of :func:`features` as 64-bit keys, computed from one hash per token:
    (caption row of each key, the keys, the number of features of each caption). The keys
    are only compared with keys made in the same process (:func:`key_table`), so Polars'
    hash need not be stable across versions."""
    n = len(text)
    frame = pl.DataFrame({"t": text.cast(pl.String).fill_null("")})
    spaced = pl.col("t").str.count_matches(" ", literal=True) + 1
    size = frame.select((spaced.clip(0, 400) + 1).log(2).floor().cast(pl.Int32)).to_series()
    ex = (frame.select(pl.col("t").str.head(HEAD_CHARS).str.extract_all(TOKEN).list.head(MAX_TOKENS).alias("o"))
          .with_row_index("i").explode("o", empty_as_null=True))
    ex = ex.filter(pl.col("o").is_not_null()).with_columns(w=pl.col("o").str.to_lowercase())
    i = ex["i"].to_numpy()
    hw = _h(ex["w"])
    m = len(i)
    same = np.zeros(m, dtype=bool)
    same[:-1] = i[1:] == i[:-1]
    # a token's shape (not for an all-lower-case word): itself for a punctuation mark or
    # symbol (its hash is the word's), the regular expressions for the rest only
    kind = ex.select(plain=pl.col("o").str.contains(r"^\p{Ll}+$"), mark=~pl.col("o").str.contains(r"[\p{L}\p{N}]"))
    plain, mark = kind["plain"].to_numpy(), kind["mark"].to_numpy()
    shaped = ~plain
    shapes = hw[shaped].copy()
    rest = ~(plain | mark)
    # shapes of the distinct tokens only ("The", "2", "New" recur), joined back
    todo = ex["o"].filter(pl.Series(rest)).to_frame()
    uniq = todo.unique().with_columns(h=shape(pl.col("o")).hash(seed=_SEED))
    shapes[rest[shaped]] = todo.join(uniq, on="o", how="left", maintain_order="left")["h"].to_numpy()
    long = ex.filter(pl.col("w").str.len_chars() >= AFFIX_MIN)
    li = long["i"].to_numpy()
    pair = same[:-1]
    rows = [i, i[:-1][pair], li, li, i[shaped], np.arange(n)]
    keys = [
        _mix(hw, _kind("w", m)),
        _mix(hw[:-1][pair], hw[1:][pair], _kind("b", int(pair.sum()))),
        _mix(_h(long["w"].str.tail(3)), _kind("s", len(li))),
        _mix(_h(long["w"].str.head(4)), _kind("p", len(li))),
        _mix(shapes, _kind("sh", len(shapes))),
        _mix(size.cast(pl.UInt64).to_numpy(), _kind("n", n)),
    ]
    rows_all = np.concatenate(rows)
    return rows_all, np.concatenate(keys), np.bincount(rows_all, minlength=n)


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
    return key_table(table.filter(pl.col("f") != BIAS)), float(bias[0]), meta


def model_stamp(folder: Path) -> tuple:
    return tuple((n, (folder / n).stat().st_size, (folder / n).stat().st_mtime_ns)
                 for n in (WEIGHTS, META) if (folder / n).is_file())


def predict(text: pl.Series, table: pl.DataFrame, bias: float) -> np.ndarray:
    """P(keep) per caption: the logistic function of the summed weights of its features
    (joined by key with :func:`key_table`; an unseen one weighs 0), divided by the square
    root of its number of features (as in training)."""
    rows, found, k = feature_keys(text)
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
    cleaned caption, from its lower-cased words, word pairs, the first
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
