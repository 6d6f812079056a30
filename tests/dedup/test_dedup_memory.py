"""What keeps out-of-core dedup's memory bounded, each checked to change no result: the
model calls in a child process, normal forms made slice by slice, Jaccard in chunks of
words, and the centroid search past 4,096 clusters. All on real captions of ../shared/data."""
from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import polars as pl
import pytest

from curate.dedup import index, neighbors, text
from curate.dedup.cache import embed_texts
from curate.dedup.embed_process import embed_texts_child
from curate.embed import Embedder, load_embedder
from curate.errors import CurateError
from curate.hashing import text_hash64

FILES = ["a_coco", "a_flickr30k", "c_cc3m", "c_laion", "c_redcaps", "d_"]


@pytest.fixture(scope="module")
def captions(read_data) -> pl.Series:
    pool = pl.concat([read_data(f, ["caption"]) for f in FILES])["caption"].drop_nulls()
    return pool.unique(maintain_order=True)


@pytest.fixture(scope="module")
def static(curate_cache):
    return load_embedder("static")


@pytest.mark.slow
def test_child_process_embeds_the_same_vectors(static, captions, tmp_path):
    t = captions.head(6_000)
    h = text_hash64(t).to_numpy()
    v_in, i_in = embed_texts(t, h, static, tmp_path / "a")
    v_out, i_out = embed_texts_child(t, h, static, tmp_path / "b", chunk=2_000, out_file=tmp_path / "m.npy")
    assert i_out["process"] == "child" and i_out["embedded"] == 6_000 and i_in["embedded"] == 6_000
    np.testing.assert_array_equal(np.asarray(v_out, np.float32), v_in)
    assert not (tmp_path / "embed-input.parquet").exists()  # the child's input is removed
    # all cached now: no child at all
    _, again = embed_texts_child(t, h, static, tmp_path / "b", out_file=tmp_path / "m2.npy")
    assert again["embedded"] == 0 and again["process"] is None


@pytest.mark.slow
def test_a_killed_child_is_one_line_and_a_rerun_goes_on(static, captions, tmp_path):
    t = captions.head(20_000)
    h = text_hash64(t).to_numpy()
    seen = []

    def kill_on_third(n: int) -> None:
        seen.append(n)
        if len(seen) == 3:
            for c in multiprocessing.active_children():
                os.kill(c.pid, signal.SIGKILL)

    with pytest.raises(CurateError, match="killed by signal SIGKILL") as e:
        embed_texts_child(t, h, static, tmp_path / "c", kill_on_third, chunk=1_000, out_file=tmp_path / "m.npy")
    assert "\n" not in str(e.value)
    v, info = embed_texts_child(t, h, static, tmp_path / "c", chunk=1_000, out_file=tmp_path / "m.npy")
    assert info["embedded"] < 20_000  # the shards written before the kill are kept
    v_in, _ = embed_texts(t, h, static, tmp_path / "d")
    np.testing.assert_array_equal(np.asarray(v, np.float32), v_in)


