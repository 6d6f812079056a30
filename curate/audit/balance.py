"""``curate explain`` for a recipe's ``[balance]`` table: the row's length bin, opening and
concept entries, and for each entry its count in the pool, its probability and the row's
draw; which entry drew the row, or why the balance left it out."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from curate.db import sql_str
from curate.layout import concepts_path
from curate.mix.balance_sql import concept_u, opening_sql, words_sql
from curate.mix.recipe import Recipe
from curate.mix.sql import render_sql, seed_key


def _where(r, row: dict) -> str:
    return (f"run = {sql_str(r.name)} AND sample_id = {int(row['sample_id'])}::UBIGINT "
            f"AND source = {sql_str(row['source'])} AND \"row\" = {int(row['row'])}")


def balance_status(con, recipe: Recipe, runs, r, row: dict) -> dict[str, Any]:
    """What the balance knows of one row of source ``r`` (a dict of its scores row)."""
    bal, out = recipe.balance, {}
    text = row.get("caption_clean", row.get("caption"))
    opening, words = con.execute(f"SELECT {opening_sql('x')}, {words_sql('x')} FROM (SELECT CAST(? AS VARCHAR) AS x)",
                                 [text]).fetchone()
    if bal.bins:
        label = next((b.label for b in bal.bins if words >= b.lo and (b.hi is None or words <= b.hi)), None)
        out["length"] = {"words": words, "bin": label}
    if bal.max_per_opening is not None:
        out["opening"] = {"opening": opening, "max_per_opening": bal.max_per_opening}
    if bal.per_concept is not None:
        out["concepts"] = _concepts(con, recipe, runs, r, row)
    return out


def _concepts(con, recipe: Recipe, runs, r, row: dict) -> dict[str, Any]:
    got = con.execute(
        f"SELECT concepts, concept_vocab FROM read_parquet({sql_str(str(concepts_path(r.src.path)))}) "
        "WHERE sample_id = ?::UBIGINT AND source = ? AND \"row\" = ?", [row["sample_id"], row["source"], row["row"]]
    ).fetchone()
    entries, vocab = (list(got[0] or []), got[1]) if got else ([], None)
    out: dict[str, Any] = {"per_concept": recipe.balance.per_concept, "vocabulary": vocab, "entries": []}
    if not entries:
        return out
    sql = render_sql(recipe, runs, upto="concept_counts")
    counts = dict(con.execute(
        f"SELECT entry, entry_count FROM ({sql}) WHERE concept_vocab = ? AND list_contains(?, entry)", [vocab, entries]
    ).fetchall())
    u = concept_u(np.full(len(entries), row["sample_id"], dtype=np.uint64), entries, seed_key(recipe.seed))
    t = recipe.balance.per_concept
    for e, ue in zip(entries, u.tolist()):
        n = counts.get(e)
        p = None if n is None else min(1.0, t / n)
        out["entries"].append({"entry": e, "entry_count": n, "p": p, "u": ue, "draws": p is not None and ue < p})
    drew = sorted((x["entry_count"], x["entry"]) for x in out["entries"] if x["draws"])
    out["drawn_by"] = drew[0][1] if drew else None
    return out


def balanced_out(con, recipe: Recipe, runs, r, row: dict, status: dict) -> str | None:
    """Why the balance left an eligible, uncapped row out, or None when it did not."""
    bal = recipe.balance
    if bal.bins and status["length"]["bin"] is None:
        labels = ", ".join(b.label for b in bal.bins)
        return f"outside the length mix: {status['length']['words']} words is in none of the bins {labels}"
    if bal.max_per_opening is not None and status["opening"]["opening"] is not None:
        sql = render_sql(recipe, runs, upto="capped_by_opening")
        if not con.execute(f"SELECT count(*) FROM ({sql}) WHERE {_where(r, row)}").fetchone()[0]:
            return (f"capped: {bal.max_per_opening} row(s) opening with {status['opening']['opening']!r} "
                    "have a higher quality (max_per_opening)")
    if bal.per_concept is None:
        return None
    c = status["concepts"]
    if not c["entries"]:
        return None if bal.unmatched == "keep" else "balanced out: it matches no concept entry (unmatched = \"drop\")"
    if c["drawn_by"] is not None:
        return None
    shown = "; ".join(f"{x['entry']!r}: {x['entry_count']:,} rows, p {x['p']:.4g}, u {x['u']:.4g}"
                      for x in c["entries"][:10] if x["entry_count"] is not None and not math.isnan(x["u"]))
    return f"balanced out: none of its concept entries drew it (u >= p = min(1, {bal.per_concept} / rows) for each: {shown})"
