"""``curate diff``: samples added, removed and changed between two mixtures, per source
and per reason."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from curate.audit.lookup import mixture_recipe, query_rows, spilled_connection
from curate.db import first_row, sql_str
from curate.layout import MANIFEST
from curate.mix.manifest import load_mixture
from curate.storage.commit import reading_copy
from curate.storage.fs import is_url

# -- diff ----------------------------------------------------------------------------------


def diff(mix_a: str | os.PathLike, mix_b: str | os.PathLike, limit: int = 20,
         memory_limit: str | int | None = None) -> dict[str, Any]:
    """Samples added (in B only), removed (in A only) and changed (repeat or caption) from A
    to B, per source and per reason: why a removed sample is not in B (and an added one was
    not in A), judged from the other mixture's runs and recipe. DuckDB joins the manifests
    and the runs under ``memory_limit`` and spills beyond it."""
    a, b = (reading_copy(os.fspath(m)) if is_url(m) else Path(m) for m in (mix_a, mix_b))  # a store's: its version
    ma, mb = load_mixture(a), load_mixture(b)
    with spilled_connection(memory_limit, [a, b]) as con:
        con.execute(
            "CREATE TEMP TABLE d AS SELECT coalesce(a.sample_id, b.sample_id) AS sample_id, "
            "coalesce(a.source, b.source) AS source, coalesce(a.\"row\", b.\"row\") AS \"row\", "
            "a.run AS run_a, b.run AS run_b, a.repeat AS repeat_a, b.repeat AS repeat_b, "
            "a.caption_hash AS hash_a, b.caption_hash AS hash_b "
            f"FROM read_parquet({sql_str(str(a / MANIFEST))}) AS a "
            f"FULL JOIN read_parquet({sql_str(str(b / MANIFEST))}) AS b "
            "USING (sample_id, source, \"row\")"
        )
        removed = _why_missing(con, "run_b IS NULL", b, "B")
        added = _why_missing(con, "run_a IS NULL", a, "A")
        counts = first_row(
            con,
            "SELECT count(*) FILTER (WHERE run_a IS NOT NULL AND run_b IS NOT NULL), "
            "count(*) FILTER (WHERE run_b IS NULL), count(*) FILTER (WHERE run_a IS NULL), "
            "count(*) FILTER (WHERE run_a IS NOT NULL AND run_b IS NOT NULL AND repeat_a <> repeat_b), "
            "count(*) FILTER (WHERE run_a IS NOT NULL AND run_b IS NOT NULL AND hash_a IS DISTINCT FROM hash_b) FROM d"
        )
        per_source = {}
        for side, col, cond in (("removed", "run_a", "run_b IS NULL"), ("added", "run_b", "run_a IS NULL"),
                                ("kept", "run_a", "run_a IS NOT NULL AND run_b IS NOT NULL")):
            for run, n in con.execute(f"SELECT {col}, count(*) FROM d WHERE {cond} GROUP BY 1 ORDER BY 1").fetchall():
                per_source.setdefault(run, {"kept": 0, "removed": 0, "added": 0})[side] = n
        changed = query_rows(con, "SELECT sample_id, run_a, run_b, repeat_a, repeat_b, hash_a <> hash_b AS caption_changed "
                             "FROM d WHERE run_a IS NOT NULL AND run_b IS NOT NULL "
                             "AND (repeat_a <> repeat_b OR hash_a IS DISTINCT FROM hash_b) ORDER BY sample_id LIMIT ?",
                        [limit])
    return {
        "a": {"folder": str(mix_a), "mixture": ma["mixture"], "samples": ma["counts"]["samples"]},
        "b": {"folder": str(mix_b), "mixture": mb["mixture"], "samples": mb["counts"]["samples"]},
        "same": ma["content_hash"] == mb["content_hash"],
        "in_both": counts[0], "removed": counts[1], "added": counts[2],
        "repeat_changed": counts[3], "caption_changed": counts[4],
        "per_source": per_source,
        "removed_by_reason": removed["reasons"], "added_by_reason": added["reasons"],
        "removed_examples": removed["examples"][:limit], "added_examples": added["examples"][:limit],
        "changed_examples": changed,
    }


def _why_missing(con, cond: str, other: Path, label: str) -> dict:
    """Why the rows of ``d`` matching ``cond`` are not in mixture ``other``: per reason."""
    recipe, runs = mixture_recipe(other, con)
    parts = []
    for r in runs:
        parts.append(
            f"SELECT {sql_str(r.name)} AS run, s.sample_id, s.source, s.\"row\", s.reason, "
            f"coalesce(({r.src.eligible}), false) AS eligible, CAST(({r.src.quality}) AS DOUBLE) AS quality "
            f"FROM read_parquet({sql_str(r.glob)}) AS s WHERE s.sample_id IN (SELECT sample_id FROM d WHERE {cond})"
        )
    union = " UNION ALL ".join(parts)
    sql = (
        f"WITH o AS ({union}), "
        "x AS (SELECT d.sample_id, coalesce(d.run_a, d.run_b) AS run, o.run AS other_run, o.reason, "
        "o.eligible, o.quality "
        f"FROM d LEFT JOIN o USING (sample_id, source, \"row\") WHERE {cond.replace('run_', 'd.run_')}) "
        "SELECT run, CASE "
        f"WHEN other_run IS NULL THEN 'not in the runs of {label}' "
        f"WHEN reason IS NOT NULL THEN 'dropped in {label}''s run: ' || reason "
        f"WHEN NOT eligible THEN 'not eligible under {label}''s recipe' "
        f"WHEN quality IS NULL OR isnan(quality) THEN 'quality is null or NaN under {label}''s recipe' "
        f"ELSE 'eligible in {label} but capped or not drawn' END AS why, count(*) AS n, "
        "min(sample_id) AS example FROM x GROUP BY ALL ORDER BY n DESC, run, why"
    )
    rows = con.execute(sql).fetchall()
    reasons: dict[str, dict[str, int]] = {}
    examples = []
    for run, why, n, ex in rows:
        reasons.setdefault(why, {})[run] = int(n)
        examples.append({"run": run, "why": why, "example_sample_id": ex})
    return {"reasons": reasons, "examples": examples}
