"""k-nearest-neighbour search over caption embeddings with FAISS, chosen by corpus size.

* up to :data:`FLAT_MAX` vectors: exact search, ``IndexFlatIP`` (inner product = cosine
  for the unit vectors the embedders return);
* above: SemDeDup-style partitioned search (Abbas et al. 2023): spherical k-means splits
  the vectors into ``nlist`` clusters of about :data:`CLUSTER_SIZE`; every vector is placed
  in its ``nprobe`` nearest clusters and searched exactly, in full dimension, against the
  members of those clusters (one BLAS product per cluster). Near-duplicates have cosine
  close to 1, so they share a cluster; the extra assignments catch pairs that straddle a
  border. This is IVF search turned around: each inverted list is searched once, as a
  block, which is several times faster on a CPU than probing the lists query by query.
  The k-means runs on a :data:`KMEANS_DIMS`-dimensional PCA projection (it only has to
  partition; the neighbours and their cosines come from the full vectors).

Every parameter is returned so that ``dedup.json`` can record it.
"""
from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np

FLAT_MAX = 40_000
CLUSTER_SIZE = 400
NPROBE = 2
KMEANS_DIMS = 64
TRAIN_PER_CENTROID = 64
#: k-means sample at most (64-d float32: 128 MB)
KMEANS_TRAIN_MAX = 524_288
#: up to this many centroids, one k-means and every vector compared with each centroid;
#: above, k-means in two levels (:func:`two_level`) and the centroids put in sqrt(nlist)
#: lists, a vector compared with the centroids of its ASSIGN_NPROBE nearest lists
#: (FAISS IndexIVFFlat)
ASSIGN_EXACT_MAX = 4_096
ASSIGN_NPROBE = 8
KMEANS_ITER = 10
SEED = 1234
#: vectors read, projected or assigned at a time by :func:`partition`
ASSIGN_STEP = 32_768
#: steps of ASSIGN_STEP rows in one unit of assignment work (an engine's task)
ASSIGN_BLOCK_STEPS = 8

Progress = Callable[[float], None]


def plan(n: int, dim: int, k: int) -> dict:
    """The index a corpus of ``n`` vectors gets, with its parameters."""
    k = max(1, min(k, n - 1)) if n > 1 else 0
    if n <= FLAT_MAX:
        return {"type": "IndexFlatIP", "exact": True, "n": n, "dim": dim, "k": k}
    nlist = max(2, int(round(n / CLUSTER_SIZE)))
    p = {
        "type": "partitioned IndexFlatIP (SemDeDup-style spherical k-means)",
        "exact": False, "n": n, "dim": dim, "k": k, "nlist": nlist, "nprobe": NPROBE,
        "kmeans_dims": min(dim, KMEANS_DIMS), "kmeans_train": min(n, nlist * TRAIN_PER_CENTROID, KMEANS_TRAIN_MAX),
        "kmeans_iter": KMEANS_ITER, "seed": SEED,
    }
    if nlist > ASSIGN_EXACT_MAX:
        lists = int(round(math.sqrt(nlist)))
        p["levels"] = {"coarse": lists, "how": "k-means into sqrt(nlist) clusters, each split by its own "
                                                "k-means in proportion to its share of the sample"}
        p["assign"] = {"type": "IndexIVFFlat over the centroids", "lists": lists, "nprobe": ASSIGN_NPROBE}
    return p


