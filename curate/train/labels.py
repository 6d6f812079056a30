"""Labelled captions for ``curate train``: read them, turn the label column into positive /
negative, fingerprint them, and split them into a training and a held-out part.

Inputs are label files in any format curate reads (a caption column and a label column),
or scored runs joined with label files by ``sample_id`` (then the label files need only
``sample_id`` and the label column). Rows whose label is null or blank are unlabelled and
left out (``curate sample`` writes such a file, with an empty ``label`` column), and so are
rows whose label is NaN (a float column with gaps); ``metrics.json`` counts them.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.hashing import key64, splitmix64, text_hash64
from curate.ingest.inputs import inspect_input, resolve_inputs
from curate.ingest.readers import read_batches
from curate.layout import RUN_JSON, STATE, load_run, pinned_scores_glob, pinned_store, read_store_json
from curate.scoring.frame import normalised
from curate.storage.fs import is_url, join

MIN_ROWS = 20
#: label values read as "yes" and "no" when --positive is not given
TRUE_WORDS, FALSE_WORDS = ("1", "1.0", "true", "yes", "y", "good", "positive", "pos"), \
    ("0", "0.0", "false", "no", "n", "bad", "negative", "neg")


@dataclass
class Labels:
    frame: pl.DataFrame  # caption, text (normalised), y (bool), key (UInt64: what the split hashes)
    positive: str
    negatives: list[str]
    inputs: list[str]
    fingerprint: str
    unlabelled: int = 0  # rows left out: a null, blank or NaN label

    @property
    def rows(self) -> int:
        return self.frame.height


def is_run(spec: str) -> bool:
    if is_url(spec):  # a run on a store: its current version holds run.json
        return read_store_json(join(pinned_store(spec), RUN_JSON)) is not None
    p = Path(spec)
    return p.is_dir() and ((p / RUN_JSON).is_file() or (p / STATE).exists())


def _read(specs: list[str], caption: str, label: str, group: str | None, by_id: bool) -> pl.DataFrame:
    """Every label file's rows: ``caption`` (or ``sample_id`` with ``by_id``), ``label``, ``group``."""
    frames = []
    for inp in resolve_inputs(specs):
        inspect_input(inp)
        first = "sample_id" if by_id else caption
        for name in (first, label) + ((group,) if group and not by_id else ()):
            if name not in inp.columns:
                hint = " (a label file joined with a run needs sample_id)" if name == "sample_id" else ""
                raise CurateError(f"{inp.path}: no column {name!r}{hint}; columns are: {', '.join(inp.columns) or '(none)'}")
        carry = [label] + ([group] if group and group in inp.columns else [])
        for b in read_batches(inp, first, None, [c for c in carry if c != first], 100_000):
            b = b.rename({"caption": first}) if by_id else b
            if group and group not in b.columns:
                b = b.with_columns(pl.lit(None, pl.String).alias(group))
            frames.append(b.select(first, pl.col(label).alias("label"),
                                   *([pl.col(group).cast(pl.String).alias("group")] if group else [])))
    if not frames:
        raise CurateError("the label files hold no rows")
    return pl.concat(frames, how="vertical_relaxed")


def _join_runs(runs: list[str], lab: pl.DataFrame, group: str | None) -> pl.DataFrame:
    ids = lab["sample_id"].cast(pl.UInt64, strict=False)
    if ids.null_count() > lab["sample_id"].null_count():
        raise CurateError("the label files' sample_id column holds values that are not sample ids (integers)")
    lab = lab.with_columns(ids.alias("sample_id"))
    parts = []
    for run in runs:
        load_run(run)  # a one-line error for an unfinished run
        lf = pl.scan_parquet(pinned_scores_glob(run))
        cols = lf.collect_schema().names()
        want = ["sample_id", "caption"] + ([group] if group and group in cols else [])
        parts.append(lf.select(want).join(lab.lazy().select("sample_id").unique(), on="sample_id", how="semi"))
    found = pl.concat([p.collect() for p in parts], how="diagonal_relaxed").unique("sample_id", keep="first")
    out = lab.join(found, on="sample_id", how="inner", suffix="_run")
    if out.height == 0:
        raise CurateError(f"no sample_id of the label files is in {', '.join(runs)}")
    if group:
        run_group = pl.col(group).cast(pl.String) if group in out.columns else pl.lit(None, pl.String)
        out = out.with_columns(pl.coalesce(pl.col("group"), run_group).alias("group")) if "group" in out.columns \
            else out.with_columns(run_group.alias("group"))
    return out


