"""``curate explain``: everything recorded about one sample.

Where it came from (file and row), its caption as read and as cleaned (with the transforms
that changed it and the model-caption signals), every score against the threshold the
run's chain applied (by the one decision rule), the decision and reason, its
near-duplicate group, and, for a mixture, its quality, sampling weight and key, and
whether it was selected (with its repeat count) or why not (not eligible, capped, or not
drawn).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from curate.audit.balance import balance_status, balanced_out
from curate.audit.lookup import (
    lookup,
    mixture_recipe,
    parse_sample_id,
    query_rows,
    sandboxed,
)
from curate.db import duck_error, first_row, sql_str
from curate.dedup.runs import set_of, set_problem
from curate.errors import CurateError
from curate.layout import MANIFEST, RUN_JSON, groups_path, load_run, pinned_groups, pinned_run, pinned_scores_glob
from curate.mix.manifest import load_mixture, resolve_source_file
from curate.mix.recipe import Recipe
from curate.mix.sql import UNIFORM, RunSource, render_sql, sampling_u
from curate.scoring.byid import index_problem, read_info, rows_by_id
from curate.scoring.chain import chain_of_record
from curate.scoring.decision import step_outcomes
from curate.storage.commit import reading_copy
from curate.storage.fs import exists, is_url


#: duplicates listed per other run of a set
MAX_OTHERS = 20


def _find(con, sid: int, candidates: list[tuple[str | None, Path]], sources: dict[str, RunSource],
          picked: list[dict], notes: list[str]) -> tuple[str | None, Path, dict] | None:
    """The sample's row in the first candidate run that has it, with ``__eligible`` and
    ``__quality`` (the recipe's expressions) when the run is a mixture source. A run's
    rows come from its index by sample id; a run without a usable one is scanned, with a
    note in ``notes``."""
    parts = []
    for i, (name, path) in enumerate(candidates):
        src = sources[name].src if name in sources else None
        extra = (f", ({src.eligible}) AS __eligible, CAST(({src.quality}) AS DOUBLE) AS __quality" if src else "")
        found = _indexed_rows(path, sid, notes)
        if found is None:
            where = f"read_parquet({sql_str(pinned_scores_glob(path))}) WHERE sample_id = {sid}::UBIGINT"
        elif found:
            con.register(f"__by_id_{i}", pa.concat_tables(found, promote_options="permissive"))
            where = f"__by_id_{i}"
        else:
            continue
        parts.append(f"SELECT {i} AS __candidate, *{extra} FROM {where}")
    try:
        rows = query_rows(con, "\nUNION ALL BY NAME\n".join(parts) + "\nORDER BY __candidate, source, \"row\"") \
            if parts else []
    except Exception as e:
        raise CurateError(f"looking up sample {sid} failed: {duck_error(e)}") from None
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


def _indexed_rows(run, sid: int, notes: list[str]):
    """The run's rows of ``sid`` (Arrow tables, maybe none) through its index by sample id;
    None, with a note, where the run has no index that answers for its scores."""
    version = pinned_run(run)
    info = read_info(version)
    problem = index_problem(info, load_run(version))
    rows = None if problem else rows_by_id(version, info, sid)
    if rows is None:
        problem = problem or "its index by sample id does not match its parts (curate index RUN writes it again)"
        notes.append(f"{run}: {problem}; read every part instead")
    return rows



# -- explain -------------------------------------------------------------------------------


def explain(sample_id: str | int, mix: str | os.PathLike | None = None,
            run: str | os.PathLike | None = None) -> dict[str, Any]:
    """Everything recorded about one sample, as a dict (the CLI prints it)."""
    if mix is None and run is None:
        raise CurateError("give --mix MIX or --run RUN (or both)")
    sid = parse_sample_id(sample_id)
    given, mix = mix, reading_copy(os.fspath(mix)) if mix is not None and is_url(mix) else mix
    con = sandboxed([Path(mix)] if mix else [], [run if is_url(run) else Path(run)] if run else [])
    try:
        out = _explain(con, sid, Path(mix) if mix else None, run if run is None or is_url(run) else Path(run))
        if "mixture" in out:
            out["mixture"]["folder"] = str(given)
        return out
    finally:
        con.close()


def _explain(con, sid: int, mix: Path | None, run: Path | None) -> dict[str, Any]:
    out: dict[str, Any] = {"sample_id": sid}
    recipe = runs = None
    picked: list[dict] = []
    if mix is not None:
        m = load_mixture(mix)
        recipe, runs = mixture_recipe(mix, con)
        picked = lookup(con, str(mix / MANIFEST), sid)
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
    notes: list[str] = []
    found = _find(con, sid, candidates, {r.name: r for r in runs or []}, picked, notes)
    if notes:
        out["notes"] = notes
    if found is None:
        where = ", ".join(str(p) for _, p in candidates)
        raise CurateError(f"sample {sid} is not in {where}")
    name, path, row = found
    evaluated = {k: row.pop(k) for k in ("__eligible", "__quality") if k in row}
    info = load_run(path)
    out["run"] = {"folder": str(path), "source_name": name}
    src_file = resolve_source_file(row["source"], path)
    out["origin"] = {"source": row["source"], "row": row["row"], "file": str(src_file) if src_file else None}
    if src_file is not None:  # the row read back from the input as it is now (a file or an object)
        out["origin"]["now"] = _row_now(str(src_file), row, info)
    out["caption"] = row["caption"]
    # the text the filters scored and the trainer gets (runs scored before cleaning: caption)
    out["caption_clean"] = row.get("caption_clean", row["caption"])
    out["clean_ops"] = list(row.get("clean_ops") or [])
    out["signals"] = {k[len("signal__"):]: row[k] for k in row if k.startswith("signal__")}
    out["carried"] = {c: row.get(c) for c in info.get("carried_columns", []) if c in row}
    out["lang"] = row.get("lang")
    out["scores"] = _scores(info, row, path)
    out["decision"] = {"keep": row.get("keep"), "reason": row.get("reason")}
    out["dedup"] = _dedup(con, path, sid)
    if recipe is not None:
        out["mix"] = _mix_status(con, sid, recipe, runs, name, {**row, **evaluated}, picked, load_mixture(mix))
    return out


def _row_now(path: str, row: dict, info: dict) -> dict:
    """The caption at the sample's row of its input now, and whether it is the one scored."""
    from curate.ingest.recheck import row_now

    try:
        now = row_now(path, row["row"], info.get("caption_column") or "caption", info.get("id_column"),
                      info.get("header_columns") or ())
    except CurateError as e:
        return {"error": str(e)}
    return {**now, "same": not now.get("missing") and now.get("caption") == row["caption"]}


def _scores(info: dict, row: dict, run_dir: Path) -> list[dict]:
    """Each filter of the run's (decision) chain: score, thresholds, pass or fail, in order.

    Pass and fail come from :func:`curate.scoring.decision.step_outcomes`, the rule that
    decided the row, so what is shown here is what ``decide`` did."""
    chain_d = info.get("decision_chain") or info.get("chain") or {}
    merged = {f["id"]: f for f in (info.get("chain") or {}).get("filter", [])}
    entries = [{**merged.get(f["id"], {}), **f} for f in chain_d.get("filter", [])]
    chain = chain_of_record({"name": chain_d.get("name", "chain"), "filter": entries}, str(Path(run_dir) / RUN_JSON))
    cols = {"caption": pl.String}
    for st in chain.steps:
        cols[st.column] = pl.Float64
        if st.filter.label:
            cols[st.filter.label] = pl.String
    one = pl.DataFrame({c: pl.Series(c, [row.get(c)], dtype=t, strict=False) for c, t in cols.items()})
    outcome = step_outcomes(one, chain).row(0, named=True)
    out = []
    for st, f in zip(chain.steps, entries):
        v = row.get(st.column)
        entry = {"filter": st.id, "name": f"{f['name']}@{f.get('version')}", "column": st.column,
                 "score": v, "min": st.min, "max": st.max, "pass": bool(outcome[f"pass__{st.id}"])}
        if st.filter.external and v is None:
            entry["note"] = "not computed yet (passes until `curate dedup` has run)"
        label = st.filter.label
        if label and (st.allow is not None or st.deny is not None):
            entry["label"] = {label: row.get(label), "allow": st.allow, "deny": st.deny}
        if f["name"] == "junk" and "junk_kind" in row:
            entry["junk_kind"] = row["junk_kind"]
        out.append(entry)
    return out


def _dedup(con, run: Path, sid: int) -> dict | None:
    g = pinned_groups(run)
    if not (exists(g) if is_url(g) else g.is_file()):
        return None
    rows = lookup(con, str(g), sid)
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
        out.update(_other_runs(run, r["dup_group"], out))
    return out


def _other_runs(run: Path, group: int, out: dict) -> dict:
    """Duplicates in the other runs of the set ``run`` was deduplicated in (read with Polars:
    their groups files are not among the connection's sources)."""
    the_set = set_of(run)
    if the_set is None or len(the_set["runs"]) < 2:
        return {}
    found = []
    for m in the_set["runs"]:
        p = m["path"]
        if (p == str(run).rstrip("/")) if is_url(p) or is_url(run) else Path(p) == Path(run).resolve():
            continue
        g = groups_path(pinned_run(p) if is_url(p) else p)
        if not (exists(g) if is_url(p) else g.is_file()):
            continue
        rows = (pl.scan_parquet(g).filter(pl.col("dup_group") == group)
                .select("sample_id", "is_representative", "dup_kind", "score__neardup").head(MAX_OTHERS).collect())
        found += [{"run": m["path"], **x} for x in rows.to_dicts()]
    res: dict[str, Any] = {"set": {"id": the_set["id"], "runs": [m["path"] for m in the_set["runs"]]},
                           "in_other_runs": found}
    if out.get("representative") is None:
        res["representative"] = next((x["sample_id"] for x in found if x["is_representative"]), None)
        res["representative_run"] = next((x["run"] for x in found if x["is_representative"]), None)
    stale = set_problem(run)
    if stale:
        res["set_stale"] = stale
    return res


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
    if recipe.balance.active:
        out["balance"] = balance_status(con, recipe, runs, r, row)
    mine = [p for p in picked if p["run"] == name and p["row"] == row["row"]]
    if mine:
        p = mine[0]
        out.update(selected=True, repeat=p["repeat"], manifest={
            "quality": p["quality"], "sampling_weight": p["sampling_weight"],
            "sample_key": p["sample_key"], "caption_hash": p["caption_hash"]})
        if "concept_drawn_by" in p:
            out["manifest"]["concept_drawn_by"] = p["concept_drawn_by"]
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
    if recipe.group_of(r.src):
        sql = render_sql(recipe, runs, upto=UNIFORM)
        v = first_row(con, f"SELECT cap_group FROM ({sql}) WHERE sample_id = ?::UBIGINT AND run = ?", [sid, r.name])
        if v and v[0] is not None:
            scope = "" if caps.scope == "mixture" else f" AND run = {sql_str(r.name)}"
            n = first_row(con, f"SELECT count(*) FROM ({sql}) WHERE cap_group = ? AND {better}{scope}",
                          [v[0], *args])[0]
            if n >= caps.per_group:
                return (f"capped: {n} eligible row(s) with {recipe.group_of(r.src)} = {v[0]!r} have a higher "
                        f"quality (cap: {caps.per_group} per value)")
    if caps.per_dup_group is not None and r.groups is not None:
        g = first_row(con, f"SELECT dup_group FROM read_parquet({sql_str(str(r.groups))}) WHERE sample_id = ?::UBIGINT",
                      [sid])
        if g and g[0] is not None:
            # g: every source's groups (joined when per_dup_group is set); the space: runs deduplicated together
            sql = render_sql(recipe, runs, restrict=f"g.dup_group = {int(g[0])}", upto=UNIFORM)
            space = sql_str(r.dup_space or r.name)
            n = first_row(con, f"SELECT count(*) FROM ({sql}) WHERE dup_space = {space} AND {better}", args)[0]
            if n >= caps.per_dup_group:
                return (f"capped: {n} eligible row(s) of its near-duplicate group {g[0]} have a higher quality "
                        f"(cap: {caps.per_dup_group} per group)")
    if recipe.balance.active:
        why = balanced_out(con, recipe, runs, r, row, balance_status(con, recipe, runs, r, row))
        if why:
            return why
    cutoff = per.get("key_cutoff")
    if cutoff is not None and key is not None and key > cutoff:
        return (f"not drawn: its sampling key {key:.6g} is above the cutoff {cutoff:.6g} of source "
                f"{r.name!r} (the largest key among the {per.get('samples', 0):,} rows it took)")
    return "capped: rows that rank above it in its groups took the places (the caps apply one after the other)"