@pytest.mark.slow
def test_a_model_that_fails_in_the_child_is_one_line(static, captions, tmp_path):
    """The static model's folder with its tokenizer file broken: the child fails to load it."""
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(static.path, folder)
    (folder / "tokenizer.json").write_text("not json")
    emb = Embedder("path:broken", folder, "cpu", "0" * 64, 64)
    t = captions.head(100)
    with pytest.raises(CurateError, match=r"^embedding failed: cannot load embedder 'path:broken'") as e:
        embed_texts_child(t, text_hash64(t).to_numpy(), emb, tmp_path / "e", out_file=tmp_path / "m.npy")
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_out_of_core_dedup_never_loads_the_model_libraries_in_the_main_process(static, captions, tmp_path):
    """The parent process of an out-of-core dedup never imports torch (the child does); the
    static embedder needs torch only, never sentence-transformers or transformers."""
    rows = pl.DataFrame({"caption": captions.head(3_000)}).with_row_index("rank").with_columns(
        (pl.col("rank").cast(pl.UInt64) + 1).alias("sample_id"))
    rows.write_parquet(tmp_path / "rows.parquet")
    code = textwrap.dedent(f"""
        import sys, polars as pl
        from curate.dedup.run import DedupOptions, find_duplicates, resolve
        rows = pl.read_parquet({str(tmp_path / 'rows.parquet')!r})
        table, info = find_duplicates(rows, resolve(DedupOptions(memory="out")), __import__("pathlib").Path({str(tmp_path / 'out')!r}))
        assert info["out_of_core"] and info["embedding"]["process"] == "child", info
        print("torch" in sys.modules, "sentence_transformers" in sys.modules, table.height)
        from curate.embed import load_embedder
        v = load_embedder("static").encode(pl.Series(["a dog on the grass"]))  # in this process now
        print(v.shape[1], "sentence_transformers" in sys.modules, "transformers" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "CURATE_CACHE": os.environ["CURATE_CACHE"]})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", "False", "3000", "256", "False", "False"]


def test_normal_forms_in_slices_equal_one_slice(captions, monkeypatch):
    rows = (pl.DataFrame({"caption": pl.concat([captions.head(4_000), captions.head(1_000).str.to_uppercase(),
                                                pl.Series([None, "", "  "], dtype=pl.String)])})
            .with_row_index("rank").with_columns((pl.col("rank").cast(pl.UInt64) * 3).alias("sample_id")))
    r1, t1 = text.texts_of(rows)
    monkeypatch.setattr(text, "TEXT_ROWS", 700)
    r2, t2 = text.texts_of(rows)
    assert r1.equals(r2) and t1.equals(t2)
    assert r1["text"].null_count() == 3 and t1.height < 5_000  # empty captions; upper-cased copies share a text
    assert "caption" not in r1.columns


def test_jaccard_in_chunks_of_words_equals_one_chunk(captions, monkeypatch):
    frame = text.text_columns(captions.head(5_000).to_frame("caption"))
    words = neighbors.word_sets(frame)
    rng = np.random.default_rng(5)
    i, j = rng.integers(0, 5_000, 40_000), rng.integers(0, 5_000, 40_000)
    whole = neighbors.pair_jaccard(words, i, j)
    monkeypatch.setattr(neighbors, "PAIR_WORDS", 3_000)
    monkeypatch.setattr(neighbors, "WORD_TEXTS", 333)
    chunked = neighbors.pair_jaccard(neighbors.word_sets(frame), i, j)
    np.testing.assert_array_equal(whole, chunked)
    same = neighbors.pair_jaccard(words, np.arange(100), np.arange(100))
    assert (same[words.lens[:100] > 0] == 1).all()


def recall_at(ids: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true neighbours (rows of ``truth``, -1 = none) found in ``ids``."""
    hit = (ids[:, :, None] == truth[:, None, :]).any(1) & (truth >= 0)
    return float(hit.sum() / (truth >= 0).sum())


@pytest.mark.slow
def test_two_level_partitions_find_the_neighbours_one_level_finds(static, captions, monkeypatch):
    """Past ASSIGN_EXACT_MAX clusters, k-means runs in two levels and each vector is compared
    with the centroids of its 8 nearest centroid lists only: on real captions the close
    neighbours (cosine >= 0.9) are found as often as with one level (recall against an
    exact search)."""
    import faiss

    from curate.dedup import stream

    texts = pl.concat([captions, captions.str.replace(r"^\S+\s+", ""),
                       captions.str.replace(r"\s+\S+$", "")]).unique(maintain_order=True)
    vecs = static.encode(texts)
    assert len(vecs) > index.FLAT_MAX  # the partitioned search
    flat = faiss.IndexFlatIP(vecs.shape[1])
    flat.add(vecs)
    q = np.random.default_rng(2).choice(len(vecs), 1_000, replace=False)
    sims, found = flat.search(vecs[q], 11)
    # the neighbours dedup needs: close ones (near copies and close paraphrases)
    truth = np.where((found == q[:, None]) | (sims < 0.9), -1, found)
    assert "levels" in index.plan(10_000_000, 256, 10)
    assert "levels" not in index.plan(1_000_000, 256, 10)  # 1M: one level, as before
    one, _, p1 = stream.knn_stream(vecs, 10)
    monkeypatch.setattr(index, "ASSIGN_EXACT_MAX", 50)
    two, _, p2 = stream.knn_stream(vecs, 10)
    assert "levels" not in p1 and p2["levels"]["coarse"] == round(p1["nlist"] ** 0.5)
    assert abs(p2["nlist"] - p1["nlist"]) <= 2
    r1, r2 = recall_at(one[q], truth), recall_at(two[q], truth)
    assert (truth >= 0).sum() > 500 and r1 > 0.95 and r2 >= r1 - 0.01, (r1, r2)
