"""``curate dedup --engine ray``: the embedding and search stages of dedup on Ray.

Texts, ranking, outputs and the embedding cache are the local code in :mod:`curate.dedup`;
the groups are computed by text range (:mod:`curate.dedup.ranges`) as Ray tasks through
:func:`curate.engines.plan.ray_map`. This module supplies the stages that
:func:`curate.dedup.neighbors.build_neighbors` accepts as hooks:

* **Embedding.** The distinct texts that the embedding cache lacks go through Ray Data:
  ``from_arrow`` (blocks of the local engine's batch size) -> ``map_batches`` on a pool of
  actors that each load the embedder once, in their constructor (one GPU each with
  ``--device cuda``, one CPU each otherwise). The driver writes the vectors to the same
  cache, so the vectors (stored and read back as float16) are the local engine's.
* **Partition.** The driver trains the k-means centroids on a bounded sample
  (:func:`curate.dedup.index.train_partition`: at most ``KMEANS_TRAIN_MAX`` vectors, the
  local engine's sample); assigning every vector to its partitions runs as Ray tasks over
  blocks of rows (:func:`curate.dedup.index.assign_block`, through
  :func:`curate.engines.plan.ray_map`).
* **Search.** The exact search inside each cluster
  (:func:`curate.dedup.index.search_cluster`) runs as Ray tasks, clusters dealt round-robin
  (largest first) to a few tasks per CPU. Corpora small enough for one exact search
  (``FLAT_MAX``) are searched on the driver, as locally.

The run folder must be a path that every node sees (a shared file system on a cluster); the
vectors travel through Ray's object store.
"""
from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import numpy as np
import polars as pl

from curate.engines.ray_runtime import ACTOR_ENV, import_ray, quiet_data
from curate.engines.ray_runtime import start as start_ray
from curate.errors import CurateError


class _Encoder:
    """A Ray actor: loads the embedder once, then encodes batches of texts."""

    def __init__(self, fields: tuple) -> None:
        from curate.embed import Embedder

        self.emb = Embedder(*fields)
        self.emb.model  # noqa: B018 - load once, here

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        vecs = self.emb.encode(pl.Series("t", list(batch["text"]), dtype=pl.String))
        return {"i": batch["i"], "vec": vecs}


def _embed_texts(ray, cluster: dict, texts: pl.Series, hashes: np.ndarray, embedder, cache_dir: Path,
                 progress=None, chunk: int = 200_000, loading=None, also=(),
                 out_file: Path | None = None) -> tuple[np.ndarray, dict]:
    """:func:`curate.dedup.cache.embed_texts`, with the model calls on a Ray actor pool
    (``out_file``: the out-of-core path's float16 matrix, as there)."""
    from curate.dedup.cache import embed_texts

    return embed_texts(texts, hashes, embedder, cache_dir, progress, chunk, loading, also, out_file,
                       embed=partial(_embed_on_ray, ray, cluster))


def _embed_on_ray(ray, cluster: dict, cache, texts: pl.Series, hashes: np.ndarray, need: np.ndarray, chunk: int,
                  progress=None, out_file: Path | None = None):
    """:func:`curate.dedup.cache.embed_texts`'s ``embed`` hook on a Ray actor pool."""
    import pyarrow as pa

    embedder = cache.embedder
    gpus = embedder.device == "cuda"
    if gpus and cluster["gpus"] < 1:
        raise CurateError("--device cuda was asked for, but the Ray cluster has no GPUs; use --device cpu")
    step = max(embedder.batch_size, 1024)
    table = pa.table({"i": pa.array(need, pa.int64()), "text": texts.gather(need).to_arrow()})
    blocks = [table.slice(s, step) for s in range(0, len(need), step)]
    actors = max(1, min(cluster["gpus"] if gpus else cluster["cpus"], len(blocks)))
    info = {"actors": actors, "gpus_per_actor": 1 if gpus else 0}
    fields = (embedder.id, embedder.path, embedder.device, embedder.model_hash, embedder.batch_size)
    ds = ray.data.from_arrow(blocks).map_batches(
        _Encoder, fn_constructor_args=(fields,), batch_size=step, batch_format="numpy",
        num_cpus=1, num_gpus=1 if gpus else 0,
        compute=ray.data.ActorPoolStrategy(size=actors), runtime_env={"env_vars": ACTOR_ENV},
    )
    ids, vecs, held = [], [], 0
    for b in ds.iter_batches(batch_size=None, batch_format="numpy"):
        ids.append(np.asarray(b["i"], np.int64))
        vecs.append(np.asarray(b["vec"], np.float16))  # what the cache stores
        held += len(ids[-1])
        if progress:
            progress(len(ids[-1]))
        if held >= chunk:  # a shard per chunk, as locally: an interrupted run keeps its work
            cache.add(hashes[np.concatenate(ids)], np.concatenate(vecs))
            ids, vecs, held = [], [], 0
    if ids:
        cache.add(hashes[np.concatenate(ids)], np.concatenate(vecs))
    return cache, {"ray": info}


