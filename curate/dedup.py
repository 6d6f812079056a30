"""Near-duplicate detection: ``curate dedup RUN`` writes ``RUN/dedup/``.

Steps, all vectorised (Polars, NumPy, FAISS; one model call per batch):

1. **Texts.** Every caption gets ``norm`` (NFKC, lower case, no punctuation, collapsed
   white space) and ``clean`` (``norm`` without stock-photo boilerplate affixes such as
   "Stock Photo -" or "- royalty free image"; see :mod:`curate.dedup_text`). Captions with
   the same ``clean`` text are duplicates of each other with similarity 1 (``exact`` when
   their ``norm`` texts are equal too). Empty captions take no part.
2. **Ranking.** Rows are ranked by a quality order, by default ``keep`` (rows the last
   decision keeps first; a ``neardup`` rejection does not count), then
   ``score__specificity`` descending, then ``sample_id``. The best row of each distinct
   ``clean`` text stands for it; distinct texts are numbered in rank order.
3. **Neighbours.** Each distinct text is embedded once (cached on disk by model and text
   hash, :mod:`curate.embed`); FAISS finds its ``k`` nearest texts (:mod:`curate.dedup_index`).
   The table (``sample_id``, ``neighbor_id``, ``cosine``, ``jaccard``) is written once to
   ``RUN/dedup/neighbors/`` and reused by any later run with the same texts and embedder.
4. **Similarity.** Per preset rule: ``copies`` (default) uses ``min(cosine, jaccard)``,
   where ``jaccard`` is the Jaccard index of the two ``clean`` texts' sets of distinct
   words; ``paraphrase`` uses the embedding cosine alone. Pairs with cosine below
   :data:`FLOOR` count as 0.
5. **Decision (the SemDeDup rule).** ``score__neardup`` of a row is its highest similarity
   to any *better-ranked* row among its neighbours (1 for a second copy of the same text).
   A row is a duplicate when that score is above the threshold; it then points at that
   better-ranked row, and following the pointers ends at a row that is not a duplicate: the
   group's representative. ``dup_group`` is the representative's ``sample_id``.

Why this rule and not connected components: components chain (A~B and B~C put A and C
together even when they have nothing in common), so a group can grow to hold captions that
are not duplicates of each other and its size depends on the order of discovery. The
SemDeDup rule (Abbas et al. 2023) judges every row only against rows ranked above it: the
set of rows kept is exactly ``{score__neardup <= threshold}``, so a new threshold is an
ordinary ``max`` in ``curate decide`` (any value of at least :data:`FLOOR`), it only ever
keeps more rows as it rises, and the representative is always the best-ranked member.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from . import __version__
from .atomic import write_json, write_parquet
from .dedup_text import text_columns, word_jaccard
from .errors import CurateError
from .io import text_hash64
from .run import load_run

#: name -> (embedder, threshold, rule). Measured rates: see the README and tests/test_dedup.py.
PRESETS: dict[str, dict] = {
    "copies": {"embedder": "static", "threshold": 0.75, "rule": "min(cosine, jaccard)",
               "about": "near-verbatim and templated copies: case, punctuation, white space, "
                        "a swapped or dropped word, stock-photo prefixes and suffixes"},
    "paraphrase": {"embedder": "minilm", "threshold": 0.8, "rule": "cosine",
                   "about": "semantic paraphrases: captions that say the same thing in other words"},
}
DEFAULT_PRESET = "copies"
#: Similarities below this are not stored; thresholds from here up are exact re-decisions.
FLOOR = 0.5
DEFAULT_K = 10
DEFAULT_ORDER = "keep desc, score__specificity desc"
NEIGHBOR_PART_ROWS = 1_000_000
PAIR_CHUNK = 1_000_000
DEDUP = "dedup"


class Reporter:
    """Progress hooks; the CLI draws bars with them, the library default does nothing."""

    def stage(self, name: str, total: int | None) -> Callable[[float], None]:
        return lambda n: None

    def note(self, message: str) -> None:
        pass


@dataclass
class DedupOptions:
    embedder: str | None = None  # None: the preset's
    threshold: float | None = None  # None: the preset's
    device: str = "cpu"
    k: int = DEFAULT_K
    preset: str = DEFAULT_PRESET
    order: str | None = None  # "col [asc|desc], ..."; sample_id always breaks ties


def resolve(opts: DedupOptions) -> dict:
    if opts.preset not in PRESETS:
        raise CurateError(f"unknown preset {opts.preset!r}; presets: {', '.join(PRESETS)}")
    p = PRESETS[opts.preset]
    t = p["threshold"] if opts.threshold is None else float(opts.threshold)
    if not FLOOR <= t < 1.0:
        raise CurateError(f"threshold must be at least {FLOOR} and below 1, got {t}")
    if not 1 <= opts.k <= 1000:
        raise CurateError(f"k must be between 1 and 1000, got {opts.k}")
    return {"preset": opts.preset, "embedder": opts.embedder or p["embedder"], "threshold": t,
            "rule": p["rule"], "k": opts.k, "device": opts.device}


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


def read_rows(run: Path, order: list[tuple[str, bool]]) -> pl.DataFrame:
    """sample_id, caption, and ``rank`` (0 = best) of every row of the run."""
    cols = ["sample_id", "caption"] + [c for c, _ in order if c not in ("sample_id", "keep")]
    lf = pl.scan_parquet(str(run / "scores" / "part-*.parquet"))
    names = lf.collect_schema().names()
    extra = []
    if any(c == "keep" for c, _ in order):
        # keep, not counting a neardup rejection: dedup must not depend on its own output
        passes = pl.col("keep")
        if "reason" in names:
            passes = passes | (pl.col("reason") == "neardup")
        extra.append(passes.fill_null(False).alias("keep"))
    df = lf.select([pl.col(c) for c in dict.fromkeys(cols)] + extra).collect()
    by = [c for c, _ in order]
    desc = [d for _, d in order]
    return df.sort(by, descending=desc, nulls_last=True).with_row_index("rank").select(
        "sample_id", "caption", "rank")


def check_run(run: Path) -> dict:
    info = load_run(run)
    parts = sorted((run / "scores").glob("part-*.parquet"))
    if not parts:
        raise CurateError(f"{run}: no scores (scores/part-*.parquet); run `curate score` first")
    names = pl.scan_parquet(str(run / "scores" / "part-*.parquet")).collect_schema()
    for c in ("sample_id", "caption"):
        if c not in names:
            raise CurateError(f"{run}: scores lack the {c!r} column; re-run `curate score`")
    return {"info": info, "schema": dict(names)}


# -- texts --------------------------------------------------------------------------------


def texts_of(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows + norm_hash, clean_hash, text; distinct texts in rank order).

    ``text`` is the index of the row's distinct clean text, numbered by the rank of its best
    row; null for an empty caption. The texts frame has text, clean, clean_hash, head (the
    best row's sample_id), rows (how many rows share it).
    """
    rows = text_columns(rows)
    rows = rows.with_columns(
        text_hash64(rows["norm"]).alias("norm_hash"),
        text_hash64(rows["clean"]).alias("clean_hash"),
        (pl.col("clean") != "").alias("_has"),
    )
    texts = (
        rows.filter("_has").group_by("clean_hash")
        .agg(pl.col("clean").first(), pl.col("rank").min(), pl.col("sample_id").sort_by("rank").first().alias("head"),
             pl.len().alias("rows"))
        .sort("rank").with_row_index("text").drop("rank")
        .with_columns(pl.col("text").cast(pl.Int64))
    )
    rows = rows.join(texts.select("clean_hash", "text"), on="clean_hash", how="left")
    rows = rows.with_columns(pl.when("_has").then(pl.col("text")).alias("text")).drop("_has", "norm")
    return rows, texts


