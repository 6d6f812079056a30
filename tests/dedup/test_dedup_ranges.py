"""Groups by text range (curate.dedup.ranges) equal the whole-array rule (curate.dedup.groups).

Adversarial neighbour tables: a chain through every text that crosses a range at each step,
chains that jump back and forth between ranges, ties (the better-ranked text must win),
pairs listed twice and in both directions, and pairs to texts outside the set. Every case
runs with ranges much smaller than the corpus, so that pointers cross ranges on every round.
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from curate.dedup.groups import best_better, nearest, roots
from curate.dedup.ranges import local_map, range_groups, read_result

RULES = ["min(cosine, jaccard)", "cosine"]


def write_table(folder, hashes, i, j, cos, jac, parts: int = 3) -> list:
    """The neighbour table's columns as the dedup stage writes them, cut into ``parts``."""
    t = pl.DataFrame({"text_hash": pl.Series(hashes[i], dtype=pl.UInt64),
                      "neighbor_hash": pl.Series(hashes[j], dtype=pl.UInt64),
                      "cosine": pl.Series(cos, dtype=pl.Float32), "jaccard": pl.Series(jac, dtype=pl.Float32)})
    folder.mkdir(parents=True, exist_ok=True)
    step = -(-t.height // parts)
    files = []
    for p in range(parts):
        f = folder / f"part-{p:05d}.parquet"
        t.slice(p * step, step).write_parquet(f)
        files.append(f)
    return files


def expected(n, i, j, cos, jac, rule, threshold):
    pairs = pl.DataFrame({"i": i, "j": j, "cosine": pl.Series(cos, dtype=pl.Float32),
                          "jaccard": pl.Series(jac, dtype=pl.Float32)})
    score, target = best_better(pairs, rule, n)
    nb, ncos = nearest(pairs, n)
    root = roots(np.where(score > threshold, target, np.arange(n)))
    return score, target, nb, ncos, root


def check(tmp_path, n, i, j, cos, jac, rule="min(cosine, jaccard)", threshold=0.75, size=7, parts=3, run_map=None):
    rng = np.random.default_rng(n)
    hashes = rng.choice(np.iinfo(np.int64).max, n, replace=False).astype(np.uint64)
    files = write_table(tmp_path / "table", hashes, i, j, cos, jac, parts)
    plan, info = range_groups(files, hashes, rule, threshold, tmp_path / "work", run_map or local_map, size=size)
    got = read_result(plan, info["rounds"])
    want = expected(n, i, j, cos, jac, rule, threshold)
    for name, g, w in zip(["score", "target", "nearest", "nearest_cosine", "root"], got, want):
        np.testing.assert_array_equal(g, w, err_msg=name)
    return got, info


def test_a_chain_through_every_range_ends_at_the_best_text(tmp_path):
    n = 256  # text t's only better neighbour is t - 1: one group, every pointer crosses ranges
    i = np.arange(1, n)
    got, info = check(tmp_path, n, i, i - 1, np.full(n - 1, 0.9), np.full(n - 1, 0.9), size=8)
    assert (got[4] == 0).all()
    assert info["ranges"] == 32
    assert info["rounds"] == 9  # log2(256) + the round that finds nothing to change
    assert info["changed_per_round"][-1] == 0


def test_chains_that_skip_ranges_and_merge(tmp_path):
    n = 600  # one chain through a random half of the texts (steps of 1 to many ranges),
    rng = np.random.default_rng(1)  # and the other texts hang off random members of it
    chain = np.sort(rng.choice(n, n // 2, replace=False))
    rest = np.setdiff1d(np.arange(n), chain)
    lower = chain[np.maximum(np.searchsorted(chain, rest) - 1, 0)]
    hang = rest > chain[0]
    i = np.r_[chain[1:], rest[hang]]
    j = np.r_[chain[:-1], rng.integers(0, 1 << 30, hang.sum()) % (lower[hang] + 1)]
    j = np.minimum(j, i - 1)
    got, _ = check(tmp_path, n, i, j, np.full(len(i), 0.95), np.full(len(i), 0.85), size=20)
    assert (got[4][chain] == chain[0]).all()


def test_ties_go_to_the_better_ranked_text(tmp_path):
    n = 50
    i = np.repeat(np.arange(10, n), 3)
    j = np.tile([3, 1, 2], n - 10)  # three better neighbours, equal similarity: text 1 wins
    got, _ = check(tmp_path, n, i, j, np.full(len(i), 0.8), np.full(len(i), 0.8), size=4)
    assert (got[1][10:] == 1).all()
    assert (got[4][10:] == 1).all()


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("threshold", [0.5, 0.75, 0.9])
def test_random_tables_with_ties_repeats_and_both_directions(tmp_path, rule, threshold):
    rng = np.random.default_rng(7)
    n, m = 400, 3000
    i, j = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = i != j
    i, j = i[keep], j[keep]
    cos = np.round(rng.uniform(0.3, 1.0, len(i)), 1)  # coarse values: many ties
    jac = np.round(rng.uniform(0.3, 1.0, len(i)), 1)
    i, j = np.r_[i, j[:200], i[:100]], np.r_[j, i[:200], j[:100]]  # both directions, repeats
    cos, jac = np.r_[cos, cos[:200], cos[:100]], np.r_[jac, jac[:200], jac[:100]]
    check(tmp_path, n, i, j, cos, jac, rule, threshold, size=16, parts=5)


def test_a_pair_to_a_text_outside_the_set_is_dropped(tmp_path):
    n = 20
    hashes = np.arange(100, 100 + n, dtype=np.uint64)
    i, j = np.array([5, 6]), np.array([4, 5])
    t = pl.DataFrame({"text_hash": pl.Series([105, 106, 999], dtype=pl.UInt64),
                      "neighbor_hash": pl.Series([104, 999, 105], dtype=pl.UInt64),
                      "cosine": pl.Series([0.9, 0.99, 0.99], dtype=pl.Float32),
                      "jaccard": pl.Series([0.9, 0.99, 0.99], dtype=pl.Float32)})
    (tmp_path / "t").mkdir()
    t.write_parquet(tmp_path / "t" / "part-00000.parquet")
    plan, info = range_groups([tmp_path / "t" / "part-00000.parquet"], hashes, "cosine", 0.8, tmp_path / "w", size=3)
    score, target, nb, ncos, root = read_result(plan, info["rounds"])
    want = expected(n, i[:1], j[:1], np.array([0.9]), np.array([0.9]), "cosine", 0.8)
    for g, w in zip((score, target, nb, ncos, root), want):
        np.testing.assert_array_equal(g, w)
    assert info["pairs"] == 2  # one pair, both directions


def test_no_pairs_every_text_is_its_own_group(tmp_path):
    got, info = check(tmp_path, 30, np.array([], np.int64), np.array([], np.int64), np.array([]), np.array([]), size=8)
    assert (got[4] == np.arange(30)).all()
    assert info["rounds"] == 1