def two_level(train: np.ndarray, nlist: int, coarse: int) -> np.ndarray:
    """About ``nlist`` spherical k-means centroids in two levels: ``coarse`` clusters of the
    sample, then each split into centroids in proportion to its share of the sample (every
    non-empty cluster at least one, none more than it has points). Costs sample x (coarse +
    nlist / coarse) instead of sample x nlist."""
    import faiss

    d = train.shape[1]
    top = faiss.Kmeans(d, coarse, niter=KMEANS_ITER, seed=SEED, spherical=True, max_points_per_centroid=256,
                       min_points_per_centroid=1, verbose=False)
    top.train(train)
    cell = top.index.search(train, 1)[1].ravel()
    counts = np.bincount(cell, minlength=coarse)
    share = nlist * counts / counts.sum()
    fine = np.floor(share).astype(np.int64)
    fine[np.argsort(-(share - fine), kind="stable")[: nlist - int(fine.sum())]] += 1
    fine = np.minimum(np.maximum(fine, counts > 0), counts)
    order = np.argsort(cell, kind="stable")
    starts = np.r_[0, np.cumsum(counts)]
    out = []
    for c in np.flatnonzero(fine):  # a loop over coarse clusters, not rows
        pts = np.ascontiguousarray(train[order[starts[c]:starts[c + 1]]])
        if fine[c] == 1:
            m = pts.mean(0, keepdims=True)
            out.append(m / max(float(np.linalg.norm(m)), 1e-12))
            continue
        km = faiss.Kmeans(d, int(fine[c]), niter=KMEANS_ITER, seed=SEED + int(c), spherical=True,
                          max_points_per_centroid=256, min_points_per_centroid=1, verbose=False)
        km.train(pts)
        out.append(km.centroids)
    return np.ascontiguousarray(np.vstack(out), dtype=np.float32)


def knn(vecs: np.ndarray, k: int, progress: Progress | None = None,
        search_clusters: Callable | None = None, run_map: Callable | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Each vector's ``k`` nearest other vectors: (ids [n, k] int64, cosines [n, k] float32,
    params). Missing neighbours are -1 with cosine -inf; a vector never lists itself.

    ``search_clusters(vecs, owner, bounds, k, out_ids, out_sims, progress)`` replaces the
    local thread pool that searches the partitions (the Ray engine runs them as tasks); it
    must fill ``out_*[lo:hi]`` with :func:`search_cluster` for every cluster; ``run_map``
    assigns the vectors to partitions (:func:`partition`)."""
    vecs = np.ascontiguousarray(vecs, dtype=np.float32)
    n, dim = vecs.shape
    p = plan(n, dim, k)
    k = p["k"]
    if k == 0:
        return np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32), p
    if p["exact"]:
        ids, sims = _flat(vecs, np.arange(n), k, progress)
        return ids, sims, p
    assign = partition(vecs, p, run_map)
    # members of each cluster, cluster by cluster (a vector is in NPROBE clusters)
    owner = np.repeat(np.arange(n), NPROBE)
    order = np.argsort(assign.ravel(), kind="stable")
    owner = owner[order]
    bounds = np.searchsorted(assign.ravel()[order], np.arange(p["nlist"] + 1))
    sizes = np.diff(bounds)
    p["cluster_sizes"] = {"min": int(sizes.min()), "median": int(np.median(sizes)), "max": int(sizes.max())}
    out_ids = np.full((n * NPROBE, k), -1, np.int64)
    out_sims = np.full((n * NPROBE, k), -np.inf, np.float32)

    (search_clusters or search_local)(vecs, owner, bounds, k, out_ids, out_sims, progress)
    ids, sims = merge_lists(order, out_ids, out_sims, n, k)
    return ids, sims, p


def search_cluster(vecs: np.ndarray, members: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact search inside one cluster (``members``: global ids); None when it has under 2."""
    return _flat(vecs, members, k, None) if len(members) >= 2 else None


def search_local(vecs, owner, bounds, k, out_ids, out_sims, progress) -> None:
    sizes = np.diff(bounds)

    def search(c: int) -> None:
        lo, hi = bounds[c], bounds[c + 1]
        found = search_cluster(vecs, owner[lo:hi], k)
        if found is not None:
            out_ids[lo:hi], out_sims[lo:hi] = found
        if progress:
            progress((hi - lo) / NPROBE)

    _threaded(search, np.argsort(-sizes, kind="stable"))


