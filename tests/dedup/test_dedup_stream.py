"""Out-of-core dedup (:mod:`curate.dedup.stream`): the same neighbour table and the same
groups as the in-memory path, in bounded memory.

The comparison runs on 40k captions sampled with replacement from the real captions of
../shared/data and perturbed into near copies (a dropped or swapped word, case,
punctuation). The sizes at which the search is partitioned, partitions are batched, texts
are embedded in chunks and the table is cut into parts are lowered for this module (the
same code paths as at 200k with the shipped sizes, at a fifth of the cost), so that the
partitioned (k-means) search, several batches of partitions, several embedding chunks and
several Parquet parts are all exercised.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.dedup import stream
from curate.dedup.cache import EmbeddingCache
from curate.dedup.index import knn
from curate.dedup.run import DedupOptions, find_duplicates, resolve
from curate.errors import CurateError

FILES = ["a_coco", "a_flickr30k", "c_cc3m", "c_laion", "c_redcaps"]


def perturbed(read_data, rows: int, seed: int) -> pl.DataFrame:
    """``rows`` real captions drawn with replacement; 30% lose a word, 30% get two words
    swapped, a fifth are upper-cased or lose their final punctuation."""
    pool = pl.concat([read_data(f, ["caption"]) for f in FILES])["caption"].drop_nulls()
    rng = np.random.default_rng(seed)
    df = pl.DataFrame({"caption": pool.gather(rng.integers(0, len(pool), rows)),
                       "e": rng.random(rows), "l": rng.integers(0, 10, rows),
                       "r1": rng.random(rows), "r2": rng.random(rows)})
    w = pl.col("caption").str.split(" ")
    n = w.list.len()
    i = (pl.col("r1") * n).cast(pl.Int64).clip(0, (n - 1).clip(0, None))
    j = (pl.col("r2") * n).cast(pl.Int64).clip(0, (n - 1).clip(0, None))
    lo, hi = pl.min_horizontal(i, j), pl.max_horizontal(i, j)
    swapped = pl.concat_list(w.list.head(lo), w.list.get(hi, null_on_oob=True),
                             w.list.slice(lo + 1, (hi - lo - 1).clip(0, None)),
                             w.list.get(lo, null_on_oob=True), w.list.slice(hi + 1)).list.drop_nulls().list.join(" ")
    dropped = pl.concat_list(w.list.head(i), w.list.slice(i + 1)).list.join(" ")
    edited = (pl.when((pl.col("e") < 0.3) & (n >= 4)).then(dropped)
              .when((pl.col("e") < 0.6) & (n >= 2) & (i != j)).then(swapped).otherwise(pl.col("caption")))
    c = pl.col("c")
    light = pl.when(pl.col("l") == 0).then(c.str.to_uppercase()).when(pl.col("l") == 1).then(c.str.strip_chars_end(".")).otherwise(c)
    return (df.with_columns(edited.alias("c")).select(light.alias("caption"))
            .with_row_index("rank").with_columns(pl.col("rank").cast(pl.UInt64).alias("sample_id") * 7 + 3))


def neighbor_table(folder: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(str(p) for p in (folder / "neighbors").glob("part-*.parquet")))


@pytest.fixture(scope="module", autouse=True)
def smaller_sizes():
    """Partitioned search above 5k texts, batches of 8k rows, chunks of 10k texts, parts of
    50k pairs (instead of 40k, 64k, 100k and 250k)."""
    from curate.dedup import index as dedup_index

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dedup_index, "FLAT_MAX", 5_000)
        mp.setattr(stream, "BATCH_ROWS", 8_192)
        mp.setattr(stream, "EMBED_CHUNK", 10_000)
        mp.setattr(stream, "PART_PAIRS", 50_000)
        yield


@pytest.fixture(scope="module")
def both(read_data, tmp_path_factory):
    """The groups and neighbour tables of the same 40k captions, in memory and out of core
    (the second run takes its vectors from the first's cache: the same float16 vectors)."""
    rows = perturbed(read_data, 40_000, seed=7).select("sample_id", "caption", "rank")
    a, b = tmp_path_factory.mktemp("in"), tmp_path_factory.mktemp("out")
    t_in, i_in = find_duplicates(rows, resolve(DedupOptions(memory="in")), a)
    t_out, i_out = find_duplicates(rows, resolve(DedupOptions(memory="out")), b, also=(a / "embeddings",))
    return {"in": (t_in, i_in, a), "out": (t_out, i_out, b), "rows": rows}


@pytest.mark.slow
def test_out_of_core_equals_in_memory_on_real_captions(both):
    t_in, i_in, a = both["in"]
    t_out, i_out, b = both["out"]
    assert not i_in["out_of_core"] and i_out["out_of_core"]
    assert i_in["index"]["exact"] is False  # the partitioned search, not the flat one
    assert i_out["index"]["batches"] > 1 and i_out["parts"] > 1  # several batches and parts
    assert i_out["embedding"]["embedded"] == 0  # vectors from the first run's shards
    # the same neighbour rows, in the same order, with the same cosines and Jaccards
    n_in, n_out = neighbor_table(a), neighbor_table(b)
    assert n_in.height == i_in["rows"] == n_out.height
    assert n_in.equals(n_out)
    # hence the same groups, row for row
    assert t_in.equals(t_out)
    kinds = t_out["dup_kind"].value_counts()
    kinds = dict(zip(kinds["dup_kind"].to_list(), kinds["count"].to_list()))
    assert min(kinds.get(x, 0) for x in ("none", "exact", "near")) > 1_000  # every kind, many times


@pytest.mark.slow
def test_reuse_and_new_threshold_out_of_core(both, tmp_path):
    """A rerun reads the table part by part; a new threshold re-decides exactly like the
    in-memory path; a damaged part is rebuilt, never trusted."""
    rows = both["rows"]
    _, _, b = both["out"]
    cfg = resolve(DedupOptions(memory="out", threshold=0.85))
    t1, info = find_duplicates(rows, cfg, b)
    assert info["reused"]
    t2, _ = find_duplicates(rows, resolve(DedupOptions(memory="in", threshold=0.85)), b)
    assert t1.equals(t2)
    part = b / "neighbors" / "part-00001.parquet"
    part.write_bytes(part.read_bytes()[:100])
    t3, info3 = find_duplicates(rows, cfg, b)
    assert not info3["reused"] and t3.equals(t1)


@pytest.mark.slow
def test_knn_stream_equals_knn_in_small_batches(both, monkeypatch):
    """With batches of a few partitions (many merges per vector), the same lists as knn."""
    _, _, a = both["in"]
    from curate.embed import load_embedder

    cache = EmbeddingCache(a / "embeddings", load_embedder("static"))
    vecs = cache.vecs.astype(np.float32)
    assert len(vecs) > 15_000
    ids, sims, p = knn(vecs, 6)
    monkeypatch.setattr(stream, "BATCH_ROWS", 500)
    ids2, sims2, p2 = stream.knn_stream(vecs, 6)
    assert p2["batches"] > 50
    np.testing.assert_array_equal(ids, ids2)
    np.testing.assert_array_equal(sims, sims2)


@pytest.mark.slow
def test_lazy_cache_writes_the_same_matrix(both, tmp_path):
    _, _, a = both["in"]
    from curate.embed import load_embedder

    emb = load_embedder("static")
    full = EmbeddingCache(a / "embeddings", emb)
    lazy = EmbeddingCache(a / "embeddings", emb, lazy=True)
    assert lazy.vecs is None and np.array_equal(lazy.keys, full.keys)
    rng = np.random.default_rng(3)
    hashes = full.keys[rng.permutation(len(full.keys))[:5_000]]
    lazy.write_matrix(hashes, tmp_path / "m.npy", step=1_234)
    vf = stream.VectorFile(tmp_path / "m.npy")
    assert vf.shape == (5_000, full.vecs.shape[1])
    np.testing.assert_array_equal(vf[np.arange(5_000)], full.lookup(hashes))


@pytest.mark.slow
def test_auto_switch_and_bad_memory_option(both, tmp_path, monkeypatch):
    rows = both["rows"].head(3_000)
    with pytest.raises(CurateError, match="memory must be one of"):
        resolve(DedupOptions(memory="lots"))
    import curate.dedup.run as run_mod

    _, info = find_duplicates(rows, resolve(DedupOptions()), tmp_path / "a")
    assert not info["out_of_core"]  # small: the in-memory path
    monkeypatch.setattr(run_mod, "OUT_OF_CORE_TEXTS", 1_000)
    t_auto, info2 = find_duplicates(rows, resolve(DedupOptions()), tmp_path / "b")
    assert info2["out_of_core"] and info2["index"]["exact"]  # out of core, flat search below 5k
    t_in, _ = find_duplicates(rows, resolve(DedupOptions(memory="in")), tmp_path / "c")
    assert t_auto.equals(t_in)


@pytest.mark.slow
def test_ray_engine_out_of_core_equals_local_in_memory(ray_local, read_data, tmp_path, monkeypatch):
    """--engine ray --memory out (Ray actors embed into the same float16 shards; each batch
    of partitions is searched as Ray tasks) gives the local in-memory path's table."""
    from click.testing import CliRunner

    from curate.cli import cli
    from curate.dedup import index as dedup_index

    df = perturbed(read_data, 3_000, seed=11).select("caption")
    df.write_parquet(tmp_path / "caps.parquet")
    res = CliRunner().invoke(cli, ["score", str(tmp_path / "caps.parquet"), "--out", str(tmp_path / "local")])
    assert res.exit_code == 0, res.output
    import shutil

    shutil.copytree(tmp_path / "local", tmp_path / "ray")
    monkeypatch.setattr(dedup_index, "FLAT_MAX", 100)
    monkeypatch.setattr(dedup_index, "CLUSTER_SIZE", 100)
    monkeypatch.setattr(stream, "BATCH_ROWS", 1_000)
    for name, extra in (("local", ["--memory", "in"]), ("ray", ["--memory", "out", "--engine", "ray"])):
        res = CliRunner().invoke(cli, ["dedup", str(tmp_path / name)] + extra)
        assert res.exit_code == 0, res.output
    import json

    b = json.loads((tmp_path / "ray" / "dedup" / "dedup.json").read_text())
    assert b["engine"] == "ray" and b["neighbors"]["out_of_core"] and b["index"]["batches"] > 3
    ga = pl.read_parquet(tmp_path / "local" / "dedup" / "groups.parquet")
    gb = pl.read_parquet(tmp_path / "ray" / "dedup" / "groups.parquet")
    assert ga.equals(gb) and ga["duplicate_of"].is_not_null().sum() > 100  # there are groups to agree on
    assert neighbor_table(tmp_path / "local" / "dedup").equals(neighbor_table(tmp_path / "ray" / "dedup"))
