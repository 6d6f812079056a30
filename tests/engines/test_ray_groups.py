"""``curate dedup --engine ray`` computes the groups by text range as Ray tasks, and assigns
the vectors to k-means partitions as Ray tasks; the groups table equals the local engine's.

A few thousand real captions with exact copies, copies in capitals, copies with a word
dropped and copies of those with another word dropped (chains of near copies), so that
there are groups, chains and ties to agree on. The ranges, the assignment blocks and the
k-means sample are made small, so that every step runs as several units and pointers cross
ranges. Runs on the session's local Ray with 2 CPUs (``ray_local`` in conftest.py).
"""
from __future__ import annotations

import shutil

import numpy as np
import polars as pl
import pytest

from curate import engines
from curate.dedup import index as dedup_index
from curate.dedup import ranges
from curate.dedup.run import DedupOptions
from curate.engines.plan import local_map, ray_map
from curate.errors import CurateError
from curate.scoring.chain import load_chain
from curate.scoring.runner import ScoreOptions


@pytest.fixture(scope="module")
def scored(read_data, tmp_path_factory):
    d = tmp_path_factory.mktemp("ray-groups")
    base = read_data("c_cc3m").select("caption").head(2400)
    words = pl.col("caption").str.split(" ")
    drop_last = base.slice(600, 300).with_columns(words.list.head(words.list.len() - 1).list.join(" ").alias("caption"))
    drop_two = drop_last.head(200).with_columns(words.list.slice(1).list.join(" ").alias("caption"))
    caps = pl.concat([base, base.head(300), base.slice(300, 300).with_columns(pl.col("caption").str.to_uppercase()),
                      drop_last, drop_two])
    caps.write_parquet(d / "caps.parquet")
    engines.score([str(d / "caps.parquet")], d / "run", load_chain("default"), ScoreOptions(batch_rows=1000))
    return d / "run"


def small_units(monkeypatch):
    """Partitioned search, a sampled k-means and small units of every kind."""
    monkeypatch.setattr(dedup_index, "FLAT_MAX", 100)
    monkeypatch.setattr(dedup_index, "CLUSTER_SIZE", 100)
    monkeypatch.setattr(dedup_index, "KMEANS_TRAIN_MAX", 1000)
    monkeypatch.setattr(dedup_index, "ASSIGN_STEP", 256)
    monkeypatch.setattr(dedup_index, "ASSIGN_BLOCK_STEPS", 2)
    monkeypatch.setattr(ranges, "RANGE_TEXTS", 256)


@pytest.mark.slow
@pytest.mark.parametrize("memory", ["in", "out"])
def test_groups_by_range_on_ray_equal_the_local_engine(ray_local, scored, tmp_path, monkeypatch, memory):
    small_units(monkeypatch)
    for name in ("local", "ray"):
        shutil.copytree(scored, tmp_path / name)
    a = engines.dedup(tmp_path / "local", DedupOptions(memory=memory))
    b = engines.dedup(tmp_path / "ray", DedupOptions(memory=memory, engine="ray"))
    assert "groups_by_range" not in a
    g = b["groups_by_range"]
    assert g["ranges"] >= 10 and g["rounds"] >= 2 and g["changed_per_round"][-1] == 0
    assert g["duplicates"] > 0
    assert b["index"]["kmeans_train"] == a["index"]["kmeans_train"] == 1000  # a sample, not every vector
    assert b["counts"] == a["counts"] and a["counts"]["near"] >= 300
    ga = pl.read_parquet(tmp_path / "local" / "dedup" / "groups.parquet")
    gb = pl.read_parquet(tmp_path / "ray" / "dedup" / "groups.parquet")
    assert ga.equals(gb)  # every column: groups, representatives, scores, nearest
    assert (ga["group_size"] >= 3).sum() >= 100  # chains of near copies
    # the rerun reuses the table and still computes the groups by range
    again = engines.dedup(tmp_path / "ray", DedupOptions(memory=memory, engine="ray"))
    assert again["neighbors"]["reused"] and again["groups_by_range"]["rounds"] == g["rounds"]
    assert pl.read_parquet(tmp_path / "ray" / "dedup" / "groups.parquet").equals(ga)
    assert not list((tmp_path / "ray" / "dedup").glob("groups-by-range-*"))  # work files removed


def test_range_units_on_ray_equal_the_local_map(ray_local, tmp_path):
    n = 300  # a chain through every range, and ties
    i = np.r_[np.arange(1, n), np.arange(5, n)]
    j = np.r_[np.arange(0, n - 1), np.arange(5, n) - 5]
    cos = np.full(len(i), 0.9, np.float32)
    hashes = np.arange(1000, 1000 + n, dtype=np.uint64)
    t = pl.DataFrame({"text_hash": pl.Series(hashes[i]), "neighbor_hash": pl.Series(hashes[j]),
                      "cosine": cos, "jaccard": cos})
    files = []
    for p in range(3):
        files.append(tmp_path / f"part-{p}.parquet")
        t.slice(p * 200, 200).write_parquet(files[-1])
    out = []
    for run_map in (local_map, ray_map):
        plan, info = ranges.range_groups(files, hashes, "cosine", 0.8, tmp_path / run_map.__name__, run_map, size=16)
        out.append((info, ranges.read_result(plan, info["rounds"])))
    assert out[0][0] == out[1][0] and out[0][0]["rounds"] >= 3
    for x, y in zip(out[0][1], out[1][1]):
        np.testing.assert_array_equal(x, y)
    assert (out[1][1][4] == 0).all() and (out[1][1][1][5:] == np.arange(5, n) - 5).all()  # ties: the better-ranked


def test_a_failing_unit_is_one_line(ray_local, tmp_path):
    """A part of the neighbour table that went missing: one line naming the step."""
    plan = ranges.RangePlan(10, 4, str(tmp_path))
    shared = (ranges.text_index(np.arange(10, dtype=np.uint64)), plan, "cosine")
    with pytest.raises(CurateError) as e:
        ray_map(ranges.split_unit, [(0, str(tmp_path / "gone.parquet"))], shared)
    assert str(e.value).startswith("a split_unit task failed: ") and "gone.parquet" in str(e.value)
    assert "\n" not in str(e.value)
