"""The on-disk embedding cache: vectors keyed by (model, text hash), checked by checksums."""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from curate.errors import CurateError
from curate.hashing import file_fingerprint
from curate.layout import EMBED_MANIFEST, numbered

if TYPE_CHECKING:
    import polars as pl

    from curate.embed import Embedder

Progress = Callable[[float], None]


class EmbeddingCache:
    """Vectors on disk keyed by (model, text hash): a rerun or a new threshold never re-embeds.

    Layout: ``DIR/<model_sha256[:16]>/manifest.json`` (written last) and shards
    ``keys-NNNNN.npy`` (uint64 text hashes) + ``vecs-NNNNN.npy`` (float16 vectors). The
    manifest stores each file's blake2b checksum and shape; a mismatch of any kind means the
    cache is corrupt: it is deleted and rebuilt (never silently reused), and
    :attr:`problem` says why. Vectors are stored as float16 and every caller gets them back
    through float16, so a fresh run and a cached run see bit-identical vectors.
    """

    def __init__(self, folder: Path, embedder: Embedder, lazy: bool = False) -> None:
        self.dir = Path(folder) / embedder.model_hash[:16]
        self.embedder = embedder
        #: lazy: vectors stay in their shards on disk (:meth:`write_matrix` reads them shard by shard)
        self.lazy = lazy
        self.problem: str | None = None
        self.keys = np.zeros(0, np.uint64)
        self.vecs: np.ndarray | None = None
        self.shards: list[dict] = []
        self._load()

    def _load(self) -> None:
        m = self.dir / EMBED_MANIFEST
        if not self.dir.exists():
            return
        if not m.is_file():
            # shards without a manifest: an interrupted first write; nothing to trust
            shutil.rmtree(self.dir, ignore_errors=True)
            return
        try:
            meta = json.loads(m.read_text())
            if meta.get("model_sha256") != self.embedder.model_hash:
                raise ValueError("written for another model")
            keys, vecs = [], []
            for sh in meta["shards"]:
                for kind in ("keys", "vecs"):
                    f = self.dir / sh[kind]
                    if not f.is_file():
                        raise ValueError(f"{f.name} is missing")
                    if file_fingerprint(f) != sh[f"{kind}_blake2b"]:
                        raise ValueError(f"{f.name}: checksum mismatch")
                k = np.load(self.dir / sh["keys"], allow_pickle=False)
                v = np.load(self.dir / sh["vecs"], allow_pickle=False, mmap_mode="r" if self.lazy else None)
                if k.dtype != np.uint64 or v.dtype != np.float16 or v.ndim != 2 or v.shape[0] != len(k) or len(k) != sh["rows"]:
                    raise ValueError(f"{sh['vecs']}: unexpected shape or type")
                keys.append(k)
                if not self.lazy:
                    vecs.append(v)
                del v
            self.shards = meta["shards"]
            if keys:
                self.keys = np.concatenate(keys)
                self.vecs = np.concatenate(vecs) if vecs else None
        except (OSError, ValueError, KeyError, TypeError) as e:
            self.problem = f"embedding cache {self.dir} is corrupt ({e}); rebuilt it"
            shutil.rmtree(self.dir, ignore_errors=True)
            self.keys = np.zeros(0, np.uint64)
            self.vecs = None
            self.shards = []

    def missing(self, hashes: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``hashes`` are not cached."""
        return ~np.isin(hashes, self.keys)

    def add(self, hashes: np.ndarray, vecs: np.ndarray) -> None:
        """Append a shard (atomically) and rewrite the manifest last."""
        if len(hashes) == 0:
            return
        from curate.atomic import atomic_path, write_json

        self.dir.mkdir(parents=True, exist_ok=True)
        i = len(self.shards)
        v16 = vecs.astype(np.float16)
        entry = {"keys": numbered("", "keys", i, ".npy").name, "vecs": numbered("", "vecs", i, ".npy").name, "rows": int(len(hashes))}
        for kind, arr in (("keys", hashes.astype(np.uint64)), ("vecs", v16)):
            with atomic_path(self.dir / entry[kind]) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, arr, allow_pickle=False)
            entry[f"{kind}_blake2b"] = file_fingerprint(self.dir / entry[kind])
        self.shards.append(entry)
        write_json({**self.embedder.describe(), "dim": int(v16.shape[1]), "shards": self.shards}, self.dir / EMBED_MANIFEST)
        self.keys = np.concatenate([self.keys, hashes.astype(np.uint64)])
        if not self.lazy:
            self.vecs = v16 if self.vecs is None else np.concatenate([self.vecs, v16])

    def write_matrix(self, hashes: np.ndarray, path: Path, step: int = 100_000) -> None:
        """Write the float16 vectors of ``hashes`` (all cached), in that order, to the ``.npy``
        file ``path``, ``step`` rows at a time, each read from its shard through a mapping
        that is closed at once (memory: ``step`` rows, not the matrix)."""
        dim = int(json.loads((self.dir / EMBED_MANIFEST).read_text())["dim"]) if self.shards else 0
        g = self.positions(hashes)
        starts = np.cumsum([0] + [sh["rows"] for sh in self.shards])
        header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float16)), "fortran_order": False,
                  "shape": (len(hashes), dim)}
        from curate.atomic import atomic_path

        with atomic_path(Path(path)) as tmp, open(tmp, "wb") as f:
            np.lib.format.write_array_header_1_0(f, header)
            for a in range(0, len(hashes), step):
                gg = g[a:a + step]
                shard = np.searchsorted(starts, gg, side="right") - 1
                block = np.empty((len(gg), dim), np.float16)
                for s in np.unique(shard):  # a loop over shards, not rows
                    rows = np.flatnonzero(shard == s)
                    v = np.load(self.dir / self.shards[s]["vecs"], allow_pickle=False, mmap_mode="r")
                    block[rows] = v[gg[rows] - starts[s]]
                    del v
                f.write(block.tobytes())

    def positions(self, hashes: np.ndarray) -> np.ndarray:
        """Row of each of ``hashes`` (all must be cached) among the cache's keys."""
        if len(hashes) == 0:
            return np.zeros(0, np.int64)
        order = np.argsort(self.keys, kind="stable")
        idx = order[np.minimum(np.searchsorted(self.keys, hashes, sorter=order), max(len(order) - 1, 0))]
        if not np.array_equal(self.keys[idx], hashes):
            raise CurateError("internal error: embedding cache lookup missed a text")
        return idx

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """float32 vectors for ``hashes`` (all must be cached), in the order given."""
        if len(hashes) == 0 or self.vecs is None:
            return np.zeros((0, 0 if self.vecs is None else self.vecs.shape[1]), np.float32)
        return self.vecs[self.positions(hashes)].astype(np.float32)

def seed_from(cache: EmbeddingCache, hashes: np.ndarray, also: "list[Path] | tuple" = ()) -> int:
    """Copy into ``cache`` the vectors of ``hashes`` that it lacks and the caches in ``also``
    (other folders, same model) hold: a run deduplicated alone before keeps its vectors when
    it joins a set. Returns how many were copied."""
    copied = 0
    for folder in also:
        need = cache.missing(hashes)
        if not need.any() or Path(folder).resolve() == cache.dir.parent.resolve():
            continue
        if not (Path(folder) / cache.embedder.model_hash[:16] / EMBED_MANIFEST).is_file():
            continue
        other = EmbeddingCache(folder, cache.embedder)
        want = hashes[need]
        have = want[~other.missing(want)]
        if len(have):
            cache.add(have, other.lookup(have))
            copied += len(have)
    return copied


def open_cache(cache_dir: Path, embedder: "Embedder", hashes: np.ndarray, also=(), lazy: bool = False,
               progress: Callable[[int], None] | None = None) -> tuple["EmbeddingCache", np.ndarray]:
    """The embedder's cache in ``cache_dir``, seeded from the caches in ``also``; returns it
    and the positions of ``hashes`` it still lacks (the cached ones are reported to
    ``progress`` at once)."""
    cache = EmbeddingCache(cache_dir, embedder, lazy=lazy)
    seed_from(cache, hashes, also)
    need = np.flatnonzero(cache.missing(hashes))
    if progress and len(hashes) - len(need):
        progress(len(hashes) - len(need))
    return cache, need


def embed_texts(texts: "pl.Series", hashes: np.ndarray, embedder: Embedder, cache_dir: Path,
                progress: Progress | None = None, chunk: int = 200_000,
                loading: Callable[[], None] | None = None, also: "list[Path] | tuple" = (),
                out_file: Path | None = None, embed: Callable | None = None) -> tuple[np.ndarray, dict]:
    """Vectors for ``texts`` (a String Series; ``hashes``: their uint64 content hashes),
    embedding only the ones not cached yet (in ``cache_dir``, or in one of the caches
    ``also`` names: see :func:`seed_from`).

    Returns (float32 vectors, info) where info has ``embedded``, ``cached`` and ``problem``
    (the corrupt-cache message, or None). ``loading`` is called before the model is loaded
    (only when something needs embedding).

    ``out_file`` (the out-of-core path): the vectors are not held; they are written, float16
    in the order of ``hashes``, to that ``.npy`` file, and the first value returned is a
    read-only memory map of it.

    ``embed(cache, texts, hashes, need, chunk, progress, out_file) -> (cache, extra info)``
    adds the vectors of ``texts[need]`` to the cache; by default :func:`embed_here` (this
    process); a child process (:mod:`curate.dedup.embed_process`) or a Ray actor pool
    (:mod:`curate.engines.ray_dedup`) instead.
    """
    cache, need = open_cache(cache_dir, embedder, hashes, also, out_file is not None, progress)
    problem = cache.problem
    t0 = time.perf_counter()
    extra: dict = {}
    if len(need):
        if loading:
            loading()
        cache, extra = (embed or embed_here)(cache, texts, hashes, need, chunk, progress, out_file)
    seconds = time.perf_counter() - t0
    vecs = matrix(cache, hashes, out_file)
    return vecs, {"embedded": int(len(need)), "cached": int(len(hashes) - len(need)),
                  "embed_s": round(seconds, 3), "cache_dir": str(cache.dir), "problem": problem, **extra}


def embed_here(cache: EmbeddingCache, texts: "pl.Series", hashes: np.ndarray, need: np.ndarray, chunk: int,
               progress: Progress | None = None, out_file: Path | None = None) -> tuple[EmbeddingCache, dict]:
    """:func:`embed_texts`'s default ``embed``: the model calls in this process."""
    cache.embedder.model  # noqa: B018 - load now, so that progress shows embedding only
    embed_into(cache, texts, hashes, need, chunk, progress)
    return cache, {}


def embed_into(cache: EmbeddingCache, texts: "pl.Series", hashes: np.ndarray, need: np.ndarray, chunk: int,
               progress: Progress | None = None) -> None:
    """Embed ``texts[need]`` with the cache's embedder and add them to the cache, one shard
    per ``chunk`` texts (one model call per batch; float16 kept, so memory is a chunk's)."""
    embedder = cache.embedder
    step = max(embedder.batch_size, 1024)
    for s in range(0, len(need), chunk):
        idx = need[s:s + chunk]
        parts = []
        for b in range(0, len(idx), step):
            sub = idx[b:b + step]
            parts.append(np.asarray(embedder.encode(texts.gather(sub))).astype(np.float16))
            if progress:
                progress(len(sub))
        cache.add(hashes[idx], np.concatenate(parts))


def matrix(cache: EmbeddingCache, hashes: np.ndarray, out_file: Path | None) -> np.ndarray:
    """The vectors of ``hashes``: float32 in memory, or (``out_file``) a float16 memory map."""
    if out_file is None:
        return cache.lookup(hashes)
    cache.write_matrix(hashes, out_file)
    return np.load(out_file, mmap_mode="r")
