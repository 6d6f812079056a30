"""What a recipe's ``[balance]`` table did, read from the manifest (DESIGN convention 9):
the length bins reached, the commonest opening, the concept entries covered. The pool's
concept counts before balancing come from the query itself (:func:`pool_counts`).
"""
from __future__ import annotations

from pathlib import Path

from curate.db import sql_str
from curate.layout import concepts_json_path, read_json
from curate.mix.balance_sql import quota_units
from curate.mix.recipe import Recipe
from curate.mix.sql import render_sql

TOP = 10


def balance_problem(con, manifest: Path, recipe: Recipe, runs) -> str | None:
    """A length bin of a source with fewer eligible rows than its part of the quota (with
    ``per_concept``, quotas are ceilings: a bin short after the balance is no error)."""
    if not recipe.balance.bins or recipe.balance.per_concept is not None:
        return None
    m = f"read_parquet({sql_str(str(manifest))})"
    got = {(r, b): int(n) for r, b, n in con.execute(f"SELECT run, length_bin, sum(repeat) FROM {m} GROUP BY ALL").fetchall()}
    for r, _, cond, q in quota_units(recipe, runs):
        label = cond.rsplit("length_bin = ", 1)[1].strip("'")
        n = got.get((r.name, label), 0)
        if n < q:
            return (f"source {r.name!r}: length bin {label!r} needs {q:,} rows of its quota but only {n:,} are eligible "
                    f"after the caps and the balance; lower that bin's share, the size, or set repeat on the source")
    return None


def pool_counts(con, recipe: Recipe, runs) -> list[tuple]:
    """(concept_vocab, entry, entry_count, entry_p) over the rows the balance draws from."""
    sql = render_sql(recipe, runs, upto="concept_counts")
    return con.execute(f"SELECT concept_vocab, entry, entry_count, entry_p FROM ({sql}) "
                       "ORDER BY entry_count DESC, concept_vocab, entry").fetchall()


def balance_stats(con, manifest: Path, recipe: Recipe, runs) -> dict:
    bal, out = recipe.balance, {}
    m = f"read_parquet({sql_str(str(manifest))})"
    total = con.execute(f"SELECT sum(repeat) FROM {m}").fetchone()[0] or 0
    if bal.bins:
        rows = dict(con.execute(f"SELECT length_bin, sum(repeat) FROM {m} GROUP BY ALL").fetchall())
        out["length_mix"] = {b.label: {"target": round(float(b.share), 6), "rows": int(rows.get(b.label, 0)),
                                       "share": round(int(rows.get(b.label, 0)) / total, 6) if total else None}
                             for b in bal.bins}
    if bal.max_per_opening is not None:
        top = con.execute(f"SELECT opening, count(*) AS n FROM {m} WHERE opening IS NOT NULL GROUP BY ALL "
                          f"ORDER BY n DESC, opening LIMIT {TOP}").fetchall()
        out["openings"] = {"max_per_opening": bal.max_per_opening,
                           "commonest": [{"opening": o, "samples": int(n)} for o, n in top]}
    if bal.per_concept is not None:
        counts = con.execute(
            f"SELECT e, count(*) AS n FROM (SELECT unnest(concepts) AS e FROM {m}) GROUP BY e ORDER BY n DESC, e"
        ).fetchall()
        taken = dict(con.execute(f"SELECT run, count(*) FROM {m} GROUP BY ALL").fetchall())
        unmatched = con.execute(f"SELECT count(*) FROM {m} WHERE coalesce(len(concepts), 0) = 0").fetchone()[0]
        out["concepts"] = {
            "per_concept": bal.per_concept, "unmatched": bal.unmatched,
            "rule": "p = min(1, per_concept / entry_count) per entry; a row stays when any entry draws it (MetaCLIP)",
            "entries_covered": len(counts), "unmatched_samples": int(unmatched),
            "commonest": [{"entry": e, "samples": int(n)} for e, n in counts[:TOP]],
            "vocabularies": {r.name: _vocab_sha(r.src.path) for r in runs},
            # quotas are ceilings: a source takes at most its quota of the rows the balance keeps
            "quotas": {r.name: {"quota": recipe.quotas[r.name], "rows": int(taken.get(r.name, 0))} for r in runs},
        }
    return out


def _vocab_sha(run: Path) -> str | None:
    return (read_json(concepts_json_path(run)).get("vocabulary_source") or {}).get("sha256")
