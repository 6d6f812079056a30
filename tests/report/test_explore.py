"""The exploration functions (curate.report.explore) agree with the one decision rule."""
from __future__ import annotations

import polars as pl
import pytest
from helpers import invoke, ok, one_line_error

import curate.report.explore as ex
from curate.scoring.chain import parse_chain

CHAIN = {
    "name": "english", "description": "English only",
    "filter": [
        {"name": "length", "min": 3, "max": 300},
        {"name": "language", "min": 0.25, "allow": ["en"]},
    ],
}


@pytest.fixture(scope="module")
def en_run(tmp_path_factory, read_data):
    """Real multilingual captions (en, de, fr, cs), scored with a chain that keeps English."""
    tmp = tmp_path_factory.mktemp("explore")
    df = read_data("b_multi30k_task1", ["caption", "lang"]).sort("caption").group_by("lang", maintain_order=True).head(40)
    df.write_parquet(tmp / "multi.parquet")
    chain = tmp / "english.toml"
    chain.write_text(parse_chain(CHAIN, "english").to_toml())
    ok("score", tmp / "multi.parquet", "--chain", chain, "--out", tmp / "run")
    return ex.open_run(tmp / "run")


def kept_with(run, step_id: str, bound: str, value: float) -> int:
    """Rows `curate decide` keeps with one threshold of the run's chain changed."""
    chain = {**CHAIN, "filter": [{**f, bound: value} if f.get("id", f["name"]) == step_id else f
                                 for f in CHAIN["filter"]]}
    return ex.redecide(ex.open_run(run.path), parse_chain(chain, "moved")).select(pl.col("keep").sum()).collect().item()


@pytest.mark.parametrize("step_id", ["language", "length"])
def test_what_if_counts_what_the_decision_rule_keeps(en_run, step_id):
    curve = ex.what_if(en_run, step_id, points=6)
    assert curve.height >= 3
    english = en_run.scores.filter(pl.col("lang") == "en").select(pl.len()).collect().item()
    assert 0 < english < en_run.scores.select(pl.len()).collect().item()
    for r in curve.iter_rows(named=True):
        assert r["kept"] == kept_with(en_run, step_id, r["bound"], r["threshold"]), r
        assert r["kept"] <= english  # allow = ["en"] holds at every threshold


def test_what_if_at_the_chains_own_threshold_matches_the_run(en_run):
    """A threshold below every score changes nothing for a `min` bound: the run's own keep."""
    curve = ex.what_if(en_run, "language", points=3)
    lowest = curve.filter(pl.col("threshold") == pl.col("threshold").min())
    kept_now = en_run.scores.select(pl.col("keep").sum()).collect().item()
    at_lowest = kept_with(en_run, "language", "min", 0.0)
    assert lowest["kept"][0] <= at_lowest
    assert kept_with(en_run, "language", "min", 0.25) == kept_now


def test_a_truncated_mixture_manifest_is_a_one_line_error(tmp_path):
    mix = tmp_path / "mix"
    mix.mkdir()
    pl.DataFrame({"sample_id": [1], "run": ["a"]}).write_parquet(mix / "manifest.parquet")
    (mix / "manifest.json").write_text('{"rows": 1, "per_sou')
    one_line_error(invoke("report", mix, "--out", tmp_path / "r.html"), "manifest.json.*unreadable")