def _search_task(vecs: np.ndarray, items: list[tuple[int, np.ndarray]], k: int) -> list[tuple]:
    """One Ray task: exact search inside each of its clusters (``items``: (first row, members))."""
    import faiss

    from curate.dedup.index import search_cluster

    faiss.omp_set_num_threads(1)  # one CPU per task, as each cluster's search locally
    found = []
    for lo, members in items:
        r = search_cluster(vecs, members, k)
        if r is not None:
            found.append((lo, *r))
    return found


def _search_clusters(ray, cluster: dict, vecs, owner, bounds, k, out_ids, out_sims, progress) -> None:
    """The ``search_clusters`` hook of :func:`curate.dedup.index.knn`, as Ray tasks."""
    from curate.dedup.index import NPROBE

    sizes = np.diff(bounds)
    order = np.argsort(-sizes, kind="stable")
    ntasks = max(1, min(len(order), 4 * cluster["cpus"]))
    task = ray.remote(num_cpus=1)(_search_task)
    vref = ray.put(vecs)
    pending = {}
    for t in range(ntasks):
        cs = order[t::ntasks]
        items = [(int(bounds[c]), owner[bounds[c]:bounds[c + 1]]) for c in cs]
        pending[task.remote(vref, items, k)] = int(sizes[cs].sum())
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            rows = pending.pop(ref)
            for lo, ids, sims in ray.get(ref):
                out_ids[lo:lo + len(ids)] = ids
                out_sims[lo:lo + len(ids)] = sims
            if progress:
                progress(rows / NPROBE)


def build_neighbors_ray(texts: pl.DataFrame, emb, out: Path, k: int, reporter,
                        address: str | None, also=(), out_of_core: bool = False,
                        run_map=None) -> tuple[pl.DataFrame | None, dict]:
    """:func:`curate.dedup.neighbors.build_neighbors` (or, ``out_of_core``,
    :func:`curate.dedup.stream.build_neighbors_stream`: the same float16 shards, one batch of
    partitions at a time in the object store) with embedding and search on Ray; ``run_map``
    (:func:`curate.engines.plan.ray_map`) assigns the vectors to partitions as tasks, and the
    groups are then computed by range (the per-text arrays are not accumulated here)."""
    from curate.dedup.index import knn
    from curate.dedup.neighbors import build_neighbors
    from curate.dedup.stream import build_neighbors_stream

    ray = import_ray()
    t0 = time.perf_counter()
    started = start_ray(ray, address)
    try:
        quiet_data(ray)
        res = ray.cluster_resources()
        cluster = {"cpus": max(1, int(res.get("CPU", 1))), "gpus": int(res.get("GPU", 0))}
        search = partial(_search_clusters, ray, cluster)
        embed = partial(_embed_texts, ray, cluster)
        if out_of_core:
            pairs, info = build_neighbors_stream(texts, emb, out, k, reporter, embed_texts=embed,
                                                 search_clusters=search, also=also, run_map=run_map,
                                                 accumulate=run_map is None)
        else:
            pairs, info = build_neighbors(
                texts, emb, out, k, reporter, also=also, embed_texts=embed,
                knn=lambda vecs, kk, progress=None: knn(vecs, kk, progress, search_clusters=search, run_map=run_map))
        info["engine_info"] = {"engine": "ray", "address": address or "local", "ray_version": ray.__version__,
                               "cluster_cpus": cluster["cpus"], "cluster_gpus": cluster["gpus"],
                               "ray_s": round(time.perf_counter() - t0, 3)}
    finally:
        if started:
            ray.shutdown()
    return pairs, info
