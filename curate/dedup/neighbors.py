"""The neighbour table: embed each distinct text once, search FAISS, add word Jaccard.

Written to ``RUN/dedup/neighbors/part-*.parquet`` (``sample_id``, ``neighbor_id``,
``cosine``, ``jaccard``, plus the two texts' hashes) and described by
``neighbors/neighbors.json``, written last; a later run with the same texts, embedder and
``k`` reads it instead of searching again.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from curate.atomic import write_parquet
from curate.dedup.groups import FLOOR
from curate.dedup.text import word_jaccard
from curate.layout import EMBEDDINGS, NEIGHBORS, numbered

NEIGHBOR_PART_ROWS = 1_000_000
#: words of both sides per Jaccard chunk (8 MB of hashes a side)
PAIR_WORDS = 2_000_000
#: texts split into words at a time
WORD_TEXTS = 100_000


def _texts_digest(texts: pl.DataFrame) -> str:
    h = np.sort(texts["clean_hash"].to_numpy())
    return hashlib.sha256(h.tobytes()).hexdigest()[:16]


def neighbor_key(embedder_hash: str, texts: pl.DataFrame, k: int) -> str:
    from curate.dedup.index import plan

    desc = {"embedder": embedder_hash, "texts": _texts_digest(texts), "k": k,
            "index": {x: y for x, y in plan(texts.height, 0, k).items() if x != "dim"}, "floor": FLOOR, "v": 2}
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class WordSets:
    """Each text's distinct words as 32-bit hashes (in-process only; never stored), and how
    many each has."""

    lists: pl.Series
    lens: np.ndarray


def word_sets(texts: pl.DataFrame) -> WordSets:
    """:class:`WordSets` of the texts' ``clean`` column, built :data:`WORD_TEXTS` texts at a
    time (the split words of every text are never held at once)."""
    parts = [
        texts["clean"].slice(a, WORD_TEXTS).to_frame().select(
            pl.col("clean").str.split(" ").list.eval((pl.element().hash() & 0xFFFFFFFF).cast(pl.UInt32))
            .list.unique().alias("w"))["w"]
        for a in range(0, texts.height, WORD_TEXTS)  # a loop over slices, not rows
    ]
    lists = pl.concat(parts, rechunk=True) if parts else pl.Series("w", [], pl.List(pl.UInt32))
    return WordSets(lists, lists.list.len().to_numpy().astype(np.int64))


def pair_jaccard(words: WordSets, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Word Jaccard of the text pairs (i, j), in chunks of about :data:`PAIR_WORDS` words
    (a chunk of long captions holds fewer pairs, so memory stays bounded)."""
    out = np.zeros(len(i), np.float32)
    if len(i) == 0:
        return out
    cost = np.cumsum(words.lens[i] + words.lens[j] + 1)
    cuts = np.searchsorted(cost, np.arange(PAIR_WORDS, int(cost[-1]), PAIR_WORDS), side="right")
    edges = np.unique(np.r_[0, cuts, len(i)])
    for a, b in zip(edges[:-1], edges[1:]):  # a loop over chunks, not rows
        x = words.lists.gather(i[a:b])
        y = words.lists.gather(j[a:b])
        out[a:b] = pl.DataFrame({"a": x, "b": y}).select(word_jaccard(pl.col("a"), pl.col("b")))[:, 0].to_numpy()
    return out


def embed_progress(reporter, emb, n: int):
    """(loading, tick) callbacks for embedding ``n`` texts: a model-loading stage shown only
    when the model is loaded, then the embedding stage."""
    ticks: dict = {}

    def loading() -> None:
        ticks["load"] = reporter.stage(f"loading {emb.id}", 1)

    def tick(m: float) -> None:
        if "embed" not in ticks:
            ticks.get("load", lambda _: None)(1)
            ticks["embed"] = reporter.stage("embedding", n)
        ticks["embed"](m)

    return loading, tick


def pair_frame(heads: np.ndarray, hashes: np.ndarray, words: WordSets, i: np.ndarray, j: np.ndarray,
               cos: np.ndarray) -> pl.DataFrame:
    """Rows of the neighbour table for the (text i, neighbour j, cosine) pairs of a kNN search
    (``j < 0``: no neighbour found, dropped); word Jaccard only where cosine reaches FLOOR."""
    ok = j >= 0
    i, j, cos = i[ok], j[ok], cos[ok]
    jaccard = np.zeros(len(i), np.float32)
    near = np.flatnonzero(cos >= FLOOR)
    jaccard[near] = pair_jaccard(words, i[near], j[near])
    return pl.DataFrame({
        "sample_id": pl.Series(heads[i], dtype=pl.UInt64),
        "neighbor_id": pl.Series(heads[j], dtype=pl.UInt64),
        "cosine": cos, "jaccard": jaccard,
        "text_hash": pl.Series(hashes[i], dtype=pl.UInt64),
        "neighbor_hash": pl.Series(hashes[j], dtype=pl.UInt64),
    })


def build_neighbors(texts: pl.DataFrame, emb, out: Path, k: int, reporter,
                    embed_texts=None, knn=None, also=()) -> tuple[pl.DataFrame, dict]:
    """Embed, search and write the neighbour table; returns (pairs, info).

    ``also``: other embedding-cache folders to take vectors from (the runs' own caches).

    ``embed_texts`` and ``knn`` (same signatures as :func:`curate.dedup.cache.embed_texts`
    and :func:`curate.dedup.index.knn`) let an engine run those two stages elsewhere."""
    from curate.dedup import cache as embed_cache
    from curate.dedup import index as dedup_index

    embed_texts = embed_texts or embed_cache.embed_texts
    knn = knn or dedup_index.knn

    t0 = time.perf_counter()
    loading, tick = embed_progress(reporter, emb, texts.height)

    vecs, einfo = embed_texts(texts["clean"], texts["clean_hash"].to_numpy(), emb, out / EMBEDDINGS, tick,
                              loading=loading, also=also)
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
    pairs = pair_frame(texts["head"].to_numpy(), texts["clean_hash"].to_numpy(), word_sets(texts), i, j, cos)
    folder = out / NEIGHBORS
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    nparts = max(1, -(-pairs.height // NEIGHBOR_PART_ROWS))
    for p in range(nparts):
        write_parquet(pairs.slice(p * NEIGHBOR_PART_ROWS, NEIGHBOR_PART_ROWS).to_arrow(),
                      numbered(folder, "part", p))
    t3 = time.perf_counter()
    info = {"index": {**params, "dim": int(vecs_dim)}, "embedding": einfo,
            "timings": {"embed_s": round(t1 - t0, 3), "index_s": round(t2 - t1, 3), "pairs_s": round(t3 - t2, 3)},
            "parts": nparts, "rows": pairs.height}
    return pairs.with_columns(pl.Series("i", i), pl.Series("j", j)), info



def load_neighbors(out: Path, texts: pl.DataFrame, nparts: int) -> pl.DataFrame | None:
    files = [numbered(out / NEIGHBORS, "part", p) for p in range(nparts)]
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