def partition(vecs: np.ndarray, p: dict, run_map: Callable | None = None) -> np.ndarray:
    """Each vector's NPROBE nearest k-means centroids, [n, NPROBE] int32: the centroids are
    trained on a sample (:func:`train_partition`), then every vector is assigned in blocks
    (:func:`assign_block`), by ``run_map(assign_block, blocks, (vecs, model))`` when an
    engine gives one (Ray tasks), else here. The blocks and their results are the same
    either way."""
    model = train_partition(vecs, p)
    n = len(vecs)
    step = model["step"] * ASSIGN_BLOCK_STEPS
    blocks = [(s, min(n, s + step)) for s in range(0, n, step)]
    if run_map is None:
        model = {**model, "index": load_index(model)}  # deserialised once for every block
        run_map = local_assign
    return np.concatenate(run_map(assign_block, blocks, (vecs, model)) or [np.zeros((0, NPROBE), np.int32)])


def local_assign(fn: Callable, units: list, shared) -> list:
    return [fn(u, shared) for u in units]


def train_partition(vecs: np.ndarray, p: dict) -> dict:
    """The partition's model from a sample of ``p["kmeans_train"]`` vectors (at most
    :data:`KMEANS_TRAIN_MAX`; the same rows for every engine): PCA mean and projection to
    ``kmeans_dims``, and the centroids in a FAISS index, serialised (a few MB) so that it can
    travel to other processes.

    The sample is read :data:`ASSIGN_STEP` rows at a time, twice: once for its mean
    and covariance (float64 sums), once for its PCA projection; only the projected sample
    (``kmeans_dims`` float32 a point) is held, never the sample in full dimension."""
    import faiss

    n, dim = vecs.shape
    rng = np.random.default_rng(SEED)
    sample = np.sort(rng.choice(n, p["kmeans_train"], replace=False))
    d = p["kmeans_dims"]
    # float32 whether ``vecs`` is float32 in memory or a float16 memory map (the same values)
    batches = [sample[s:s + ASSIGN_STEP] for s in range(0, len(sample), ASSIGN_STEP)]
    total, outer = np.zeros(dim), np.zeros((dim, dim))
    for b in batches:  # a loop over batches, not rows
        x = np.asarray(vecs[b], np.float32)
        total += x.sum(0, dtype=np.float64)
        outer += x.T @ x
    mean = total / len(sample)
    if d < dim:
        cov = (outer - len(sample) * np.outer(mean, mean)) / max(len(sample) - 1, 1)
        eigval, eigvec = np.linalg.eigh(cov)
        proj = np.ascontiguousarray(eigvec[:, ::-1][:, :d], dtype=np.float32)
    else:
        proj = np.eye(dim, dtype=np.float32)
    model = {"mean": mean.astype(np.float32), "proj": proj, "nprobe": 0, "step": ASSIGN_STEP}
    train = np.empty((len(sample), d), np.float32)
    at = 0
    for b in batches:
        train[at:at + len(b)] = project(model, np.asarray(vecs[b], np.float32))
        at += len(b)
    if "levels" in p:
        centroids = two_level(train, p["nlist"], p["levels"]["coarse"])
        p["nlist"] = len(centroids)  # the apportionment can differ from the plan by a few
        del train
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, p["assign"]["lists"], faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = SEED
        index.cp.min_points_per_centroid = 1
        index.train(centroids)
        index.add(centroids)
        model["nprobe"] = index.nprobe = p["assign"]["nprobe"]
    else:
        km = faiss.Kmeans(d, p["nlist"], niter=KMEANS_ITER, seed=SEED, spherical=True,
                          max_points_per_centroid=TRAIN_PER_CENTROID, verbose=False)
        km.train(train)
        del train
        index = km.index
    model["index"] = faiss.serialize_index(index)
    return model


def project(model: dict, x: np.ndarray) -> np.ndarray:
    y = (x - model["mean"]) @ model["proj"]
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(y, dtype=np.float32)


def load_index(model: dict):
    """The model's FAISS index (deserialised when it travelled as bytes)."""
    import faiss

    index = model["index"]
    if isinstance(index, np.ndarray):
        index = faiss.deserialize_index(index)
        if model["nprobe"]:
            index.nprobe = model["nprobe"]
    return index


