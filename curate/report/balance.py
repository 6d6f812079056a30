"""The balance of a mixture or a run, as tables: the head/tail curve of concept counts
before and after balancing, per source, and the commonest openings per source with
distinct-n.

* **Concept curve**: for each source, the entry counts (rows matching an entry) sorted from
  the commonest, read at ranks 1, 2, 5, 10, 20, ...; before is the pool the balance drew
  from (eligible rows after the caps), after is the mixture. ``tail_share`` is MetaCLIP's
  share of matches that fall on tail entries: entries matched by fewer than ``per_concept``
  rows of the pool (summed over all sources), weighted by count.
* **Openings**: the 20 commonest first-three-word openings of ``caption_clean`` per source
  (the input file for a run, the recipe source for a mixture), the number of distinct
  openings, and distinct-1 and distinct-2 (distinct words and word pairs over all words and
  pairs of the source's captions; Li et al. 2016).
"""
from __future__ import annotations

from pathlib import Path

from curate.audit.lookup import mixture_recipe, sandboxed
from curate.db import sql_str
from curate.layout import MANIFEST, MANIFEST_JSON, load_run, pinned_run, scores_glob
from curate.mix.balance_sql import opening_sql, text_of
from curate.mix.manifest import load_mixture
from curate.mix.sql import render_sql
from curate.storage.commit import reading_copy
from curate.storage.fs import exists, is_url, join

RANKS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000, 100_000)
OPENINGS = 20
WORDS = "regexp_extract_all(lower(coalesce({t}, '')), '[\\p{{L}}\\p{{N}}]+')"


def _curve(counts: list[int]) -> list[dict]:
    counts = sorted(counts, reverse=True)
    return [{"rank": k, "count": counts[k - 1]} for k in RANKS if k <= len(counts)]


def _side(rows: list[tuple], tail: set) -> dict:
    """rows: (run, entry, count) -> per run: entries, curve, tail share."""
    per: dict[str, dict] = {}
    for run, entry, n in rows:
        d = per.setdefault(run, {"counts": [], "tail": 0, "total": 0})
        d["counts"].append(int(n))
        d["total"] += int(n)
        d["tail"] += int(n) if entry in tail else 0
    return {run: {"entries": len(d["counts"]), "matches": d["total"], "curve": _curve(d["counts"]),
                  "tail_share": round(d["tail"] / d["total"], 6) if d["total"] else None}
            for run, d in per.items()}


def readable(target: str | Path) -> tuple[Path | str, bool]:
    """``(where to read, is a mixture)`` for a run or mixture folder, or its URL on a store:
    a mixture on a store as a local copy of its current version, a run on a store as the
    URL of its current version."""
    if not is_url(target):
        return Path(target), (Path(target) / MANIFEST_JSON).is_file()
    version = pinned_run(target)
    if exists(join(version, MANIFEST_JSON)):
        return reading_copy(str(target)), True
    return version, False


def concept_curves(mix: str | Path) -> dict:
    """Per source of a balanced mixture: its concept curve before and after balancing."""
    mix = readable(mix)[0]
    load_mixture(mix)
    con = sandboxed([mix])
    try:
        recipe, runs = mixture_recipe(mix, con)
        t = recipe.balance.per_concept
        if t is None:
            return {}
        sql = render_sql(recipe, runs, upto="concept_pairs")
        before = con.execute(f"SELECT run, concept_vocab || ':' || entry AS e, count(*) FROM ({sql}) GROUP BY ALL").fetchall()
        totals: dict[str, int] = {}
        for _, e, n in before:
            totals[e] = totals.get(e, 0) + int(n)
        tail = {e for e, n in totals.items() if n < t}
        m = f"read_parquet({sql_str(str(mix / MANIFEST))})"
        after = con.execute(
            f"SELECT run, concept_vocab || ':' || e, count(*) FROM (SELECT run, concept_vocab, unnest(concepts) AS e "
            f"FROM {m}) GROUP BY ALL"
        ).fetchall()
    finally:
        con.close()
    b, a = _side(before, tail), _side(after, tail)
    return {"per_concept": t, "tail_entries": len(tail), "entries": len(totals),
            "sources": {name: {"before": b.get(name), "after": a.get(name)} for name in [r.name for r in runs]}}


def _openings(con, relation: str, text: str, group: str) -> dict:
    top = con.execute(
        f"SELECT g, o, n, d FROM (SELECT g, o, n, count(*) OVER (PARTITION BY g) AS d, "
        f"row_number() OVER (PARTITION BY g ORDER BY n DESC, o) AS k FROM ("
        f"SELECT {group} AS g, {opening_sql(text)} AS o, count(*) AS n FROM {relation} GROUP BY ALL) WHERE o IS NOT NULL) "
        f"WHERE k <= {OPENINGS} ORDER BY g, n DESC, o"
    ).fetchall()
    words = WORDS.format(t=text)
    dist = con.execute(
        f"WITH w AS (SELECT {group} AS g, {words} AS t FROM {relation}), "
        "one AS (SELECT g, unnest(t) AS x FROM w), "
        "two AS (SELECT g, unnest(list_transform(range(1, len(t)), lambda i: t[i] || ' ' || t[i + 1])) AS x FROM w) "
        "SELECT g, 1, count(DISTINCT x), count(*) FROM one GROUP BY g "
        "UNION ALL SELECT g, 2, count(DISTINCT x), count(*) FROM two GROUP BY g"
    ).fetchall()
    rows = dict(con.execute(f"SELECT {group}, count(*) FROM {relation} GROUP BY ALL").fetchall())
    out: dict[str, dict] = {g: {"rows": int(n), "openings": [], "distinct_openings": 0} for g, n in rows.items()}
    for g, o, n, d in top:
        out[g]["openings"].append({"opening": o, "rows": int(n), "share": round(n / rows[g], 6)})
        out[g]["distinct_openings"] = int(d)
    for g, n, distinct, total in dist:
        out[g][f"distinct_{n}"] = round(distinct / total, 6) if total else None
    return out


def openings(target: str | Path) -> dict:
    """Per source of a run (input file) or of a mixture (recipe source): the commonest
    openings, how many distinct openings, distinct-1 and distinct-2."""
    target, is_mix = readable(target)
    if is_mix:
        load_mixture(target)
        con = sandboxed([target])
        try:
            return _openings(con, f"read_parquet({sql_str(str(target / MANIFEST))}) AS s", "s.caption_clean", "s.run")
        finally:
            con.close()
    load_run(target)
    con = sandboxed([], [target])
    try:
        cols = {r[0]: r[1] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_str(scores_glob(target))})").fetchall()}
        return _openings(con, f"read_parquet({sql_str(scores_glob(target))}) AS s", text_of(cols), "s.source")
    finally:
        con.close()
