"""A chain's ``[[clean]]`` tables, and applying them in order to a column of captions.

In a chain file, before the filters::

    [[clean]]
    name = "unicode"          # a key of curate.clean.TRANSFORMS

    [[clean]]
    name = "preamble"
    params = {}               # optional

The transforms run in the order given, on every batch, before the filters: the filters
score ``caption_clean`` and ``caption`` is stored as read. ``clean_ops`` lists the
transforms that changed a row, in chain order.
"""
from __future__ import annotations

from typing import Any

import polars as pl

from curate.clean.affixes import Affixes
from curate.clean.base import Transform
from curate.clean.boilerplate import Boilerplate
from curate.clean.model import Markdown, Preamble
from curate.clean.text import Html, Unicode, Urls, Whitespace
from curate.config import recipe_entry
from curate.errors import CurateError

TRANSFORMS: dict[str, type[Transform]] = {
    "unicode": Unicode,
    "html": Html,
    "urls": Urls,
    "boilerplate": Boilerplate,
    "affixes": Affixes,
    "markdown": Markdown,
    "preamble": Preamble,
    "whitespace": Whitespace,
}
CLEAN_KEYS = ("name", "version", "params")
CLEAN = "caption_clean"
OPS = "clean_ops"
#: A row that a pass changed is cleaned again, at most this many passes in all, so that
#: cleaning ``caption_clean`` once more changes nothing (one transform can uncover work
#: for an earlier one: markdown "**The image shows** a cat" needs preamble after it).
PASSES = 3


def parse_clean(entries: Any, where: str) -> list[Transform]:
    """The ``[[clean]]`` tables of a chain, validated (one-line errors listing the options).

    ``version``, when given (a run's recorded chain), must be this curate's version of the
    transform: what a transform does is fixed by its version."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise CurateError(f"{where}: clean must be a list of [[clean]] tables")
    out: list[Transform] = []
    for i, entry in enumerate(entries, 1):
        at = f"{where}: clean #{i}"
        name, params = recipe_entry(entry, at, CLEAN_KEYS, TRANSFORMS, "transform")
        try:
            t = TRANSFORMS[name](**params)
        except CurateError as e:
            raise CurateError(f"{at}: {e}") from None
        if "version" in entry and entry["version"] != t.version:
            raise CurateError(f"{at} ({name}): version {entry['version']!r} was recorded; this curate has "
                              f"{t.ident}; re-score to clean with it")
        if any(o.name == name for o in out):
            raise CurateError(f"{at}: transform {name!r} is listed twice")
        out.append(t)
    return out


def clean_toml(transforms: list[Transform]) -> list[str]:
    """TOML lines for the ``[[clean]]`` tables (``Chain.to_toml``)."""
    import json

    lines: list[str] = []
    for t in transforms:
        lines += ["", "[[clean]]", f"name = {json.dumps(t.name)}"]
        if t.p:
            inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in t.p.items())
            lines.append(f"params = {{ {inner} }}")
    return lines


def clean_captions(caption: pl.Series, transforms: list[Transform]) -> tuple[pl.Series, pl.Series]:
    """(``caption_clean``, ``clean_ops``) of a column of captions.

    Null captions stay null and get no ops. Rows no transform changes are the same strings.
    A row that a pass changed goes through the transforms again (at most :data:`PASSES`).
    """
    raw = caption.cast(pl.String)
    n = len(raw)
    text = raw.fill_null("")
    changed = [pl.select(pl.repeat(False, n, dtype=pl.Boolean)).to_series().alias(t.name) for t in transforms]
    rows = pl.select(pl.int_range(n, dtype=pl.UInt32)).to_series()
    todo = text
    for _ in range(PASSES if transforms else 0):
        start = todo
        for k, t in enumerate(transforms):
            new = t.apply(todo)
            diff = (new != todo).fill_null(False)
            if diff.any():
                changed[k] = changed[k].scatter(rows.filter(diff), True)
            todo = new
        moved = (todo != start).fill_null(False)
        text = todo if rows.len() == n else text.scatter(rows, todo)
        rows, todo = rows.filter(moved), todo.filter(moved)
        if rows.len() == 0:
            break
    clean = text.scatter(raw.is_null().arg_true(), None) if raw.null_count() else text
    return clean.alias(CLEAN), _ops(changed, n)


def _ops(changed: list[pl.Series], n: int) -> pl.Series:
    """The list column of transform names per row, built from Arrow offsets (a list per
    row made by Polars expressions costs more than the cleaning itself)."""
    import numpy as np
    import pyarrow as pa

    if not changed:
        counts = np.zeros(n, dtype=np.int32)
        values = pa.array([], pa.string())
    else:
        frame = pl.DataFrame(changed)
        counts = frame.select(pl.sum_horizontal(pl.all().cast(pl.Int32))).to_series().to_numpy()
        hit = frame.filter(pl.any_horizontal(pl.all()))
        names = hit.select(pl.concat_list([pl.when(pl.col(c.name)).then(pl.lit(c.name)) for c in changed])
                           .list.drop_nulls().explode()).to_series()
        values = names.to_arrow()
    offsets = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    # (from a buffer: pa.array() would import pandas, a quarter of a second per process)
    arr = pa.ListArray.from_arrays(pa.Array.from_buffers(pa.int32(), n + 1, [None, pa.py_buffer(offsets)]), values)
    return pl.Series(OPS, pl.from_arrow(arr), pl.List(pl.String))
