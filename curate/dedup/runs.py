"""Several runs deduplicated together: one group space (``curate dedup RUN [RUN ...]``).

The rows of every run are ranked together (a preferred run's rows first when ``prefer``
names runs, then the quality order, then ``sample_id``), their distinct texts are embedded
and searched as one corpus, and the SemDeDup rule runs once over all of them. Each run's
``dedup/groups.parquet`` lists its own rows; ``dup_group``, ``duplicate_of`` and
``nearest_id`` are sample ids that may belong to another run of the set. Every run's
``dedup.json`` names the whole set (:func:`set_info`): the runs' paths and their run keys
at the time, so that a later reader can tell a stale set (:func:`set_problem`).

A set's embeddings and neighbour table live in one cache folder (``--cache``; by default
the run's own ``dedup/`` for one run, ``$CURATE_CACHE/dedup`` for several), so that texts
embedded for one set are reused by the next; a run's own cache is read too.
"""
from __future__ import annotations

import hashlib
import json
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

import polars as pl

from curate.atomic import write_json
from curate.errors import CurateError
from curate.layout import (DEDUP, EMBED_MANIFEST, EMBEDDINGS, NEIGHBORS, NEIGHBORS_META, RUN_JSON, SCRATCH, cache_root,
                           dedup_json_path, load_run, lock_folder, pinned, pinned_run, read_json, under)
from curate.storage.commit import runs_on_stores, store_write
from curate.storage.objects import download_version
from curate.storage.fs import is_url


def run_paths(runs) -> list[Path]:
    """The runs as paths, each a finished run, none named twice; one-line errors otherwise."""
    if isinstance(runs, (str, Path)):
        runs = [runs]
    paths = [Path(r) for r in runs]
    if not paths:
        raise CurateError("name at least one run to deduplicate")
    seen: dict[Path, Path] = {}
    for p in paths:
        if not p.exists():
            raise CurateError(f"{p}: no such run folder")
        load_run(p)
        r = p.resolve()
        if r in seen:
            raise CurateError(f"{p}: named twice (also as {seen[r]})")
        seen[r] = p
    return paths


def cache_folder(paths: list[Path], cache: str | None) -> Path:
    if cache:
        return Path(cache)
    return paths[0] / DEDUP if len(paths) == 1 else cache_root() / DEDUP


@contextmanager
def lock_runs(paths: list[Path], cache: Path) -> Iterator[None]:
    """Every run's lock, in sorted path order (two commands that share runs never wait on
    each other in a cycle), then the cache folder's when it is outside the runs."""
    with ExitStack() as stack:
        for p in sorted({p.resolve() for p in paths}, key=str):
            stack.enter_context(lock_folder(p))
        inside = any(cache.resolve() == (p / DEDUP).resolve() for p in paths)
        if not inside:
            cache.mkdir(parents=True, exist_ok=True)
            stack.enter_context(lock_folder(cache))
        yield


def common_schema(schemas: list[dict]) -> dict:
    """Columns every run has, with the first run's type (numeric types count as one)."""
    first = schemas[0]
    out = {}
    for c, t in first.items():
        ok = all(c in s and (s[c] == t or (s[c].is_numeric() and t.is_numeric())) for s in schemas[1:])
        if ok:
            out[c] = t
    return out


def prefer_index(paths: list[Path], prefer: list[str] | None) -> list[int]:
    """Each run's preference (0 = most preferred); runs ``prefer`` does not name come last.
    A name matches a run's path as given or its folder name."""
    prefer = list(prefer or [])
    out = [len(prefer)] * len(paths)
    for pos, name in enumerate(prefer):
        hits = [i for i, p in enumerate(paths) if name in (str(p), p.name) or Path(name).resolve() == p.resolve()]
        if not hits:
            raise CurateError(f"--prefer {name!r} is not one of the runs: {', '.join(str(p) for p in paths)}")
        for i in hits:
            out[i] = min(out[i], pos)
    return out


def check_shared_ids(rows: pl.DataFrame, paths: list[Path]) -> None:
    """Two runs that hold the same sample_id cannot share one group space."""
    if len(paths) < 2:
        return
    dup = rows.select("sample_id", "run").filter(pl.col("sample_id").is_duplicated())
    if dup.height:
        sid = dup["sample_id"][0]
        where = sorted(set(dup.filter(pl.col("sample_id") == sid)["run"].to_list()))
        names = " and ".join(str(paths[i]) for i in where)
        raise CurateError(
            f"{names} share sample_id {sid} ({dup['sample_id'].n_unique():,} shared ids in all; were they scored "
            "from the same input?); deduplicate them apart, or score one with another --id-column")