def assign_block(block: tuple[int, int], shared) -> np.ndarray:
    """Rows ``[lo, hi)``'s NPROBE nearest centroids, :data:`ASSIGN_STEP` rows per search
    (bounded: a step's projection holds a few float32 copies of it). ``shared``: (vectors,
    model of :func:`train_partition`)."""
    vecs, model = shared
    index = load_index(model)
    lo, hi = block
    out = np.empty((hi - lo, NPROBE), np.int32)
    step = model["step"]
    for s in range(lo, hi, step):  # a loop over steps, not rows
        e = min(hi, s + step)
        out[s - lo:e - lo] = index.search(project(model, np.asarray(vecs[s:e], np.float32)), NPROBE)[1]
    return out


def _threaded(fn: Callable[[int], None], items) -> None:
    """Many small exact searches: single-threaded FAISS calls spread over a thread pool
    (FAISS releases the GIL), which costs less than OpenMP inside each small call."""
    import faiss

    threads = max(1, min(os.cpu_count() or 1, faiss.omp_get_max_threads()))
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(fn, items))
    finally:
        faiss.omp_set_num_threads(before)


def _flat(vecs: np.ndarray, members: np.ndarray, k: int, progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact kNN among ``vecs[members]``; returns global ids, self excluded."""
    import faiss

    sub = np.ascontiguousarray(vecs[members], dtype=np.float32)
    m = len(members)
    kk = min(k + 1, m)
    index = faiss.IndexFlatIP(sub.shape[1])
    index.add(sub)
    ids = np.empty((m, kk), np.int64)
    sims = np.empty((m, kk), np.float32)
    step = 4096 if progress else m
    for s in range(0, m, step):
        sims[s:s + step], ids[s:s + step] = index.search(sub[s:s + step], kk)
        if progress:
            progress(min(step, m - s))
    # drop self; when identical vectors crowd self out of the list, drop the last instead
    is_self = ids == np.arange(m)[:, None]
    is_self[~is_self.any(1), kk - 1] = True
    keep_ids = ids[~is_self].reshape(m, kk - 1)
    keep_sims = sims[~is_self].reshape(m, kk - 1)
    gids = np.where(keep_ids >= 0, members[np.maximum(keep_ids, 0)], -1)
    if kk - 1 < k:
        pad = k - (kk - 1)
        gids = np.hstack([gids, np.full((m, pad), -1, np.int64)])
        keep_sims = np.hstack([keep_sims, np.full((m, pad), -np.inf, np.float32)])
    return gids, keep_sims


def merge_lists(order: np.ndarray, ids: np.ndarray, sims: np.ndarray, n: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Combine each vector's NPROBE lists: distinct neighbours, best k by cosine.

    Row r of ``ids`` belongs to vector ``order[r] // NPROBE``; putting the rows back in
    vector order makes one [n, NPROBE * k] candidate row per vector.
    """
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    return top_distinct(ids[back].reshape(n, NPROBE * k), sims[back].reshape(n, NPROBE * k), k)


def top_distinct(cid: np.ndarray, csim: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best ``k`` distinct candidates by cosine (ties: the lower id); of a
    neighbour listed twice (found in two clusters, its cosines may differ in the last bit)
    the higher cosine counts. The result does not depend on the order of the candidates, so
    lists merged in any order or in several steps (:mod:`curate.dedup.stream`) give the same
    rows. -1 / -inf pad a row short of ``k``."""
    # keep one copy of a repeated neighbour: sort by cosine (descending), then by id (stable)
    o = np.argsort(-csim, axis=1, kind="stable")
    cid = np.take_along_axis(cid, o, 1)
    csim = np.take_along_axis(csim, o, 1)
    o = np.argsort(cid, axis=1, kind="stable")
    cid = np.take_along_axis(cid, o, 1)
    csim = np.take_along_axis(csim, o, 1)
    repeat = np.zeros_like(cid, dtype=bool)
    repeat[:, 1:] = cid[:, 1:] == cid[:, :-1]
    csim[repeat | (cid < 0)] = -np.inf
    o = np.argsort(-csim, axis=1, kind="stable")[:, :k]
    out_ids = np.take_along_axis(cid, o, 1)
    out_sims = np.take_along_axis(csim, o, 1)
    out_ids[~np.isfinite(out_sims)] = -1
    return out_ids, out_sims
