"""Out-of-core dedup: the same neighbour table and groups in memory that does not grow with
the vectors or the table.

The in-memory path (:func:`curate.dedup.neighbors.build_neighbors`) holds every vector as
float32, the k-means assignments, the ``NPROBE x k`` candidate lists and the pair frame at
once (about 2.2 KB per distinct text). This path keeps only small per-text arrays:

1. **Vectors.** The embedding cache's float16 shards stay on disk (a lazy
   :class:`~curate.dedup.cache.EmbeddingCache`); the texts' vectors are copied, shard by
   shard, into one float16 ``.npy`` file in text order (``scratch/vectors.npy``, removed at
   the end). :class:`VectorFile` reads rows of it as float32 through 64 MB windows mapped
   one at a time, so its pages do not stay in the process's memory. The model calls run
   in a child process (:mod:`curate.dedup.embed_process`).
2. **Partition.** :func:`curate.dedup.index.partition`, the in-memory path's (the same
   sample, seed and centroids; two levels past 4,096 partitions).
3. **Search.** Partition-ordered index arrays (vector ids sorted by partition); a bounded
   batch of whole partitions (:data:`BATCH_ROWS` entries) is read, searched exactly
   (:func:`curate.dedup.index.search_local`, or an engine's hook such as Ray tasks), and
   merged into running ``[n, k]`` best-neighbour arrays (int32 ids, float32 cosines:
   8 bytes per neighbour) with the in-memory path's rule
   (:func:`curate.dedup.index.top_distinct`): the same neighbours, in the same order.
4. **Table.** Written to Parquet part by part (:data:`PART_PAIRS` rows a part) with the word
   Jaccard of each pair above the floor.
5. **Groups.** The per-text arrays of :func:`curate.dedup.groups.best_better` and
   :func:`~curate.dedup.groups.nearest` (:class:`TextArrays`) are accumulated part by part
   while the table is written, or read back from it by a rerun (:func:`text_arrays`), then
   :func:`~curate.dedup.groups.groups_from_arrays`.

Results equal the in-memory path's (``tests/dedup/test_dedup_stream.py`` compares them).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from curate.atomic import write_parquet
from curate.dedup.groups import FLOOR
from curate.dedup.index import NPROBE, partition, plan, search_cluster, search_local, top_distinct
from curate.dedup.neighbors import embed_progress, pair_frame, word_sets
from curate.layout import EMBEDDINGS, NEIGHBORS, SCRATCH, VECTORS, numbered
from curate.memory import bound_allocator, release

#: distinct texts from which ``memory="auto"`` takes this path
OUT_OF_CORE_TEXTS = 200_000
#: partition entries (vector, partition) searched per batch: 64k x 256-d float32 = 64 MiB
BATCH_ROWS = 65_536
#: texts embedded per cache shard on this path (float16 shards; bounded model output)
EMBED_CHUNK = 100_000
#: neighbour rows per Parquet part on this path (a part's frame and word lists stay small)
PART_PAIRS = 250_000
#: bytes of the scratch matrix mapped at a time (:class:`VectorFile`)
WINDOW_BYTES = 64 << 20


class VectorFile:
    """Rows of a float16 ``.npy`` matrix as float32 copies, read through windows of
    :data:`WINDOW_BYTES` of the file mapped one at a time and unmapped at once.

    Mapping the whole file would not do: a scattered read faults in the pages around each
    row (the kernel's fault-around), so one batch of rows from all over the file maps nearly
    all of it (4 GB at 8.6M texts) into the process's resident memory while the read lasts."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        m = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.offset = m.shape, m.dtype, int(m.offset)
        del m
        row = max(1, int(np.prod(self.shape[1:])) * self.dtype.itemsize)
        self.window = max(1, WINDOW_BYTES // row)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        n = self.shape[0]
        idx = np.arange(n)[key] if isinstance(key, slice) else np.asarray(key, dtype=np.int64).ravel()
        out = np.empty((len(idx),) + tuple(self.shape[1:]), np.float32)
        if len(idx) == 0:
            return out
        idx = np.where(idx < 0, idx + n, idx)
        order = np.argsort(idx, kind="stable")
        win = idx[order] // self.window
        starts = np.flatnonzero(np.r_[True, win[1:] != win[:-1]])
        ends = np.r_[starts[1:], len(order)]
        row = int(np.prod(self.shape[1:])) * self.dtype.itemsize
        for a, b in zip(starts, ends):  # a loop over file windows, not rows
            w = int(win[a])
            lo = w * self.window
            rows = min(self.window, n - lo)
            m = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset + lo * row,
                          shape=(rows,) + tuple(self.shape[1:]))
            out[order[a:b]] = m[idx[order[a:b]] - lo]
            del m
        return out


def merge_batch(best_ids: np.ndarray, best_sims: np.ndarray, own: np.ndarray, ids: np.ndarray,
                sims: np.ndarray, k: int) -> None:
    """Merge the lists found in one batch (row r belongs to vector ``own[r]``; rows in
    partition order) into the running best arrays, in place. Earlier partitions' lists come
    first, as in :func:`curate.dedup.index.merge_lists`."""
    eo = np.argsort(own, kind="stable")
    u, start, cnt = np.unique(own[eo], return_index=True, return_counts=True)
    grp = np.repeat(np.arange(len(u)), cnt)
    rank = np.arange(len(eo)) - start[grp]
    width = 1 + int(cnt.max())
    cid = np.full((len(u), width, k), -1, np.int64)
    cs = np.full((len(u), width, k), -np.inf, np.float32)
    cid[:, 0] = best_ids[u]
    cs[:, 0] = best_sims[u]
    cid[grp, 1 + rank] = ids[eo]
    cs[grp, 1 + rank] = sims[eo]
    top_ids, top_sims = top_distinct(cid.reshape(len(u), width * k), cs.reshape(len(u), width * k), k)
    best_ids[u] = top_ids
    best_sims[u] = top_sims


def knn_stream(vecs, k: int, progress: Callable | None = None,
               search_clusters: Callable | None = None, run_map: Callable | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """:func:`curate.dedup.index.knn` over a :class:`VectorFile` (or any array) in bounded
    memory: (ids [n, k] int32, cosines [n, k] float32, params), the same values.

    ``search_clusters`` has :func:`curate.dedup.index.search_local`'s signature; it is called
    once per batch with the batch's vectors and batch-local ids; ``run_map`` assigns the
    vectors to partitions (:func:`curate.dedup.index.partition`)."""
    n, dim = vecs.shape
    p = plan(n, dim, k)
    k = p["k"]
    p["batch_rows"] = BATCH_ROWS
    if k == 0:
        return np.zeros((n, 0), np.int32), np.zeros((n, 0), np.float32), p
    if p["exact"]:  # small: one exact search, as in memory
        found = search_cluster(vecs[np.arange(n)], np.arange(n), k)
        if progress:
            progress(n)
        return found[0].astype(np.int32), found[1], p
    flat = partition(vecs, p, run_map).ravel()
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(p["nlist"] + 1))
    del flat
    owner = (order // NPROBE).astype(np.int32)  # = np.repeat(np.arange(n), NPROBE)[order]
    del order
    sizes = np.diff(bounds)
    p["cluster_sizes"] = {"min": int(sizes.min()), "median": int(np.median(sizes)), "max": int(sizes.max())}
    best_ids = np.full((n, k), -1, np.int32)
    best_sims = np.full((n, k), -np.inf, np.float32)
    c0, batches = 0, 0
    while c0 < p["nlist"]:  # a loop over batches of partitions, not rows
        c1 = max(c0 + 1, int(np.searchsorted(bounds, bounds[c0] + BATCH_ROWS, side="right")) - 1)
        c1 = min(c1, p["nlist"])
        lo, hi = int(bounds[c0]), int(bounds[c1])
        if hi > lo:
            own = owner[lo:hi]
            uniq, inv = np.unique(own, return_inverse=True)
            sub = vecs[uniq]
            out_ids = np.full((hi - lo, k), -1, np.int64)
            out_sims = np.full((hi - lo, k), -np.inf, np.float32)
            (search_clusters or search_local)(sub, inv.astype(np.int64), bounds[c0:c1 + 1] - lo, k,
                                              out_ids, out_sims, progress)
            gids = np.where(out_ids >= 0, uniq[np.maximum(out_ids, 0)], -1)
            merge_batch(best_ids, best_sims, own, gids, out_sims, k)
            batches += 1
        c0 = c1
    p["batches"] = batches
    return best_ids, best_sims, p


def write_pairs(ids: np.ndarray, sims: np.ndarray, texts: pl.DataFrame, folder: Path,
                acc: TextArrays | None = None) -> tuple[int, int]:
    """The neighbour table from the best arrays, part by part (the in-memory path's rows,
    in the same order); returns (parts, rows). ``acc`` takes each part's pairs, so that the
    groups need not read the table back."""
    n, kk = ids.shape
    step = max(1, PART_PAIRS // max(kk, 1))
    words = word_sets(texts)
    heads = texts["head"].to_numpy()
    hashes = texts["clean_hash"].to_numpy()
    parts = rows = 0
    for a in range(0, max(n, 1), step):
        b = min(n, a + step)
        i = np.repeat(np.arange(a, b, dtype=np.int64), kk)
        j = ids[a:b].astype(np.int64).ravel()
        cos = np.clip(sims[a:b].ravel(), -1.0, 1.0).astype(np.float32)
        frame = pair_frame(heads, hashes, words, i, j, cos)
        write_parquet(frame.to_arrow(), numbered(folder, "part", parts))
        if acc is not None:
            ok = j >= 0  # the rows pair_frame keeps, in its order
            acc.add(i[ok], j[ok], frame["cosine"].to_numpy(), frame["jaccard"].to_numpy())
        parts += 1
        rows += frame.height
    return parts, rows


def keep_best(val: np.ndarray, tgt: np.ndarray, rows: np.ndarray, v: np.ndarray, t: np.ndarray) -> None:
    """In place: ``val[r], tgt[r]`` become the highest ``v`` offered for row r (ties: the
    lowest ``t``), if it beats what they hold."""
    if len(rows) == 0:
        return
    o = np.lexsort((t, -v, rows))
    r = rows[o]
    first = np.flatnonzero(np.r_[True, r[1:] != r[:-1]])
    r, v, t = r[first], v[o][first], t[o][first]
    better = (v > val[r]) | ((v == val[r]) & (t < tgt[r]))
    val[r[better]] = v[better]
    tgt[r[better]] = t[better]


def rule_kind(rule: str) -> str:
    """``min`` for ``min(cosine, jaccard)``, ``cosine`` for ``cosine``."""
    return "min" if rule.startswith("min") else "cosine"


class TextArrays:
    """(score, target, nearest, nearest_cosine) per text, as :func:`groups.best_better` and
    :func:`groups.nearest` compute them, accumulated one batch of pairs at a time for each
    rule kind (:func:`rule_kind`): 16 bytes a text for the nearest, 16 per kind."""

    def __init__(self, n: int, kinds=("min", "cosine")) -> None:
        self.best = {kd: (np.zeros(n, np.float64), np.full(n, -1, np.int64)) for kd in kinds}
        self.ncos, self.nb = np.full(n, -np.inf, np.float64), np.full(n, -1, np.int64)

    def add(self, i: np.ndarray, j: np.ndarray, cos: np.ndarray, jac: np.ndarray) -> None:
        c = cos.astype(np.float64)
        keep_best(self.ncos, self.nb, np.r_[i, j], np.r_[c, c], np.r_[j, i])
        for kind, (score, target) in self.best.items():
            sim = np.minimum(cos, jac) if kind == "min" else cos
            s = np.where(cos >= FLOOR, sim, 0).astype(np.float64)
            live = (s > 0) & (i != j)
            keep_best(score, target, np.maximum(i, j)[live], s[live], np.minimum(i, j)[live])

    def result(self, rule: str):
        score, target = self.best[rule_kind(rule)]
        ncos = self.ncos.copy()
        ncos[self.nb < 0] = np.nan
        return score, target, self.nb, ncos


def text_arrays(files: list[Path], texts: pl.DataFrame, rule: str):
    """:class:`TextArrays` of ``rule`` read back from the table one Parquet part at a time
    (a rerun); None when a part is missing or damaged."""
    n = texts.height
    hs = texts["clean_hash"].to_numpy()
    srt = np.argsort(hs)
    sh = hs[srt]
    acc = TextArrays(n, kinds=(rule_kind(rule),))

    def index(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # sorted needles: each search starts from the last one's place (5x faster at 9M texts)
        o = np.argsort(h, kind="stable")
        pos = np.empty(len(h), np.int64)
        pos[o] = np.searchsorted(sh, h[o])
        pos = np.minimum(pos, max(n - 1, 0))
        return srt[pos], sh[pos] == h if n else np.zeros(len(h), bool)

    for f in files:
        try:
            t = pl.read_parquet(f, columns=["text_hash", "neighbor_hash", "cosine", "jaccard"])
        except Exception:  # a damaged or missing part: recompute
            return None
        i, ok_i = index(t["text_hash"].to_numpy())
        j, ok_j = index(t["neighbor_hash"].to_numpy())
        ok = ok_i & ok_j
        acc.add(i[ok], j[ok], t["cosine"].to_numpy()[ok], t["jaccard"].to_numpy()[ok])
    return acc.result(rule)


def build_neighbors_stream(texts: pl.DataFrame, emb, out: Path, k: int, reporter, embed_texts=None,
                           search_clusters=None, also=(), run_map=None,
                           accumulate: bool = True) -> tuple["TextArrays | None", dict]:
    """:func:`curate.dedup.neighbors.build_neighbors` out of core: writes the same table to
    ``out/neighbors/``; returns (the table's :class:`TextArrays`, or None without
    ``accumulate``, info). Hooks as there (``embed_texts`` must accept ``out_file``;
    ``search_clusters`` and ``run_map`` as :func:`knn_stream`'s)."""
    from curate.dedup.embed_process import embed_texts_child

    bound_allocator()
    embed_texts = embed_texts or embed_texts_child
    t0 = time.perf_counter()
    loading, tick = embed_progress(reporter, emb, texts.height)
    scratch = out / SCRATCH
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    vfile = scratch / VECTORS
    try:
        vecs, einfo = embed_texts(texts["clean"], texts["clean_hash"].to_numpy(), emb, out / EMBEDDINGS, tick,
                                  chunk=EMBED_CHUNK, loading=loading, also=also, out_file=vfile)
        del vecs
        release()
        if einfo["problem"]:
            reporter.note(einfo["problem"])
        t1 = time.perf_counter()
        vf = VectorFile(vfile)
        ids, sims, params = knn_stream(vf, k, reporter.stage("searching", texts.height), search_clusters, run_map)
        release()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    t2 = time.perf_counter()
    folder = out / NEIGHBORS
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    acc = TextArrays(texts.height) if accumulate else None
    nparts, rows = write_pairs(ids, sims, texts, folder, acc)
    t3 = time.perf_counter()
    info = {"index": {**params, "dim": int(vf.shape[1]), "out_of_core": True}, "embedding": einfo,
            "timings": {"embed_s": round(t1 - t0, 3), "index_s": round(t2 - t1, 3), "pairs_s": round(t3 - t2, 3)},
            "parts": nparts, "rows": rows}
    return acc, info
