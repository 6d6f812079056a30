"""Plumbing shared by the filters: parameter checking and the batch contract.

A filter is one small class (DESIGN convention 1): ``name``, ``version``, ``params`` (the
defaults), ``default_min``/``default_max`` (the thresholds a chain gets when it names
none), a docstring that states the rule, its unit and its source, and ``score(batch)``,
which takes a batch with the normalised text in ``_text`` and returns new columns of the
same height, at least ``score__<id>``. Nothing else is inherited.
"""
from __future__ import annotations

from typing import Any, ClassVar

import polars as pl

from curate.errors import CurateError

TEXT = "_text"


class Filter:
    name: ClassVar[str]
    version: ClassVar[int]
    params: ClassVar[dict[str, Any]] = {}
    choices: ClassVar[dict[str, tuple]] = {}
    default_min: ClassVar[float | None] = None
    default_max: ClassVar[float | None] = None
    #: a categorical output column that ``allow``/``deny`` lists in a chain act on
    label: ClassVar[str | None] = None
    #: True for filters whose score is computed by another command (``curate dedup``)
    external: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        resolved = dict(self.params)
        for key, value in params.items():
            if key not in self.params:
                valid = ", ".join(sorted(self.params)) or "(none)"
                raise CurateError(
                    f"filter {self.name!r} has no parameter {key!r}; valid parameters: {valid}"
                )
            resolved[key] = _check_value(self.name, key, value, self.params[key], self.choices.get(key))
        self.p = resolved

    def thresholds(self) -> tuple[float | None, float | None]:
        """The (min, max) a chain gets when it names none."""
        return self.default_min, self.default_max

    def label_error(self, values: list[str]) -> str | None:
        """Why some ``allow``/``deny`` values can never be in the label column (None: they can)."""
        return None

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}"

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:  # pragma: no cover
        raise NotImplementedError


def _check_value(filt: str, key: str, value: Any, default: Any, choices: tuple | None) -> Any:
    want = type(default)
    ok = isinstance(value, want) and not (want is int and isinstance(value, bool))
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if want is list and isinstance(value, list):
        ok = all(isinstance(v, str) for v in value)
    if not ok:
        raise CurateError(
            f"filter {filt!r} parameter {key!r} must be {want.__name__}, got {value!r}"
        )
    if choices is not None and value not in choices:
        raise CurateError(
            f"filter {filt!r} parameter {key!r} must be one of {', '.join(map(str, choices))}; got {value!r}"
        )
    return value


# Scripts written without spaces between words.
CJK = r"\p{Han}\p{Hiragana}\p{Katakana}"
WORD = r"[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*"


def word_count(text: pl.Expr) -> pl.Expr:
    """Words in a caption: letter/digit runs, plus one word per two Han/kana characters.

    Chinese and Japanese are written without spaces; their average word is about 1.5 to 2
    characters long, so two CJK characters count as one word.
    """
    cjk = text.str.count_matches(f"[{CJK}]")
    other = text.str.replace_all(f"[{CJK}]+", " ").str.count_matches(WORD)
    return (other + cjk / 2).cast(pl.Float64)
