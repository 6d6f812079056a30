"""``curate decide``: the chain's thresholds applied again to a run's stored scores.

Nothing is re-scored. Every part is decided into a new version of the run, with its
``chain.toml`` and ``run.json``, and the run switches to it in one step
(:class:`curate.layout.Snapshot`): a decide killed at any moment leaves the run as it was.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import polars as pl

from curate.atomic import write_json, write_parquet, write_text
from curate.errors import CurateError
from curate.layout import (
    CHAIN_TOML,
    RUN_JSON,
    SCORES,
    load_run,
    lock_folder,
    run_snapshot,
    score_parts,
)
from curate.scoring.byid import write_index
from curate.scoring.chain import Chain
from curate.scoring.decision import decide
from curate.scoring.stats import run_stats
from curate.storage.commit import store_write
from curate.storage.fs import is_url


def redecide_if_stale(part: Path, chain: Chain) -> None:
    """A part kept from an earlier attempt holds the same scores, but its keep and reason may
    come from other thresholds (a `curate decide` since, or a chain that differs only in
    thresholds): decide it again with this chain, rewriting it only when that changes it."""
    df = pl.read_parquet(part)
    base = df.drop(["keep", "reason"], strict=False)
    for step in chain.steps:
        if step.filter.external and step.column not in base.columns:
            base = base.with_columns(pl.lit(None, pl.Float64).alias(step.column))
    new = decide(base, chain)
    if new.columns != df.columns or not new.select("keep", "reason").equals(df.select("keep", "reason")):
        write_parquet(new.to_arrow(), part)


def decide_run(run: str | os.PathLike, chain: Chain) -> dict:
    """Re-apply ``chain``'s thresholds to a run's stored scores, without re-scoring. A run
    on a store (a URL) is downloaded, decided locally and switched in as a new version."""
    if is_url(run):
        with store_write(os.fspath(run), "a run") as w:
            w.materialise_run()
            info = decide_run(w.local, chain)
            w.commit_run()
        return info
    load_run(run)
    with lock_folder(run):
        return _decide_locked(Path(run), chain)


def _decide_locked(run: Path, chain: Chain) -> dict:
    info = load_run(run)  # read again under the lock: another writer may have finished
    scored = {f["id"]: f for f in info["chain"]["filter"]}
    chain = _with_scored_lid_model(chain, scored)
    for step in chain.steps:
        if step.filter.external:
            continue
        prev = scored.get(step.id)
        if prev is None:
            raise CurateError(
                f"filter {step.id!r} was not scored in {run}; scored filters: {', '.join(scored)}"
            )
        if prev["name"] != step.filter.name or prev["version"] != step.filter.version or prev["params"] != step.filter.p:
            raise CurateError(
                f"filter {step.id!r} differs from the one scored in {run} "
                f"({prev['name']}@{prev['version']} {prev['params']}); re-score to change parameters"
            )
    scored_clean = [{k: v for k, v in t.items()} for t in info["chain"].get("clean", [])]
    if chain.clean and [t.to_dict() for t in chain.clean] != scored_clean:
        raise CurateError(
            f"the chain's [[clean]] differs from the one {run} was scored with; decide keeps the run's "
            "cleaning (re-score to clean otherwise, or give a chain without [[clean]] tables)"
        )
    t0 = time.perf_counter()
    parts = score_parts(run)
    extra = external_scores(run, chain)
    snap = run_snapshot(run)
    version = snap.stage()
    try:
        (version / SCORES).mkdir()
        for part in parts:
            df = pl.read_parquet(part).drop(["keep", "reason"], strict=False)
            if extra is not None:
                cols = [c for c in extra.columns if c != "sample_id"]
                df = df.drop(cols, strict=False).join(extra, on="sample_id", how="left", maintain_order="left")
            write_parquet(decide(df, chain).to_arrow(), version / SCORES / part.name)
        stats = run_stats(version, chain, ids_given=info.get("id_column") is not None, spill_root=snap.tmp)
        write_index(version, info.get("key"), snap.tmp)
        info.update(stats)
        info["chain"] = _merge_chain(info["chain"], chain)
        info.setdefault("decisions", []).append(
            {"chain": chain.name, "digest": chain.digest(), "kept": stats["kept"],
             "seconds": round(time.perf_counter() - t0, 3)}
        )
        info["decision_chain"] = chain.to_dict()
        write_text(chain.to_toml(), version / CHAIN_TOML)
        write_json(info, version / RUN_JSON)
    except BaseException:
        snap.drop_others()
        raise
    snap.commit(version)
    return info


def _with_scored_lid_model(chain: Chain, scored: dict[str, dict]) -> Chain:
    """A decision chain that names no LID model means the run's: the model is chosen when
    scoring (``curate score --lid-model``), and ``decide`` has no such option."""
    steps = []
    for step in chain.steps:
        prev = scored.get(step.id) or {}
        model = prev.get("params", {}).get("model")
        if step.filter.name == "language" == prev.get("name") and model and not step.filter.p.get("model"):
            step = replace(step, filter=type(step.filter)(**{**step.filter.p, "model": model}))
        steps.append(step)
    return replace(chain, steps=steps)


def _merge_chain(scored: dict, chain: Chain) -> dict:
    """The run's chain keeps every scored filter; thresholds come from the new chain."""
    new = {s.id: s.to_dict() for s in chain.steps}
    merged = dict(scored)
    merged["filter"] = [new.pop(f["id"], f) for f in scored["filter"]] + list(new.values())
    merged["name"], merged["description"] = chain.name, chain.description
    return merged


def external_scores(run: str | os.PathLike, chain: Chain) -> pl.DataFrame | None:
    """Scores computed outside ``curate score`` (``score__neardup`` from ``curate dedup``)."""
    ext = [s for s in chain.steps if s.filter.external]
    if not ext:
        return None
    frames = []
    for step in ext:
        frames.append(step.filter.load(run, step.column))
    out = frames[0]
    for f in frames[1:]:
        out = out.join(f, on="sample_id", how="full", coalesce=True)
    return out
