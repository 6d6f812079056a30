"""The carried columns of a mixture: one name and one type per column across its sources.

DuckDB matches column names without regard to case, so ``URL`` (a LAION Parquet) and
``url`` (img2dataset shards) are one column to it: read from two runs under their own
spellings they would collide. The rule:

* the image links and image facts that ``curate score`` names in lower case
  (:data:`curate.ingest.carry.CANONICAL`: ``url``, ``image_id``, ``key``, ``width``,
  ``similarity``, ...), in any case, have their lower-case name in the manifest: a run's
  ``URL`` is the mixture's ``url``;
* any other two carried names that differ only in case, in one run or across runs, are a
  one-line error naming both sources;
* a column keeps its type: the same type in every run stays that type, integers of several
  widths become BIGINT, numbers of several kinds DOUBLE; otherwise the column is carried
  as text and the mixture says which runs disagree (a note in ``manifest.json``).
"""
from __future__ import annotations

from curate.errors import CurateError
from curate.ingest.carry import run_name

INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT")
FLOATS = ("FLOAT", "DOUBLE")


def canonical(name: str) -> str:
    """A carried column's name in the mixture: the name a run scored today would give it
    (:func:`curate.ingest.carry.run_name`), so older runs mix with newer ones."""
    return run_name(name)


def carried_names(runs) -> None:
    """Set each run's ``names`` (mixture name -> the run's column), or raise a one-line
    error for two names that differ only in case."""
    seen: dict[str, tuple[str, str]] = {}  # lower-case name -> (mixture name, source)
    for r in runs:
        names: dict[str, str] = {}
        for c in r.info.get("carried_columns", []):
            if c not in r.columns:
                continue
            name = canonical(c)
            if name in names:
                raise CurateError(f"source {r.name!r}: carried columns {names[name]!r} and {c!r} are one column "
                                  f"{name!r} in a mixture; carry only one of them (curate score --carry)")
            other = seen.get(name.lower())
            if other is not None and other[0] != name:
                raise CurateError(
                    f"column {other[0]!r} of source {other[1]!r} and column {name!r} of source {r.name!r} "
                    "differ only in case, and SQL reads them as one column; rename one of them in its input "
                    "and score it again"
                )
            seen.setdefault(name.lower(), (name, r.name))
            names[name] = c
        r.names = names


def column_types(columns: list[str], runs) -> tuple[dict[str, str], list[str]]:
    """(mixture column -> DuckDB type, notes) for the carried ``columns``."""
    types: dict[str, str] = {}
    notes: list[str] = []
    for c in columns:
        have = {r.name: r.columns[r.names[c]] for r in runs if c in r.names}
        kinds = set(have.values())
        if not kinds:  # not a carried column (id, lang, a group_by column): text, as before
            continue
        if len(kinds) == 1:
            types[c] = kinds.pop()
        elif kinds <= set(INTEGERS):
            types[c] = "BIGINT"
        elif kinds <= set(INTEGERS + FLOATS) or all(k.startswith("DECIMAL") or k in INTEGERS + FLOATS for k in kinds):
            types[c] = "DOUBLE"
        else:
            types[c] = "VARCHAR"
            by = "; ".join(f"{t} in {', '.join(n for n, tt in have.items() if tt == t)}" for t in sorted(kinds))
            notes.append(f"carried column {c!r} has different types ({by}); the manifest holds it as text")
    return types, notes