def _values(lab: pl.Series) -> list[str]:
    vals = lab.cast(pl.String).unique().sort().to_list()
    return vals


def binarise(lab: pl.Series, positive: str | None, column: str) -> tuple[pl.Series, str, list[str]]:
    """The label column as booleans (True = positive), the positive value, the others."""
    vals = _values(lab)
    shown = ", ".join(repr(v) for v in vals[:10]) + (f", ... ({len(vals)} values)" if len(vals) > 10 else "")
    if len(vals) < 2:
        raise CurateError(f"label column {column!r} has one value only ({shown}); label captions of both kinds")
    if positive is None:
        if lab.dtype == pl.Boolean:
            positive = "true"
        else:
            low = [v.lower() for v in vals]
            yes = [v for v, lv in zip(vals, low) if lv in TRUE_WORDS]
            if len(vals) != 2 or len(yes) != 1 or not all(lv in TRUE_WORDS + FALSE_WORDS for lv in low):
                raise CurateError(f"label column {column!r} has values {shown}; name the positive one with --positive")
            positive = yes[0]
    text = lab.cast(pl.String)
    y = text == positive
    if lab.dtype.is_numeric():
        try:
            y = lab.cast(pl.Float64) == float(positive)
        except ValueError:
            pass
    if not y.any():
        raise CurateError(f"--positive {positive!r} is not a value of label column {column!r} (values: {shown})")
    negatives = sorted(set(text.filter(~y).unique().to_list()))
    return y.alias("y"), positive, negatives


def read_labels(specs: list[str], label: str, positive: str | None = None, caption: str = "caption",
                group: str | None = None) -> Labels:
    """Labelled rows from label files, or from runs joined with label files by sample_id."""
    runs = [s for s in specs if is_run(s)]
    files = [s for s in specs if not is_run(s)]
    if not files:
        raise CurateError("no label file given (a run needs a label file with sample_id and the label column)")
    lab = _read(files, caption, label, group, by_id=bool(runs))
    if runs:
        lab = _join_runs(runs, lab, group)
    blank = pl.col("label").is_null()
    if lab.schema["label"] == pl.String:
        blank = blank | pl.col("label").str.strip_chars().str.to_lowercase().is_in(["", "nan"])
    elif lab.schema["label"].is_float():
        blank = blank | pl.col("label").is_nan()
    read = lab.height
    lab = lab.filter(~blank)
    if lab.height < MIN_ROWS:
        raise CurateError(f"{lab.height} labelled rows in column {label!r}; curate train needs at least {MIN_ROWS}")
    y, pos, neg = binarise(lab["label"], positive, label)
    text = normalised(lab["caption"])
    key_src = lab["group"].fill_null(text) if group else text  # no group value: the caption's own
    frame = pl.DataFrame({"caption": lab["caption"].cast(pl.String), "text": text, "y": y,
                          "key": text_hash64(key_src)})
    return Labels(frame, pos, neg, files + runs, fingerprint(frame), unlabelled=read - lab.height)


def fingerprint(frame: pl.DataFrame) -> str:
    """Hash of the (caption, label) pairs, whatever their order: same labels, same print."""
    h = text_hash64(frame["text"]).to_numpy() ^ frame["y"].cast(pl.UInt64).to_numpy()
    pairs = np.sort(splitmix64(h))
    return hashlib.blake2b(pairs.tobytes(), digest_size=16).hexdigest()


def holdout_mask(keys: pl.Series, fraction: float, seed: int) -> np.ndarray:
    """True for the held-out rows: a hash of the split key (group or caption) and the seed,
    so the same group (the same image) is never on both sides."""
    u = splitmix64(keys.to_numpy() ^ key64(f"holdout:{seed}"))
    return (u >> np.uint64(11)).astype(np.float64) / float(1 << 53) < fraction


def training_order(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    """The rows in a fixed order that depends on the labels and the seed, not the input order."""
    k = splitmix64(text_hash64(frame["text"]).to_numpy() ^ key64(f"order:{seed}"))
    return frame.with_columns(_o=pl.Series(k, dtype=pl.UInt64)).sort("_o", "y", "text").drop("_o")
