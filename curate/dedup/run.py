"""Near-duplicate detection: ``curate dedup RUN`` writes ``RUN/dedup/``.

Steps, all vectorised (Polars, NumPy, FAISS; one model call per batch):

1. **Texts.** Every caption gets ``norm`` (NFKC, lower case, no punctuation, collapsed
   white space) and ``clean`` (``norm`` without stock-photo boilerplate affixes such as
   "Stock Photo -" or "- royalty free image"; see :mod:`curate.dedup.text`). Captions with
   the same ``clean`` text are duplicates of each other with similarity 1 (``exact`` when
   their ``norm`` texts are equal too). Empty captions take no part.
2. **Ranking.** Rows are ranked by a quality order, by default ``keep`` (rows the last
   decision keeps first; a ``neardup`` rejection does not count), then
   ``score__specificity`` descending, then ``sample_id``. The best row of each distinct
   ``clean`` text stands for it; distinct texts are numbered in rank order.
3. **Neighbours.** Each distinct text is embedded once (:mod:`curate.embed`; cached on
   disk by model and text hash, :mod:`curate.dedup.cache`); FAISS finds its ``k`` nearest
   texts (:mod:`curate.dedup.index`). The table (``sample_id``, ``neighbor_id``, ``cosine``,
   ``jaccard``) is written once to ``RUN/dedup/neighbors/`` and reused by any later run with
   the same texts and embedder (:mod:`curate.dedup.neighbors`).
4. **Similarity.** Per preset rule: ``copies`` (default) uses ``min(cosine, jaccard)``,
   where ``jaccard`` is the Jaccard index of the two ``clean`` texts' sets of distinct
   words; ``paraphrase`` uses the embedding cosine alone. Pairs with cosine below
   :data:`FLOOR` count as 0.
5. **Decision (the SemDeDup rule).** ``score__neardup`` of a row is its highest similarity
   to any *better-ranked* row among its neighbours (1 for a second copy of the same text).
   A row is a duplicate when that score is above the threshold; it then points at that
   better-ranked row, and following the pointers ends at a row that is not a duplicate: the
   group's representative. ``dup_group`` is the representative's ``sample_id``
   (:mod:`curate.dedup.groups`).

Why this rule and not connected components: components chain (A~B and B~C put A and C
together even when they have nothing in common), so a group can grow to hold captions that
are not duplicates of each other and its size depends on the order of discovery. The
SemDeDup rule (Abbas et al. 2023) judges every row only against rows ranked above it: the
set of rows kept is exactly ``{score__neardup <= threshold}``, so a new threshold is an
ordinary ``max`` in ``curate decide`` (any value of at least :data:`FLOOR`), it only ever
keeps more rows as it rises, and the representative is always the best-ranked member.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from curate.atomic import write_json, write_parquet
from curate.dedup.groups import FLOOR, counts, groups, groups_from_arrays
from curate.dedup.neighbors import (
    build_neighbors,
    load_neighbors,
    neighbor_key,
)
from curate.progress import Reporter
from curate.dedup.runs import (
    cache_folder,
    cache_on_store,
    check_shared_ids,
    common_schema,
    dedup_on_stores,
    foreign_caches,
    lock_runs,
    prefer_index,
    run_paths,
    set_info,
)
from curate.dedup.ranges import groups_by_range
from curate.dedup.stream import OUT_OF_CORE_TEXTS, build_neighbors_stream, text_arrays
from curate.dedup.text import texts_of
from curate.errors import CurateError
from curate.layout import (
    DEDUP,
    DEDUP_JSON,
    EMBEDDINGS,
    GROUPS,
    NEIGHBORS,
    NEIGHBORS_META,
    dedup_snapshot,
    load_run,
    numbered,
    read_json,
    score_parts,
    scores_glob,
    pinned_scores_glob,
)
from curate.storage.fs import is_url
from curate.version import __version__

#: name -> (embedder, threshold, rule). Measured rates: see the README and tests/dedup/test_dedup.py.
PRESETS: dict[str, dict] = {
    "copies": {"embedder": "static", "threshold": 0.75, "rule": "min(cosine, jaccard)",
               "about": "near-verbatim and templated copies: case, punctuation, white space, "
                        "a swapped or dropped word, stock-photo prefixes and suffixes"},
    "paraphrase": {"embedder": "minilm", "threshold": 0.8, "rule": "cosine",
                   "about": "semantic paraphrases: captions that say the same thing in other words"},
}
DEFAULT_PRESET = "copies"
DEFAULT_K = 10
DEFAULT_ORDER = "keep desc, score__specificity desc"
MEMORY = ("auto", "in", "out")


@dataclass
class DedupOptions:
    embedder: str | None = None  # None: the preset's
    threshold: float | None = None  # None: the preset's
    device: str = "cpu"
    k: int = DEFAULT_K
    preset: str = DEFAULT_PRESET
    order: str | None = None  # "col [asc|desc], ..."; sample_id always breaks ties
    engine: str = "local"  # local, or ray: embedding and search on Ray (curate.engines.ray_dedup, chosen by curate.engines.dedup)
    address: str | None = None  # with engine ray: a running cluster; None starts a local Ray
    prefer: list[str] | None = None  # runs whose rows represent a group first, most preferred first
    cache: str | None = None  # embeddings + neighbour table; None: RUN/dedup (one run), $CURATE_CACHE/dedup (several)
    memory: str = "auto"  # in, out (of core: curate.dedup.stream), auto: out from OUT_OF_CORE_TEXTS distinct texts
    cache_name: str | None = None  # how dedup.json names the cache (its URL, for a cache on a store)


def resolve(opts: DedupOptions) -> dict:
    if opts.preset not in PRESETS:
        raise CurateError(f"unknown preset {opts.preset!r}; presets: {', '.join(PRESETS)}")
    p = PRESETS[opts.preset]
    t = p["threshold"] if opts.threshold is None else float(opts.threshold)
    if not FLOOR <= t < 1.0:
        raise CurateError(f"threshold must be at least {FLOOR} and below 1, got {t}")
    if opts.memory not in MEMORY:
        raise CurateError(f"memory must be one of {', '.join(MEMORY)}, got {opts.memory!r}")
    if not 1 <= opts.k <= 1000:
        raise CurateError(f"k must be between 1 and 1000, got {opts.k}")
    return {"preset": opts.preset, "embedder": opts.embedder or p["embedder"], "threshold": t,
            "rule": p["rule"], "k": opts.k, "device": opts.device,
            "engine": opts.engine, "address": opts.address, "memory": opts.memory}


# -- reading the run ----------------------------------------------------------------------


def parse_order(spec: str | None, columns: dict[str, pl.DataType]) -> tuple[list[tuple[str, bool]], list[str]]:
    """``"keep desc, score__x desc"`` -> [(column, descending)], plus notes on skipped columns.

    In the default order a missing column is skipped (and noted); in a given order it is an
    error that lists the columns one can sort by.
    """
    default = spec is None
    spec = DEFAULT_ORDER if default else spec
    keys: list[tuple[str, bool]] = []
    notes: list[str] = []
    sortable = [c for c, t in columns.items() if t.is_numeric() or t == pl.Boolean]
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        parts = item.split()
        if len(parts) > 2 or (len(parts) == 2 and parts[1].lower() not in ("asc", "desc")):
            raise CurateError(f"order item {item!r}: write COLUMN, COLUMN asc or COLUMN desc")
        col, desc = parts[0], len(parts) == 2 and parts[1].lower() == "desc"
        if col not in sortable:
            if default:
                notes.append(f"order column {col} is not in the run; skipped")
                continue
            raise CurateError(f"cannot order by {col!r}; numeric columns of the run: {', '.join(sortable)}")
        keys.append((col, desc))
    if not any(c == "sample_id" for c, _ in keys):
        keys.append(("sample_id", False))
    return keys, notes


def select_rows(run: Path, order: list[tuple[str, bool]]) -> pl.DataFrame:
    """sample_id, caption and the order columns of every row of the run (not sorted)."""
    cols = ["sample_id", "caption"] + [c for c, _ in order if c not in ("sample_id", "keep")]
    lf = pl.scan_parquet(pinned_scores_glob(run))
    names = lf.collect_schema().names()
    extra = []
    if any(c == "keep" for c, _ in order):
        # keep, not counting a neardup rejection: dedup must not depend on its own output
        passes = pl.col("keep")
        if "reason" in names:
            passes = passes | (pl.col("reason") == "neardup")
        extra.append(passes.fill_null(False).alias("keep"))
    num = [pl.col(c).cast(pl.Float64) for c in dict.fromkeys(cols[2:])]
    return lf.select([pl.col("sample_id").cast(pl.UInt64), pl.col("caption")] + num + extra).collect()


def rank_rows(df: pl.DataFrame, order: list[tuple[str, bool]], first: list[str] = ()) -> pl.DataFrame:
    """``df`` (in its own order) with ``rank`` (0 = best): by ``first`` ascending, then
    ``order``. Only the key columns are sorted; the captions are never copied."""
    by = list(first) + [c for c, _ in order]
    desc = [False] * len(first) + [d for _, d in order]
    idx = df.select(pl.arg_sort_by(by, descending=desc, nulls_last=True)).to_series().to_numpy()
    rank = np.empty(len(idx), np.uint32)
    rank[idx] = np.arange(len(idx), dtype=np.uint32)
    return df.with_columns(pl.Series("rank", rank))


def check_run(run: Path) -> dict:
    info = load_run(run)
    parts = score_parts(run)
    if not parts:
        raise CurateError(f"{run}: no scores (scores/part-*.parquet); run `curate score` first")
    names = pl.scan_parquet(scores_glob(run)).collect_schema()
    for c in ("sample_id", "caption"):
        if c not in names:
            raise CurateError(f"{run}: scores lack the {c!r} column; re-run `curate score`")
    return {"info": info, "schema": dict(names)}


# -- the command --------------------------------------------------------------------------


def find_duplicates(rows: pl.DataFrame, cfg: dict, out: Path, reporter: Reporter | None = None,
                    neighbors: Callable | None = None, also: tuple = (),
                    run_map: Callable | None = None) -> tuple[pl.DataFrame, dict]:
    """The groups table for ``rows`` (sample_id, caption, rank: 0 = best) and its info.

    ``cfg`` comes from :func:`resolve`; ``out`` holds the embedding cache and the neighbour
    table (``neighbors/``, described by ``neighbors/neighbors.json``, written last), which is
    reused when the texts, the embedder and ``k`` are the same. ``neighbors`` builds the
    table (default :func:`build_neighbors`; ``curate.engines`` passes Ray's); ``also`` names
    other embedding caches to take vectors from. ``run_map`` (an engine's map over units of
    work) computes the groups by text range (:mod:`curate.dedup.ranges`) and assigns the
    vectors to partitions; the result is the same.
    """
    from curate.embed import check_device, load_embedder

    reporter = reporter or Reporter()
    check_device(cfg["device"])
    t0 = time.perf_counter()
    rows, texts = texts_of(rows)
    rows = rows.select("sample_id", "rank", "text", "norm_hash")  # the caption texts are not needed again
    t_text = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    emb = load_embedder(cfg["embedder"], cfg["device"], *build_hooks(reporter))
    key = neighbor_key(emb.model_hash, texts, cfg["k"])
    mode = cfg.get("memory", "auto")
    ooc = mode == "out" or (mode == "auto" and texts.height >= OUT_OF_CORE_TEXTS)
    pairs = arrays = files = None
    meta = out / NEIGHBORS / NEIGHBORS_META
    nb = read_json(meta)
    t_read_table = time.perf_counter()
    if nb.get("key") == key:
        parts = [numbered(out / NEIGHBORS, "part", p) for p in range(nb["parts"])]
        if run_map is not None:
            files = parts if all(f.is_file() for f in parts) else None
        elif ooc:
            arrays = text_arrays(parts, texts, cfg["rule"])
        else:
            pairs = load_neighbors(out, texts, nb["parts"])
        if pairs is not None or arrays is not None or files is not None:
            info = {"index": nb["index"], "parts": nb["parts"], "rows": nb["rows"], "reused": True,
                    "embedding": {**nb.get("embedding", {}), "embedded": 0, "cached": texts.height,
                                  "embed_s": 0.0, "problem": None},
                    "timings": {"embed_s": 0.0, "index_s": 0.0, "pairs_s": 0.0,
                                "table_read_s": round(time.perf_counter() - t_read_table, 3)}}
    if pairs is None and arrays is None and files is None:
        build = neighbors or (build_neighbors_stream if ooc else build_neighbors)
        extra = {"out_of_core": ooc, "run_map": run_map} if neighbors is not None else {}
        pairs, info = build(texts, emb, out, cfg["k"], reporter, also=also, **extra)
        info["reused"] = False
        write_json({"key": key, **{x: info[x] for x in ("index", "parts", "rows", "embedding")}}, meta)
        if run_map is not None:
            files, pairs = [numbered(out / NEIGHBORS, "part", p) for p in range(info["parts"])], None
        elif ooc:  # the arrays were accumulated while the table was written
            arrays = pairs.result(cfg["rule"])
            pairs = None
    info["key"] = key
    info["out_of_core"] = ooc
    t_nb = time.perf_counter()
    if files is not None:
        table, info["groups_by_range"] = groups_by_range(rows, texts, files, cfg, out, run_map)
    elif ooc:
        table = groups_from_arrays(rows, texts, *arrays, cfg["threshold"])
    else:
        table = groups(rows, texts, pairs, cfg["rule"], cfg["threshold"])
    del pairs, arrays
    info["embedder"] = emb.describe()
    info["texts"] = texts.height
    info["timings"] = {"texts_s": round(t_text - t0, 3), **info["timings"],
                       "groups_s": round(time.perf_counter() - t_nb, 3)}
    return table, info


def dedup(runs, opts: DedupOptions | None = None, reporter: Reporter | None = None,
          neighbors: Callable | None = None, run_map: Callable | None = None) -> dict:
    """Find duplicate groups in one scored run, or in several together (one group space);
    write each run's ``RUN/dedup/``; return the first run's ``dedup.json``.

    Every run's lock is held (in sorted path order), and each run's ``groups.parquet`` and
    ``dedup.json`` switch together (:func:`curate.layout.dedup_snapshot`)."""
    from curate.embed import check_device

    opts = opts or DedupOptions()
    if opts.cache and is_url(opts.cache):
        return cache_on_store(opts, lambda o: dedup(runs, o, reporter, neighbors, run_map))
    if any(is_url(r) for r in ([runs] if isinstance(runs, (str, Path)) else runs)):
        return dedup_on_stores([runs] if isinstance(runs, (str, Path)) else list(runs), opts,
                               lambda local, o: dedup(local, o, reporter, neighbors))
    if neighbors is None and opts.engine != "local":
        raise CurateError(f"engine {opts.engine!r} runs through curate.engines.dedup, which chooses its backend")
    cfg = resolve(opts)
    check_device(cfg["device"])
    paths = run_paths(runs)
    prefer = prefer_index(paths, opts.prefer)
    cache = cache_folder(paths, opts.cache)
    with lock_runs(paths, cache):
        return _dedup_locked(paths, prefer, cache, opts, cfg, reporter, neighbors, run_map)


def _dedup_locked(paths: list[Path], prefer: list[int], cache: Path, opts: DedupOptions, cfg: dict,
                  reporter, neighbors, run_map=None) -> dict:
    t_start = time.perf_counter()
    checked = [check_run(p) for p in paths]
    order, notes = parse_order(opts.order, common_schema([c["schema"] for c in checked]))
    rows = pl.concat([select_rows(p, order).with_columns(pl.lit(i, pl.UInt16).alias("run"))
                      for i, p in enumerate(paths)])
    held = set(rows["run"].unique().to_list())
    for i, p in enumerate(paths):
        if i not in held:
            raise CurateError(f"{p}: the run holds no rows; nothing to deduplicate")
    check_shared_ids(rows, paths)
    pref = pl.Series("_pref", prefer, pl.UInt16)
    rows = rank_rows(rows.with_columns(pref.gather(rows["run"])), order, first=["_pref"])
    runs_of = rows.select("sample_id", "run")
    rows = rows.select("sample_id", "caption", "rank")
    t_read = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    also = tuple(p / DEDUP / EMBEDDINGS for p in paths)
    hold = [rows]
    del rows  # find_duplicates holds the only reference: the captions go once their texts are made
    table, info = find_duplicates(hold.pop(), cfg, cache, reporter, neighbors, also=also, run_map=run_map)
    for note in foreign_caches(paths, info["embedder"]["model_sha256"]):
        (reporter or Reporter()).note(note)
        notes.append(note)
    t_w = time.perf_counter()
    table = table.join(runs_of, on="sample_id", how="left", maintain_order="left")
    the_set = set_info(paths, [c["info"] for c in checked], prefer, cfg)
    total = counts(table, info["texts"])
    staged = []
    for i, p in enumerate(paths):
        own = table.filter(pl.col("run") == i)
        snap = dedup_snapshot(p)
        version = snap.stage()
        write_parquet(own.drop("run").to_arrow(), version / GROUPS)
        tally = counts(own, info["texts"] if len(paths) == 1 else None)
        # rows whose group is represented by a row of another run of the set
        tally["represented_by_other_runs"] = int(own.filter(~pl.col("dup_group").is_in(own["sample_id"].implode())).height)
        staged.append((snap, version, tally))
    results = []
    for (snap, version, tally), c in zip(staged, checked):
        result = {
            "curate_version": __version__,
            "command": "dedup",
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "run_key": c["info"].get("key"),
            "set": the_set,
            **{k: cfg[k] for k in ("preset", "threshold", "rule", "k", "engine")},
            "floor": FLOOR,
            "decision": f"duplicate when score__neardup > {cfg['threshold']}: the highest {cfg['rule']} "
                        "to a better-ranked caption among its neighbours (SemDeDup rule); "
                        f"any threshold >= {FLOOR} in `curate decide` re-decides exactly",
            "order": (["run preference (--prefer)"] if opts.prefer else [])
                     + [f"{col} {'desc' if d else 'asc'}" for col, d in order],
            "notes": notes,
            "embedder": info["embedder"],
            "index": info["index"],
            "embedding": info["embedding"],
            "cache": opts.cache_name or str(cache.resolve()),
            "neighbors": {k: info[k] for k in ("key", "parts", "rows", "reused", "index", "out_of_core")},
            "counts": tally,
            "set_counts": total,
            **{x: info[x] for x in ("engine_info", "groups_by_range") if x in info},
            "timings": {"read_s": round(t_read - t_start, 3), **info["timings"],
                        "write_s": round(time.perf_counter() - t_w, 3),
                        "total_s": round(time.perf_counter() - t_start, 3)},
        }
        write_json(result, version / DEDUP_JSON)
        results.append(result)
    for snap, version, _ in staged:
        snap.commit(version)
    return {**results[0], "per_run": {str(p): r["counts"] for p, r in zip(paths, results)}}


def build_hooks(reporter: Reporter):
    """Progress of the static model's one-off distillation: a bar on a terminal, and a line
    when it starts and when it ends either way (a log shows why the first run waits)."""
    from curate.embed import static_dir

    state: dict = {"done": 0}

    def total(n: int) -> None:
        state.update(n=n, t0=time.perf_counter(), tick=reporter.stage("distilling the static model (once)", n))
        reporter.say(f"distilling the static embedding model from all-MiniLM-L6-v2 ({n:,} tokens, about one "
                     f"CPU-minute), once: it is kept in {static_dir()}")

    def progress(n: int) -> None:
        state.get("tick", lambda _: None)(n)
        state["done"] += n
        if state["done"] == state.get("n"):
            reporter.say(f"static embedding model distilled in {time.perf_counter() - state['t0']:.0f} s")

    return progress, total