def set_info(paths: list[Path], infos: list[dict], prefer: list[int], cfg: dict) -> dict:
    """What ``dedup.json`` records about the set: its id, its runs and their run keys."""
    runs = [{"path": str(p.resolve()), "name": p.name, "run_key": info.get("key"), "prefer": pr}
            for p, info, pr in zip(paths, infos, prefer)]
    desc = {"runs": sorted((r["path"], r["run_key"] or "") for r in runs),
            "cfg": {k: cfg[k] for k in ("preset", "embedder", "threshold", "k")}}
    sid = hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]
    return {"id": sid, "runs": runs}


def set_of(run: str | Path) -> dict | None:
    """The set recorded in ``RUN/dedup/dedup.json`` (None without one)."""
    info = read_json(dedup_json_path(pinned_run(run) if is_url(run) else run))
    if not info:
        return None
    s = info.get("set")
    if s is None:  # written before sets existed: the run alone
        return {"id": f"run:{Path(run).resolve()}", "runs": [{"path": str(Path(run).resolve()),
                                                              "run_key": info.get("run_key")}]}
    return s


def set_problem(run: str | Path) -> str | None:
    """Why the groups of ``run`` no longer hold (a member re-scored or re-deduplicated in
    another set, or gone), as one line; None when they hold."""
    s = set_of(run)
    if s is None or len(s["runs"]) < 2:
        return None
    names = " ".join(r["path"] for r in s["runs"])
    again = f"run `curate dedup {names}` again"
    for m in s["runs"]:
        p = m["path"] if is_url(m["path"]) else Path(m["path"])
        key = read_json(under(pinned_run(p) if is_url(p) else p, RUN_JSON)).get("key")
        if key is None:
            return f"{run} was deduplicated together with {p}, which is no longer a run; {again}"
        if key != m["run_key"]:
            return f"{run} was deduplicated together with {p}, which was scored again since; {again}"
        other = set_of(p)
        if other is None or other["id"] != s["id"]:
            return f"{run} was deduplicated together with {p}, which was deduplicated again since in another set; {again}"
    return None


def foreign_caches(paths: list[Path], model_hash: str) -> list[str]:
    """Notes for runs whose own embedding cache holds only another model's vectors (they are
    embedded again with this one)."""
    notes = []
    for p in paths:
        folder = p / DEDUP / EMBEDDINGS
        subs = [d.name for d in folder.iterdir() if d.is_dir()] if folder.is_dir() else []
        if subs and model_hash[:16] not in subs:
            other = read_json(folder / subs[0] / EMBED_MANIFEST)
            notes.append(f"{p}: its embedding cache was made by another embedder "
                         f"({other.get('embedder', '?')} {str(other.get('model_sha256', subs[0]))[:12]}); "
                         f"its texts are embedded again with {model_hash[:12]}")
    return notes


def dedup_on_stores(runs: list, opts, dedup) -> dict:
    """``dedup(local runs, opts)`` for a set in which some runs are URLs on a store
    (:func:`curate.storage.commit.runs_on_stores`); ``dedup.json`` names the runs by their
    URLs. The embeddings and neighbours stay in the local cache (``$CURATE_CACHE/dedup``
    unless ``--cache`` names one)."""
    from dataclasses import replace

    named: dict[str, str] = {}

    def by_url(writes) -> None:
        named.update({str(w.local.resolve()): url for url, w in writes.items()})
        for w in writes.values():
            path = pinned(dedup_json_path(w.local))
            done = json.loads(path.read_text())
            for m in done["set"]["runs"]:
                if m["path"] in named:
                    m["path"], m["name"] = named[m["path"]], named[m["path"]].rsplit("/", 1)[-1]
            write_json(done, path)

    info = runs_on_stores(runs, lambda local: dedup(local, replace(opts, cache=opts.cache or str(cache_root() / DEDUP))),
                          by_url)
    info["per_run"] = {named.get(str(Path(k).resolve()), k): v for k, v in info.get("per_run", {}).items()}
    return info


def cache_on_store(opts, dedup) -> dict:
    """``dedup(opts)`` with ``--cache`` a URL on a store: under the cache's lock, its current
    version is downloaded into a local working folder, dedup runs with that folder as its
    cache, and the folder (without its scratch files) is switched in as a new version;
    files dedup did not change are copied on the store, not uploaded again."""
    from dataclasses import replace

    url = opts.cache.rstrip("/")
    with store_write(url, "a dedup cache") as w:
        local = download_version(w)
        info = dedup(replace(opts, cache=str(local), cache_name=url))
        files = {p.relative_to(local).as_posix(): p for p in sorted(local.rglob("*"))
                 if p.is_file() and p.relative_to(local).parts[0] != SCRATCH
                 and not any(part.startswith(".") for part in p.relative_to(local).parts)}
        meta = f"{NEIGHBORS}/{NEIGHBORS_META}"  # the neighbour table's meta last
        if meta in files:
            files[meta] = files.pop(meta)
        w.commit(files, w.name)
    info["cache"] = url
    return info
