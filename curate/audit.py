"""Audit: explain one sample, verify a mixture against its sources, diff two mixtures.

* ``explain``: where a sample came from (file and row), its caption, every score against
  the threshold the run's chain applied, the decision and reason, its near-duplicate group,
  and, for a mixture, its quality, sampling weight and key, and whether it was selected
  (with its repeat count) or why not (not eligible, capped, or not drawn).
* ``verify``: re-read every input file the mixture took rows from and compare each
  selected caption's content hash with the one stored in the manifest.
* ``diff``: samples added, removed and changed between two mixtures, per source and per
  reason.

Lookups push ``sample_id = X`` down into the Parquet scans; nothing is loaded whole.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from .errors import CurateError
from .mix import (
    DEDUP_GROUPS, RunSource, _duck_error, arrow_table, connect, first_row, ident, inspect_sources,
    load_mixture, render_sql, resolve_source_file, sampling_u, sql_str,
)
from .mixture_recipe import Recipe, load_recipe
from .run import load_run, scores_glob

#: How many changed rows ``verify`` and ``diff`` list in full.
LIST_LIMIT = 1000


def parse_sample_id(text: str | int) -> int:
    try:
        v = int(str(text).strip(), 0)
    except ValueError:
        raise CurateError(f"sample id must be a whole number (as in the sample_id column), got {text!r}") from None
    if not 0 <= v < 2**64:
        raise CurateError(f"sample id {text!r} is out of range (0 to 2^64-1)")
    return v


def _rows(con, sql: str, params: list | None = None) -> list[dict]:
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _lookup(con, glob: str, sid: int) -> list[dict]:
    return _rows(con, f"SELECT * FROM read_parquet({sql_str(glob)}) WHERE sample_id = ?::UBIGINT", [sid])


def _find(con, sid: int, candidates: list[tuple[str | None, Path]], sources: dict[str, RunSource],
          picked: list[dict]) -> tuple[str | None, Path, dict] | None:
    """The sample's row in the first candidate run that has it, with ``__eligible`` and
    ``__quality`` (the recipe's expressions) when the run is a mixture source."""
    parts = []
    for i, (name, path) in enumerate(candidates):
        src = sources[name].src if name in sources else None
        extra = (f", ({src.eligible}) AS __eligible, CAST(({src.quality}) AS DOUBLE) AS __quality" if src else "")
        parts.append(f"SELECT {i} AS __candidate, *{extra} FROM read_parquet({sql_str(scores_glob(path))}) "
                     f"WHERE sample_id = {sid}::UBIGINT")
    try:
        rows = _rows(con, "\nUNION ALL BY NAME\n".join(parts) + "\nORDER BY __candidate, source, \"row\"")
    except Exception as e:
        raise CurateError(f"looking up sample {sid} failed: {_duck_error(e)}") from None
    if not rows:
        return None
    best = rows[0]
    for r in rows:  # a repeated id: prefer the row the mixture selected
        if any(p["run"] == candidates[r["__candidate"]][0] and p["row"] == r["row"] and p["source"] == r["source"]
               for p in picked):
            best = r
            break
    name, path = candidates[best.pop("__candidate")]
    return name, path, best


def _mixture_recipe(mix: Path, con) -> tuple[Recipe, list[RunSource]]:
    recipe = load_recipe(mix / "recipe.toml")
    return recipe, inspect_sources(recipe, con)


# -- explain -------------------------------------------------------------------------------


def explain(sample_id: str | int, mix: str | os.PathLike | None = None,
            run: str | os.PathLike | None = None) -> dict[str, Any]:
    """Everything recorded about one sample, as a dict (the CLI prints it)."""
    if mix is None and run is None:
        raise CurateError("give --mix MIX or --run RUN (or both)")
    sid = parse_sample_id(sample_id)
    con = connect()
    try:
        return _explain(con, sid, Path(mix) if mix else None, Path(run) if run else None)
    finally:
        con.close()


def _explain(con, sid: int, mix: Path | None, run: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"sample_id": sid}
    recipe = runs = None
    picked: list[dict] = []
    if mix is not None:
        m = load_mixture(mix)
        recipe, runs = _mixture_recipe(mix, con)
        picked = _lookup(con, str(mix / "manifest.parquet"), sid)
        out["mixture"] = {"folder": str(mix), "id": m["mixture"], "name": m["name"]}
    # Which run holds the sample: the one given, else the mixture source that selected it,
    # else any of the mixture's sources. One query looks in all of them (and evaluates the
    # recipe's eligible and quality expressions on the row at the same time).
    candidates: list[tuple[str | None, Path]] = []
    if run is not None:
        load_run(run)
        candidates = [(None, run)]
        for r in runs or []:
            if r.src.path.resolve() == run.resolve():
                candidates = [(r.name, run)]
    elif runs:
        names = [p["run"] for p in picked]
        candidates = [(r.name, r.src.path) for r in runs if not names or r.name in names]
    found = _find(con, sid, candidates, {r.name: r for r in runs or []}, picked)
    if found is None:
        where = ", ".join(str(p) for _, p in candidates)
        raise CurateError(f"sample {sid} is not in {where}")
    name, path, row = found
    evaluated = {k: row.pop(k) for k in ("__eligible", "__quality") if k in row}
    info = load_run(path)
    out["run"] = {"folder": str(path), "source_name": name}
    src_file = resolve_source_file(row["source"], path)
    out["origin"] = {"source": row["source"], "row": row["row"], "file": str(src_file) if src_file else None}
    out["caption"] = row["caption"]
    out["carried"] = {c: row.get(c) for c in info.get("carried_columns", []) if c in row}
    out["lang"] = row.get("lang")
    out["scores"] = _scores(info, row)
    out["decision"] = {"keep": row.get("keep"), "reason": row.get("reason")}
    out["dedup"] = _dedup(con, path, sid)
    if recipe is not None:
        out["mix"] = _mix_status(con, sid, recipe, runs, name, {**row, **evaluated}, picked, load_mixture(mix))
    return out


def _scores(info: dict, row: dict) -> list[dict]:
    """Each filter of the run's (decision) chain: score, thresholds, pass or fail, in order."""
    from .filters import FILTERS

    chain = info.get("decision_chain") or info.get("chain") or {}
    merged = {f["id"]: f for f in (info.get("chain") or {}).get("filter", [])}
    out = []
    for f in chain.get("filter", []):
        f = {**merged.get(f["id"], {}), **f}
        col = f"score__{f['id']}"
        v = row.get(col)
        lo, hi = f.get("min"), f.get("max")
        ok = v is not None and not (isinstance(v, float) and math.isnan(v))
        ok = ok and (lo is None or v >= lo) and (hi is None or v <= hi)
        entry = {"filter": f["id"], "name": f"{f['name']}@{f.get('version')}", "column": col,
                 "score": v, "min": lo, "max": hi, "pass": bool(ok)}
        cls = FILTERS.get(f["name"])
        label = cls.label if cls else None
        if label and (f.get("allow") is not None or f.get("deny") is not None):
            lv = row.get(label)
            entry["label"] = {label: lv, "allow": f.get("allow"), "deny": f.get("deny")}
            if f.get("allow") is not None and lv not in f["allow"]:
                entry["pass"] = False
            if f.get("deny") is not None and lv in f["deny"]:
                entry["pass"] = False
        if f["name"] == "junk" and "junk_kind" in row:
            entry["junk_kind"] = row["junk_kind"]
        out.append(entry)
    return out


def _dedup(con, run: Path, sid: int) -> dict | None:
    g = run / DEDUP_GROUPS
    if not g.is_file():
        return None
    rows = _lookup(con, str(g), sid)
    if not rows:
        return {"in_groups_file": False}
    r = rows[0]
    out = {k: r[k] for k in r if k != "sample_id"}
    if r.get("dup_group") is not None and "is_representative" in r:
        rep = first_row(
            con, f"SELECT sample_id FROM read_parquet({sql_str(str(g))}) WHERE dup_group = ? AND is_representative "
            "ORDER BY sample_id LIMIT 1", [r["dup_group"]]
        )
        out["representative"] = rep[0] if rep else None
    return out


def _mix_status(con, sid: int, recipe: Recipe, runs: list[RunSource], name: str | None,
                row: dict, picked: list[dict], m: dict) -> dict:
    if name is None:
        return {"selected": False, "why": "its run is not a source of this mixture"}
    r = next(x for x in runs if x.name == name)
    eligible, quality = bool(row.get("__eligible") or False), row.get("__quality")
    u = float(sampling_u(np.array([sid], dtype=np.uint64), recipe.seed)[0])
    if quality is not None and math.isnan(quality):
        quality = None
    weight = None if quality is None else (1.0 if recipe.alpha == 0 else max(quality, 0.0) ** recipe.alpha)
    key = None if weight is None else (-math.log(u) / weight if weight > 0 else math.inf)
    per = m["counts"]["per_source"].get(name, {})
    out: dict[str, Any] = {
        "source": name, "eligible_condition": r.src.eligible, "eligible": eligible,
        "quality_expression": r.src.quality, "quality": quality, "alpha": recipe.alpha,
        "u": u, "sampling_weight": weight, "sample_key": key,
        "quota": recipe.quotas[name], "key_cutoff": per.get("key_cutoff"),
    }
    mine = [p for p in picked if p["run"] == name and p["row"] == row["row"]]
    if mine:
        p = mine[0]
        out.update(selected=True, repeat=p["repeat"], manifest={
            "quality": p["quality"], "sampling_weight": p["sampling_weight"],
            "sample_key": p["sample_key"], "caption_hash": p["caption_hash"]})
        return out
    out["selected"] = False
    if not eligible:
        out["why"] = f"not eligible: ({r.src.eligible}) is false for it"
    elif quality is None or math.isnan(quality):
        out["why"] = f"not eligible: its quality ({r.src.quality}) is null or NaN"
    else:
        out["why"] = _why_not_drawn(con, sid, recipe, runs, r, row, quality, u, key, per)
    return out


def _why_not_drawn(con, sid, recipe, runs, r, row, quality, u, key, per) -> str:
    caps = recipe.caps
    better = '(quality > ? OR (quality = ? AND (u < ? OR (u = ? AND sample_id < ?::UBIGINT))))'
    args = [quality, quality, u, u, sid]
    if caps.group_by and row.get(caps.group_by) is not None:
        v = str(row[caps.group_by])
        same = f"CAST(s.{ident(caps.group_by)} AS VARCHAR) = {sql_str(v)}"
        sql = render_sql(recipe, runs, restrict=same, upto="hashed")
        scope = "" if caps.scope == "mixture" else f" AND run = {sql_str(r.name)}"
        n = first_row(con, f"SELECT count(*) FROM ({sql}) WHERE {better}{scope}", args)[0]
        if n >= caps.per_group:
            return (f"capped: {n} eligible row(s) with {caps.group_by} = {v!r} have a higher quality "
                    f"(cap: {caps.per_group} per value)")
    if caps.per_dup_group is not None and r.groups is not None:
        g = first_row(con, f"SELECT dup_group FROM read_parquet({sql_str(str(r.groups))}) WHERE sample_id = ?::UBIGINT",
                      [sid])
        if g and g[0] is not None:
            restrict = (f"s.sample_id IN (SELECT sample_id FROM read_parquet({sql_str(str(r.groups))}) "
                        f"WHERE dup_group = {int(g[0])})")
            sql = render_sql(recipe, runs, restrict=restrict, upto="hashed")
            n = first_row(con, f"SELECT count(*) FROM ({sql}) WHERE run = {sql_str(r.name)} AND {better}", args)[0]
            if n >= caps.per_dup_group:
                return (f"capped: {n} eligible row(s) of its near-duplicate group {g[0]} have a higher quality "
                        f"(cap: {caps.per_dup_group} per group)")
    cutoff = per.get("key_cutoff")
    if cutoff is not None and key is not None and key > cutoff:
        return (f"not drawn: its sampling key {key:.6g} is above the cutoff {cutoff:.6g} of source "
                f"{r.name!r} (the largest key among the {per.get('samples', 0):,} rows it took)")
    return "capped: rows that rank above it in its groups took the places (the caps apply one after the other)"


# -- verify --------------------------------------------------------------------------------


def verify(mix: str | os.PathLike, full: bool = False) -> dict[str, Any]:
    """Re-read the sources of a mixture and compare every selected caption's content hash.

    A file whose blake2b fingerprint still equals the one recorded when it was scored is
    intact as a whole; ``full`` re-reads and compares its rows anyway. At most LIST_LIMIT
    changes are listed; ``changed`` counts them all.
    """
    from .io import file_fingerprint

    mix = Path(mix)
    m = load_mixture(mix)
    manifest = str(mix / "manifest.parquet")
    run_dirs = mixture_run_dirs(mix, m)
    con = connect()
    changes: list[dict] = []
    changed = 0
    files_out: list[dict] = []
    checked = 0
    try:
        per_file = con.execute(
            f"SELECT run, source, count(*) FROM read_parquet({sql_str(manifest)}) GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        inputs = {i["name"]: i for i in m["inputs"]}
        for run_name, source, n in per_file:
            inp = inputs.get(run_name, {})
            rec = next((f for f in inp.get("files", []) if f["source"] == source), {})
            path = Path(rec["path"]) if rec.get("path") and Path(rec["path"]).is_file() else \
                resolve_source_file(source, run_dirs.get(run_name, Path(".")), rec.get("bytes"))
            entry = {"run": run_name, "source": source, "path": str(path) if path else None, "rows": n}
            files_out.append(entry)
            if path is None:
                entry["status"] = "missing"
                changed += 1
                changes.append({"run": run_name, "source": source, "problem": f"file not found ({n:,} selected rows)"})
                continue
            same = rec.get("blake2b") and file_fingerprint(path) == rec["blake2b"]
            entry["fingerprint_matches"] = bool(same)
            checked += n
            if same and not full:
                entry["status"] = "intact (fingerprint)"
                continue
            found, examples = _check_rows(con, manifest, run_name, source, path, inp, LIST_LIMIT - len(changes))
            changed += found
            changes += examples
            entry["status"] = "intact (rows)" if not found else f"{found:,} row(s) changed"
    finally:
        con.close()
    return {"mixture": m["mixture"], "ok": changed == 0, "checked_rows": checked,
            "files": files_out, "changes": changes, "changed": changed}


def mixture_run_dirs(mix: Path, m: dict) -> dict[str, Path]:
    """Each source's run folder: as recorded, or (when the folders moved together) as the
    resolved recipe beside the manifest names it, relative to the mixture folder."""
    out = {i["name"]: Path(i["run"]) for i in m["inputs"]}
    if all(p.is_dir() for p in out.values()) or not (mix / "recipe.toml").is_file():
        return out
    recipe = load_recipe(mix / "recipe.toml")
    return {name: p if p.is_dir() else recipe.source(name).path for name, p in out.items()}


def _check_rows(con, manifest: str, run_name: str, source: str, path: Path, inp: dict,
                room: int) -> tuple[int, list[dict]]:
    """Stream one input file and compare the selected rows' caption hashes.

    Returns how many rows differ and at most ``room`` of them, described."""
    from .io import inspect_input, read_batches, resolve_inputs

    want = arrow_table(con,
        f"SELECT \"row\", sample_id, caption_hash FROM read_parquet({sql_str(manifest)}) "
        f"WHERE run = {sql_str(run_name)} AND source = {sql_str(source)} ORDER BY \"row\""
    )
    f = resolve_inputs([str(path)])[0]
    inspect_input(f)
    caption, id_col = inp.get("caption_column") or "caption", inp.get("id_column")
    if caption not in f.columns and not getattr(f, "empty", False):
        return want.num_rows, [{"run": run_name, "source": source,
                                "problem": f"caption column {caption!r} is gone (columns: {', '.join(f.columns)})"}]
    found, examples, start = 0, [], 0
    con.register("want", want)
    try:
        for batch in read_batches(f, caption, id_col, [], 100_000):
            n = batch.height
            got = pa.table({"row": pa.array(np.arange(start, start + n, dtype=np.int64)),
                            "caption": batch["caption"].to_arrow()})
            con.register("got", got)
            bad = ("FROM want AS w JOIN got AS g USING (\"row\") "
                   "WHERE CAST('0x' || left(md5(g.caption), 16) AS UBIGINT) IS DISTINCT FROM w.caption_hash")
            k = first_row(con, f"SELECT count(*) {bad}")[0]
            if k:
                found += k
                examples += _described(con, f"SELECT w.\"row\", w.sample_id {bad} ORDER BY w.\"row\"",
                                       room - len(examples), run_name, source, "caption changed")
            con.unregister("got")
            start += n
        gone = f"FROM want WHERE \"row\" >= {start}"
        k = first_row(con, f"SELECT count(*) {gone}")[0]
        if k:
            found += k
            examples += _described(con, f"SELECT \"row\", sample_id {gone} ORDER BY \"row\"", room - len(examples),
                                   run_name, source, f"row missing (the file now has {start:,} rows)")
    finally:
        con.unregister("want")
    return found, examples


def _described(con, sql: str, room: int, run_name: str, source: str, problem: str) -> list[dict]:
    if room <= 0:
        return []
    rows = con.execute(f"{sql} LIMIT {int(room)}").fetchall()
    return [{"run": run_name, "source": source, "row": r, "sample_id": s, "problem": problem} for r, s in rows]


# -- diff ----------------------------------------------------------------------------------


def diff(mix_a: str | os.PathLike, mix_b: str | os.PathLike, limit: int = 20) -> dict[str, Any]:
    """Samples added (in B only), removed (in A only) and changed (repeat or caption) from A
    to B, per source and per reason: why a removed sample is not in B (and an added one was
    not in A), judged from the other mixture's runs and recipe."""
    a, b = Path(mix_a), Path(mix_b)
    ma, mb = load_mixture(a), load_mixture(b)
    con = connect()
    try:
        con.execute(
            "CREATE TEMP TABLE d AS SELECT coalesce(a.sample_id, b.sample_id) AS sample_id, "
            "coalesce(a.source, b.source) AS source, coalesce(a.\"row\", b.\"row\") AS \"row\", "
            "a.run AS run_a, b.run AS run_b, a.repeat AS repeat_a, b.repeat AS repeat_b, "
            "a.caption_hash AS hash_a, b.caption_hash AS hash_b "
            f"FROM read_parquet({sql_str(str(a / 'manifest.parquet'))}) AS a "
            f"FULL JOIN read_parquet({sql_str(str(b / 'manifest.parquet'))}) AS b "
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
        changed = _rows(con, "SELECT sample_id, run_a, run_b, repeat_a, repeat_b, hash_a <> hash_b AS caption_changed "
                             "FROM d WHERE run_a IS NOT NULL AND run_b IS NOT NULL "
                             "AND (repeat_a <> repeat_b OR hash_a IS DISTINCT FROM hash_b) ORDER BY sample_id LIMIT ?",
                        [limit])
    finally:
        con.close()
    return {
        "a": {"folder": str(a), "mixture": ma["mixture"], "samples": ma["counts"]["samples"]},
        "b": {"folder": str(b), "mixture": mb["mixture"], "samples": mb["counts"]["samples"]},
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
    recipe, runs = _mixture_recipe(other, con)
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