# -- neighbours ---------------------------------------------------------------------------


def _texts_digest(texts: pl.DataFrame) -> str:
    h = np.sort(texts["clean_hash"].to_numpy())
    return hashlib.sha256(h.tobytes()).hexdigest()[:16]


def neighbor_key(embedder_hash: str, texts: pl.DataFrame, k: int) -> str:
    from .dedup_index import plan

    desc = {"embedder": embedder_hash, "texts": _texts_digest(texts), "k": k,
            "index": {x: y for x, y in plan(texts.height, 0, k).items() if x != "dim"}, "floor": FLOOR, "v": 1}
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def word_sets(texts: pl.DataFrame) -> pl.Series:
    """Each text's distinct words as hashed ids (in-process only; never stored)."""
    return texts.select(
        pl.col("clean").str.split(" ").list.eval(pl.element().hash()).list.unique().alias("w")
    )["w"]


def pair_jaccard(words: pl.Series, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    out = np.zeros(len(i), np.float32)
    for s in range(0, len(i), PAIR_CHUNK):  # chunks bound the memory of the list columns
        a = words.gather(i[s:s + PAIR_CHUNK])
        b = words.gather(j[s:s + PAIR_CHUNK])
        out[s:s + PAIR_CHUNK] = pl.DataFrame({"a": a, "b": b}).select(
            word_jaccard(pl.col("a"), pl.col("b")))[:, 0].to_numpy()
    return out


def build_neighbors(texts: pl.DataFrame, emb, out: Path, k: int, reporter: Reporter) -> tuple[pl.DataFrame, dict]:
    """Embed, search and write the neighbour table; returns (pairs, info)."""
    from .dedup_index import knn
    from .embed import embed_texts

    t0 = time.perf_counter()
    ticks: dict = {}

    def loading() -> None:
        ticks["load"] = reporter.stage(f"loading {emb.id}", 1)

    def tick(n: float) -> None:
        if "embed" not in ticks:
            ticks.get("load", lambda _: None)(1)
            ticks["embed"] = reporter.stage("embedding", texts.height)
        ticks["embed"](n)

    vecs, einfo = embed_texts(texts["clean"], texts["clean_hash"].to_numpy(), emb, out / "embeddings", tick,
                              loading=loading)
    if einfo["problem"]:
        reporter.note(einfo["problem"])
    t1 = time.perf_counter()
    tick = reporter.stage("searching", texts.height)
    ids, sims, params = knn(vecs, k, tick)
    vecs_dim = vecs.shape[1]
    del vecs
    t2 = time.perf_counter()
    n, kk = ids.shape
    i = np.repeat(np.arange(n, dtype=np.int64), kk)
    j = ids.ravel()
    cos = np.clip(sims.ravel(), -1.0, 1.0).astype(np.float32)
    ok = j >= 0
    i, j, cos = i[ok], j[ok], cos[ok]
    jaccard = np.zeros(len(i), np.float32)
    near = np.flatnonzero(cos >= FLOOR)
    jaccard[near] = pair_jaccard(word_sets(texts), i[near], j[near])
    heads = texts["head"].to_numpy()
    hashes = texts["clean_hash"].to_numpy()
    pairs = pl.DataFrame({
        "sample_id": pl.Series(heads[i], dtype=pl.UInt64),
        "neighbor_id": pl.Series(heads[j], dtype=pl.UInt64),
        "cosine": cos, "jaccard": jaccard,
        "text_hash": pl.Series(hashes[i], dtype=pl.UInt64),
        "neighbor_hash": pl.Series(hashes[j], dtype=pl.UInt64),
    })
    folder = out / "neighbors"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    nparts = max(1, -(-pairs.height // NEIGHBOR_PART_ROWS))
    for p in range(nparts):
        write_parquet(pairs.slice(p * NEIGHBOR_PART_ROWS, NEIGHBOR_PART_ROWS).to_arrow(),
                      folder / f"part-{p:05d}.parquet")
    t3 = time.perf_counter()
    info = {"index": {**params, "dim": int(vecs_dim)}, "embedding": einfo,
            "timings": {"embed_s": round(t1 - t0, 3), "index_s": round(t2 - t1, 3), "pairs_s": round(t3 - t2, 3)},
            "parts": nparts, "rows": pairs.height}
    return pairs.with_columns(pl.Series("i", i), pl.Series("j", j)), info


def load_neighbors(out: Path, texts: pl.DataFrame, nparts: int) -> pl.DataFrame | None:
    folder = out / "neighbors"
    files = [folder / f"part-{p:05d}.parquet" for p in range(nparts)]
    if not all(f.is_file() for f in files):
        return None
    try:
        pairs = pl.read_parquet([str(f) for f in files])
    except Exception:  # a damaged part: recompute
        return None
    idx = texts.select(pl.col("clean_hash"), pl.col("text"), pl.col("head"))
    pairs = (
        pairs.join(idx.rename({"clean_hash": "text_hash", "text": "i", "head": "_h1"}), on="text_hash", how="inner")
        .join(idx.rename({"clean_hash": "neighbor_hash", "text": "j", "head": "_h2"}), on="neighbor_hash", how="inner")
        .with_columns(pl.col("_h1").alias("sample_id"), pl.col("_h2").alias("neighbor_id")).drop("_h1", "_h2")
    )
    return pairs


# -- groups -------------------------------------------------------------------------------


def similarity(rule: str) -> pl.Expr:
    cos = pl.col("cosine")
    sim = pl.min_horizontal(cos, pl.col("jaccard")) if rule.startswith("min") else cos
    return pl.when(cos >= FLOOR).then(sim).otherwise(0.0).cast(pl.Float64)


def best_better(pairs: pl.DataFrame, rule: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """For every text: (highest similarity to a better-ranked neighbour text, that text or -1).

    Pairs count in both directions (if A lists B, B is also compared with A); ties go to the
    better-ranked text.
    """
    both = pl.concat([
        pairs.select("i", "j", similarity(rule).alias("s")),
        pairs.select(pl.col("j").alias("i"), pl.col("i").alias("j"), similarity(rule).alias("s")),
    ]).filter((pl.col("j") < pl.col("i")) & (pl.col("s") > 0))
    best = both.sort(["i", "s", "j"], descending=[False, True, False]).unique("i", keep="first")
    score = np.zeros(n, np.float64)
    target = np.full(n, -1, np.int64)
    score[best["i"].to_numpy()] = best["s"].to_numpy()
    target[best["i"].to_numpy()] = best["j"].to_numpy()
    return score, target


def roots(parent: np.ndarray) -> np.ndarray:
    """Follow pointers to their end (pointer jumping: log2(depth) vectorised steps)."""
    r = parent.copy()
    while True:
        nxt = r[r]
        if np.array_equal(nxt, r):
            return r
        r = nxt


def nearest(pairs: pl.DataFrame, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Each text's most similar other text by cosine, either direction (-1 when none)."""
    both = pl.concat([
        pairs.select("i", "j", "cosine"),
        pairs.select(pl.col("j").alias("i"), pl.col("i").alias("j"), "cosine"),
    ])
    top = both.sort(["i", "cosine", "j"], descending=[False, True, False]).unique("i", keep="first")
    nb = np.full(n, -1, np.int64)
    cs = np.full(n, np.nan, np.float64)
    nb[top["i"].to_numpy()] = top["j"].to_numpy()
    cs[top["i"].to_numpy()] = top["cosine"].to_numpy()
    return nb, cs


def groups(rows: pl.DataFrame, texts: pl.DataFrame, pairs: pl.DataFrame, rule: str, threshold: float) -> pl.DataFrame:
    """The groups table: one row per sample (see the module docstring)."""
    n = texts.height
    score, target = best_better(pairs, rule, n)
    dup = score > threshold
    parent = np.where(dup, target, np.arange(n))
    root = roots(parent)
    nb, nb_cos = nearest(pairs, n)
    heads = texts["head"].to_numpy()
    tx = pl.DataFrame({
        "text": np.arange(n, dtype=np.int64),
        "_score": score, "_dup": dup,
        "_target": pl.Series(np.where(dup, heads[np.maximum(target, 0)], 0), dtype=pl.UInt64),
        "_root": pl.Series(heads[root], dtype=pl.UInt64),
        "_nb": pl.Series(np.where(nb >= 0, heads[np.maximum(nb, 0)], 0), dtype=pl.UInt64),
        "_nbok": nb >= 0, "_nbcos": nb_cos,
        "_head": pl.Series(heads, dtype=pl.UInt64), "_rows": texts["rows"],
    })
    # the second-best row of a text is the nearest row of its head (cosine 1)
    second = (
        rows.filter(pl.col("text").is_not_null()).sort("rank")
        .group_by("text").agg(pl.col("sample_id").get(1, null_on_oob=True).alias("_second"))
    )
    df = rows.join(tx, on="text", how="left").join(second, on="text", how="left")
    is_head = pl.col("sample_id") == pl.col("_head")
    has = pl.col("text").is_not_null()
    copy = has & ~is_head  # another row has the same clean text and ranks above this one
    dup_of = (
        pl.when(copy).then(pl.col("_head"))
        .when(has & pl.col("_dup")).then(pl.col("_target"))
        .otherwise(pl.lit(None, pl.UInt64))
    )
    out = df.with_columns(
        pl.when(has).then(pl.col("_root")).otherwise(pl.col("sample_id")).alias("dup_group"),
        dup_of.alias("duplicate_of"),
        pl.when(copy).then(1.0).when(has).then(pl.col("_score")).otherwise(0.0).alias("score__neardup"),
        pl.when(copy).then(pl.col("_head"))
        .when(has & (pl.col("_rows") > 1)).then(pl.col("_second"))
        .when(has & pl.col("_nbok")).then(pl.col("_nb")).otherwise(pl.lit(None, pl.UInt64)).alias("nearest_id"),
        pl.when(copy | (has & (pl.col("_rows") > 1))).then(1.0)
        .when(has & pl.col("_nbok")).then(pl.col("_nbcos")).otherwise(None).alias("nearest_cosine"),
    )
    target_norm = out.select(pl.col("sample_id").alias("duplicate_of"), pl.col("norm_hash").alias("_tn"))
    out = out.join(target_norm, on="duplicate_of", how="left")
    kind = (
        pl.when(pl.col("duplicate_of").is_null()).then(pl.lit("none"))
        .when(pl.col("_tn") == pl.col("norm_hash")).then(pl.lit("exact"))
        .otherwise(pl.lit("near"))
    )
    out = out.with_columns(
        kind.alias("dup_kind"),
        pl.len().over("dup_group").cast(pl.UInt32).alias("group_size"),
        (pl.col("sample_id") == pl.col("dup_group")).alias("is_representative"),
    )
    return out.select(
        pl.col("sample_id").cast(pl.UInt64), pl.col("dup_group").cast(pl.UInt64), "group_size",
        "is_representative", pl.col("dup_kind").cast(pl.String), "duplicate_of", "score__neardup",
        pl.col("nearest_id").cast(pl.UInt64), pl.col("nearest_cosine").cast(pl.Float64), "rank",
    ).sort("rank").drop("rank")


# -- the command --------------------------------------------------------------------------


def find_duplicates(rows: pl.DataFrame, cfg: dict, out: Path, reporter: Reporter | None = None,
                    prior: dict | None = None) -> tuple[pl.DataFrame, dict]:
    """The groups table for ``rows`` (sample_id, caption, rank: 0 = best) and its info.

    ``cfg`` comes from :func:`resolve`; ``out`` holds the embedding cache and the neighbour
    table; ``prior`` is an earlier ``dedup.json`` whose neighbour table may be reused.
    """
    from .embed import check_device, load_embedder

    reporter = reporter or Reporter()
    check_device(cfg["device"])
    t0 = time.perf_counter()
    rows, texts = texts_of(rows)
    t_text = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    emb = load_embedder(cfg["embedder"], cfg["device"], *_build_hooks(reporter))
    key = neighbor_key(emb.model_hash, texts, cfg["k"])
    pairs = None
    nb = (prior or {}).get("neighbors", {})
    if nb.get("key") == key:
        pairs = load_neighbors(out, texts, nb["parts"])
        if pairs is not None:
            info = {"index": nb["index"], "parts": nb["parts"], "rows": nb["rows"], "reused": True,
                    "embedding": {**(prior or {}).get("embedding", {}), "embedded": 0, "cached": texts.height,
                                  "embed_s": 0.0, "problem": None},
                    "timings": {"embed_s": 0.0, "index_s": 0.0, "pairs_s": 0.0}}
    if pairs is None:
        pairs, info = build_neighbors(texts, emb, out, cfg["k"], reporter)
        info["reused"] = False
    info["key"] = key
    t_nb = time.perf_counter()
    table = groups(rows, texts, pairs, cfg["rule"], cfg["threshold"])
    info["embedder"] = emb.describe()
    info["texts"] = texts.height
    info["timings"] = {"texts_s": round(t_text - t0, 3), **info["timings"],
                       "groups_s": round(time.perf_counter() - t_nb, 3)}
    return table, info


def dedup(run: str | os.PathLike, opts: DedupOptions | None = None, reporter: Reporter | None = None) -> dict:
    """Find duplicate groups in a scored run; write ``RUN/dedup/``; return ``dedup.json``."""
    from .embed import check_device

    opts = opts or DedupOptions()
    cfg = resolve(opts)
    check_device(cfg["device"])
    run = Path(run)
    t_start = time.perf_counter()
    checked = check_run(run)
    order, notes = parse_order(opts.order, checked["schema"])
    rows = read_rows(run, order)
    if rows.height == 0:
        raise CurateError(f"{run}: the run holds no rows; nothing to deduplicate")
    t_read = time.perf_counter()
    out = run / DEDUP
    table, info = find_duplicates(rows, cfg, out, reporter, _prior(out))
    t_w = time.perf_counter()
    write_parquet(table.to_arrow(), out / "groups.parquet")
    counts = _counts(table, info["texts"])
    result = {
        "curate_version": __version__,
        "command": "dedup",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_key": checked["info"].get("key"),
        **{k: cfg[k] for k in ("preset", "threshold", "rule", "k")},
        "floor": FLOOR,
        "decision": f"duplicate when score__neardup > {cfg['threshold']}: the highest {cfg['rule']} "
                    "to a better-ranked caption among its neighbours (SemDeDup rule); "
                    f"any threshold >= {FLOOR} in `curate decide` re-decides exactly",
        "order": [f"{c} {'desc' if d else 'asc'}" for c, d in order],
        "notes": notes,
        "embedder": info["embedder"],
        "index": info["index"],
        "embedding": info["embedding"],
        "neighbors": {k: info[k] for k in ("key", "parts", "rows", "reused", "index")},
        "counts": counts,
        "timings": {"read_s": round(t_read - t_start, 3), **info["timings"],
                    "write_s": round(time.perf_counter() - t_w, 3),
                    "total_s": round(time.perf_counter() - t_start, 3)},
    }
    write_json(result, out / "dedup.json")
    return result


def _build_hooks(reporter: Reporter):
    state: dict = {}

    def total(n: int) -> None:
        state["tick"] = reporter.stage("distilling the static model (once)", n)

    def progress(n: int) -> None:
        state.get("tick", lambda _: None)(n)

    return progress, total


def _prior(out: Path) -> dict:
    p = out / "dedup.json"
    if not p.is_file():
        return {}
    try:
        return json.loads(p.read_text())
    except ValueError:
        return {}


def _counts(table: pl.DataFrame, n_texts: int) -> dict:
    c = table.select(
        pl.len().alias("rows"),
        (pl.col("dup_kind") == "exact").sum().alias("exact"),
        (pl.col("dup_kind") == "near").sum().alias("near"),
        pl.col("duplicate_of").is_not_null().sum().alias("duplicate_rows"),
        pl.col("dup_group").n_unique().alias("groups"),
        (pl.col("is_representative") & (pl.col("group_size") > 1)).sum().alias("groups_with_duplicates"),
        pl.col("group_size").max().alias("largest_group"),
    ).row(0, named=True)
    c = {k: int(v or 0) for k, v in c.items()}
    c["texts"] = n_texts
    c["kept"] = c["rows"] - c["duplicate_rows"]
    return c


class RichReporter(Reporter):
    """Progress bars on a terminal (rich); notes are printed either way."""

    def __init__(self, console) -> None:
        self.console = console
        self.bar = None
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=console, transient=True)

    def __enter__(self) -> "RichReporter":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def stage(self, name: str, total: int | None) -> Callable[[float], None]:
        if self.bar is None:
            return lambda n: None
        task = self.bar.add_task(name, total=total)
        return lambda n: self.bar.update(task, advance=n)

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)
