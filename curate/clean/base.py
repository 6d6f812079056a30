"""Plumbing shared by the cleaning transforms: parameter checking and the batch contract.

A transform is one small class, like a filter (DESIGN conventions 1 and 16): ``name``,
``version`` (bumped when what it does to a caption changes), ``params`` (the defaults), a
docstring that states the rule with before/after examples, and ``apply(text)``, which takes
a whole column of captions (String, no nulls) and returns the column cleaned, same height.
A transform touches only the rows its columnar screen selects; every other row is returned
as it was, byte for byte.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import polars as pl

from curate.errors import CurateError


class Transform:
    name: ClassVar[str]
    version: ClassVar[int]
    params: ClassVar[dict[str, Any]] = {}

    def __init__(self, **params: Any) -> None:
        resolved = dict(self.params)
        for key, value in params.items():
            if key not in self.params:
                valid = ", ".join(sorted(self.params)) or "(none)"
                raise CurateError(f"transform {self.name!r} has no parameter {key!r}; valid parameters: {valid}")
            want = type(self.params[key])
            if want is list:
                ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
            else:
                ok = isinstance(value, want) and not (want is not bool and isinstance(value, bool))
            if not ok:
                raise CurateError(f"transform {self.name!r} parameter {key!r} must be {want.__name__}, got {value!r}")
            resolved[key] = value
        self.p = resolved

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "params": dict(self.p)}

    def apply(self, text: pl.Series) -> pl.Series:  # pragma: no cover
        raise NotImplementedError


def on_rows(text: pl.Series, mask: pl.Series, fix: Callable[[pl.Series], pl.Series]) -> pl.Series:
    """``fix`` applied to the rows of ``text`` where ``mask`` holds; the others untouched."""
    idx = mask.fill_null(False).arg_true()
    if len(idx) == 0:
        return text
    sub = text.gather(idx)
    done = fix(sub)
    moved = (done != sub).fill_null(True)
    if not moved.any():
        return text  # screened but nothing to repair: the column is returned as it was
    return text.clone().scatter(idx.filter(moved), done.filter(moved))


def expr_on(text: pl.Series, expr: pl.Expr) -> pl.Series:
    """One Polars expression over ``pl.col("t")`` evaluated on a column."""
    return text.to_frame("t").select(expr.alias("t")).to_series().alias(text.name)


def capitalise_like(before: pl.Series, after: pl.Series) -> pl.Series:
    """After an opener is cut off: when ``before`` began with a capital letter and the new
    first word is all lower case ("a", "two"), its first letter becomes a capital
    ("The image shows a cat" -> "A cat"). "iPhone" or "eBay" keep their case."""
    frame = pl.DataFrame({"b": before, "a": after})
    first_word = pl.col("a").str.extract(r"^(\p{L}+)", 1)
    up = pl.col("b").str.contains(r"^[^\p{L}]*\p{Lu}") & (first_word == first_word.str.to_lowercase())
    return frame.select(
        pl.when(up.fill_null(False))
        .then(pl.col("a").str.head(1).str.to_uppercase() + pl.col("a").str.slice(1))
        .otherwise(pl.col("a"))
    ).to_series().alias(after.name)


def keep_if_emptied(before: pl.Series, after: pl.Series) -> pl.Series:
    """``after``, except where it lost every letter that ``before`` had: there ``before``
    (a transform never empties a caption that had letters)."""
    frame = pl.DataFrame({"b": before, "a": after})
    lost = ~pl.col("a").str.contains(r"\p{L}") & pl.col("b").str.contains(r"\p{L}")
    return frame.select(pl.when(lost).then("b").otherwise("a")).to_series().alias(after.name)
