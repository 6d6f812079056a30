"""The input columns a run carries into its outputs: which, under which name, of which type.

Names: a carried column whose name, lower-cased, is in :data:`CANONICAL` (the image links and
image facts that LAION Parquet, img2dataset and WebDataset shards spell in different cases:
``URL``/``url``, ``WIDTH``/``width``, ``SIMILARITY``/``similarity``) is carried under its
lower-case name, so ``URL`` from a LAION Parquet file and ``url`` from an img2dataset shard
are one column ``url``. Any other two carried columns whose names differ only in case are an
error, one line naming both: SQL (the mixtures are DuckDB queries) reads them as one column.

Types: a carried column keeps a number or boolean type (Int64, UInt64, Float64, Boolean)
where every input that has it declares or holds that type (Parquet and Arrow declare theirs,
a WebDataset shard's ``.json`` fields have their JSON types); Int64 and Float64 together are
Float64; inputs where the column is all null do not count. Otherwise it is carried as text.
"""
from __future__ import annotations

import polars as pl

from curate.errors import CurateError
from curate.ingest import webdataset as wds
from curate.ingest.inputs import InputFile

#: Input columns carried into every output table when present, in any case (``URL``): a
#: trainer needs them to find the image; more can be named with ``carry``.
AUTO_CARRY = ("url", "image_url", "image_path", "image_id", "key", *wds.INDEX_COLUMNS[2:])
#: Carried under their lower-case names, whatever case an input spells them in.
CANONICAL = (*AUTO_CARRY, "width", "height", "original_width", "original_height", "similarity",
             "status", "error_message", "exif", "sha256", "md5", "license", "nsfw", "punsafe",
             "pwatermark", "aesthetic")
#: Polars types a carried column keeps (others are carried as text): ones DuckDB compares.
KEPT_TYPES = {"UInt64": pl.UInt64, "Int": pl.Int64, "UInt": pl.Int64, "Float": pl.Float64, "Boolean": pl.Boolean}


def run_name(column: str) -> str:
    """The name a carried input column has in the run: lower case for :data:`CANONICAL`."""
    return column.lower() if column.lower() in CANONICAL else column


def carried_columns(files: list[InputFile], carry: tuple[str, ...] | list[str], carry_all: bool,
                    taken: list[str]) -> list[str]:
    """The run's names of the input columns it carries: those named, the image links (``url``,
    ``URL``, ``key``, ... in any case, and a WebDataset's image index) and, with ``carry_all``,
    every other column that is not named like an output column (``taken``) and is not bytes.
    Sets each file's ``carry_names`` (run name -> the file's column)."""
    for c in carry:
        if not any(c in f.columns for f in files):
            raise CurateError(f"no input has a column {c!r} to carry")
    seen = list(dict.fromkeys(c for f in files for c in f.columns))
    auto = [c for c in seen if c.lower() in AUTO_CARRY and run_name(c) not in taken]
    chosen = list(dict.fromkeys([*carry, *auto]))
    if carry_all:
        binary = {c for f in files for c, t in f.dtypes.items() if "Binary" in t or "Object" in t}
        chosen += [c for c in seen if c not in chosen and run_name(c) not in taken and c not in binary]
    out: dict[str, tuple[str, str]] = {}  # lower-case name -> (run name, where it was first seen)
    for f in files:
        f.carry_names = {}
        for c in (c for c in chosen if c in f.columns):
            name = run_name(c)
            if name in f.carry_names:
                raise CurateError(f"{f.path}: columns {f.carry_names[name]!r} and {c!r} are both the "
                                  f"carried column {name!r} (its name in any case); drop one of them")
            first = out.setdefault(name.lower(), (name, f"{f.path}: {c!r}"))
            if first[0] != name:
                raise CurateError(f"carried columns {first[1]} and {f.path}: {c!r} differ only in case, "
                                  f"which SQL reads as one column; rename one of them")
            f.carry_names[name] = c
    return [name for name, _ in out.values()]


def set_carry_types(files: list[InputFile], carry: list[str]) -> None:
    """Each file's ``keep_types``: the number or boolean type each carried column keeps (see
    the module's docstring), so that every part of a run has the same column types."""
    kinds: dict[str, set] = {}
    for f in files:
        for c in carry:
            src = f.carry_names.get(c, c)
            if src in f.columns:
                t = f.dtypes.get(src, "String")
                if t != "Null":
                    kept = next((v for k, v in KEPT_TYPES.items() if t.startswith(k)), pl.String)
                    kinds.setdefault(c, set()).add(kept)
    for k in kinds.values():
        if k == {pl.Int64, pl.Float64}:
            k.discard(pl.Int64)
    keep = {c: str(next(iter(k))) for c, k in kinds.items() if len(k) == 1 and pl.String not in k}
    for f in files:
        f.keep_types = dict(keep)


def cast_carried(s: pl.Series, t: pl.DataType, path: str, start: int) -> pl.Series:
    """A carried column as the run's type ``t``; a value that does not convert exactly (text
    in a number column, 2.5 in an integer one) is a one-line error naming it and its row."""
    if s.dtype == t:
        return s
    out = s.cast(t, strict=False)
    lost = out.is_null() & s.is_not_null()
    if s.dtype.is_float() and t.is_integer():
        lost = lost | (out.cast(pl.Float64) != s).fill_null(False)
    if lost.any():
        i = int(lost.arg_max())
        raise CurateError(f"{path}: carried column {s.name!r} holds {s[i]!r} at row {start + i}, not a "
                          f"{t} value as in the rest of the run's inputs")
    return out
