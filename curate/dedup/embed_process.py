"""Embedding in a child process, for the out-of-core path.

The model libraries (torch, and for a model other than the static one transformers and
sentence-transformers: about 450 MB) take a process's memory once imported and never give
it back. Out of core, every later stage
(search, neighbour table, groups) would carry them, so the model calls run in a spawned
child: it reads the texts to embed from a Parquet file, adds their float16 vectors to the
embedding cache shard by shard (:func:`curate.dedup.cache.embed_into`, the same code the
in-process path runs), reports progress over a pipe and exits, taking the libraries with it.
The parent opens the cache again and continues exactly as in-process.

The child dies with its parent (``PR_SET_PDEATHSIG``); a child that fails says why in one
line (a :class:`~curate.errors.CurateError` in the parent), one killed by a signal is named.
"""
from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl

from curate.atomic import atomic_path
from curate.dedup.cache import EmbeddingCache, embed_into, embed_texts
from curate.errors import CurateError, error_line
from curate.layout import EMBED_INPUT
from curate.memory import die_with_parent, how_it_ended


def _child(input_path: str, embedder, cache_dir: str, chunk: int, conn) -> None:
    """The child's whole life: embed every text of ``input_path`` into the cache."""
    die_with_parent()
    try:
        import pyarrow.parquet as pq

        cache = EmbeddingCache(Path(cache_dir), embedder, lazy=True)
        embedder.model  # noqa: B018 - load before the first progress message
        conn.send(("loaded", 0))
        for batch in pq.ParquetFile(input_path).iter_batches(batch_size=chunk):  # one shard each
            t = pl.from_arrow(batch)
            embed_into(cache, t["text"], t["hash"].to_numpy(), np.arange(t.height), chunk,
                       lambda n: conn.send(("progress", int(n))))
        conn.send(("done", cache.problem))
    except CurateError as e:
        conn.send(("error", error_line(e)))
    except Exception:  # noqa: BLE001 - a bug: the parent raises it with this traceback
        import traceback

        conn.send(("bug", traceback.format_exc()))
    finally:
        conn.close()


def write_input(texts: pl.Series, hashes: np.ndarray, need: np.ndarray, path: Path, chunk: int) -> None:
    """The child's input: (text, hash) of ``need``, in row groups of ``chunk`` rows, written
    a row group at a time (the texts are never copied at once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("text", pa.large_string()), ("hash", pa.uint64())])
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for a in range(0, len(need), chunk):  # a loop over row groups, not rows
            idx = need[a:a + chunk]
            part = pl.DataFrame({"text": texts.gather(idx), "hash": pl.Series(hashes[idx], dtype=pl.UInt64)})
            w.write_table(part.to_arrow().cast(schema), row_group_size=chunk)


def run_child(texts: pl.Series, hashes: np.ndarray, need: np.ndarray, embedder, cache_dir: Path, scratch: Path,
              chunk: int, progress: Callable[[int], None] | None = None) -> None:
    """Embed ``texts[need]`` (their ``hashes``) into the cache at ``cache_dir`` in a child process."""
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / EMBED_INPUT
    write_input(texts, hashes, need, path, chunk)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(str(path), embedder, str(cache_dir), chunk, child), daemon=True)
    proc.start()
    child.close()
    outcome = None
    try:
        while outcome is None:
            if parent.poll(0.2):
                try:
                    kind, value = parent.recv()
                except EOFError:
                    break
                if kind == "progress" and progress:
                    progress(value)
                elif kind in ("done", "error", "bug"):
                    outcome = (kind, value)
            elif not proc.is_alive():
                break
        proc.join()
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        parent.close()
        path.unlink(missing_ok=True)
    if outcome is None:
        raise CurateError(f"the embedding process {how_it_ended(proc.exitcode)} before it finished (out of memory?); "
                          "the texts embedded so far are cached, so a rerun goes on from there")
    if outcome[0] == "error":
        raise CurateError(f"embedding failed: {outcome[1]}")
    if outcome[0] == "bug":
        raise RuntimeError(f"the embedding process failed:\n{outcome[1]}")


def embed_in_child(cache: EmbeddingCache, texts: pl.Series, hashes: np.ndarray, need: np.ndarray, chunk: int,
                   progress: Callable[[int], None] | None = None,
                   out_file: Path | None = None) -> tuple[EmbeddingCache, dict]:
    """:func:`curate.dedup.cache.embed_texts`'s ``embed`` hook: the model calls in a child
    process; returns the cache opened again from disk, with the child's shards."""
    if out_file is None:
        raise CurateError("internal error: embedding in a child process needs an out_file")
    folder = cache.dir.parent
    run_child(texts, hashes, need, cache.embedder, folder, Path(out_file).parent, chunk, progress)
    fresh = EmbeddingCache(folder, cache.embedder, lazy=True)
    if fresh.problem:  # the child's shards did not check out
        raise CurateError(f"after embedding: {fresh.problem}")
    return fresh, {"process": "child"}


def embed_texts_child(texts: pl.Series, hashes: np.ndarray, embedder, cache_dir: Path,
                      progress: Callable[[int], None] | None = None, chunk: int = 200_000,
                      loading: Callable[[], None] | None = None, also=(),
                      out_file: Path | None = None) -> tuple[np.ndarray, dict]:
    """:func:`curate.dedup.cache.embed_texts` with the model calls in a child process
    (same signature; ``out_file`` is required: the out-of-core path's float16 matrix);
    info's ``process`` is ``child``, or None when everything was cached."""
    if out_file is None:
        raise CurateError("internal error: embedding in a child process needs an out_file")
    vecs, info = embed_texts(texts, hashes, embedder, cache_dir, progress, chunk, loading, also, out_file,
                             embed=embed_in_child)
    info.setdefault("process", None)
    return vecs, info
