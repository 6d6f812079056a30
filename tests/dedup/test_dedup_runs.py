"""Several runs deduplicated together (`curate dedup RUN [RUN ...]`): one group space.

Run ``human`` holds real COCO captions, run ``web`` holds near copies of some of them (made
by tests/test_dedup.py's generator) and real Flickr8k captions; their ids differ, so their
sample ids do.
"""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from curate.dedup.run import DedupOptions
from curate.dedup.runs import set_problem
from curate.engines import dedup
from curate.errors import CurateError
from helpers import invoke, one_line_error, write_recipe
from nearcopy import near_copies


def scored(tmp: Path, name: str, captions: list[str], prefix: str | None = None) -> Path:
    from curate.scoring.chain import load_chain
    from curate.scoring.runner import ScoreOptions, score

    inp = tmp / f"{name}.parquet"
    prefix = prefix or name
    pl.DataFrame({"caption": captions, "id": [f"{prefix}-{i}" for i in range(len(captions))]}).write_parquet(inp)
    score([str(inp)], tmp / name, load_chain("default"), ScoreOptions(id_column="id"))
    return tmp / name


def groups(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "dedup" / "groups.parquet")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, read_data):
    tmp = tmp_path_factory.mktemp("sets")
    coco = read_data("a_coco", ["caption"])["caption"].head(400).to_list()
    flickr = read_data("a_flickr8k", ["caption"])["caption"].head(300).to_list()
    planted = near_copies(coco, 150, seed=21)
    copies = [c for _, c, _ in planted]
    human = scored(tmp, "human", coco)
    web = scored(tmp, "web", copies + flickr)
    late = scored(tmp, "late", flickr[:100] + read_data("c_cc3m", ["caption"])["caption"].head(80).to_list())
    # one run with the rows of both, under the same ids: the joint space must equal its groups
    both_in = tmp / "both.parquet"
    pl.concat([pl.read_parquet(tmp / "human.parquet"), pl.read_parquet(tmp / "web.parquet")]).write_parquet(both_in)
    from curate.scoring.chain import load_chain
    from curate.scoring.runner import ScoreOptions, score

    score([str(both_in)], tmp / "both", load_chain("default"), ScoreOptions(id_column="id"))
    return {"tmp": tmp, "human": human, "web": web, "late": late, "both": tmp / "both", "n_copies": len(copies),
            "orig": [i for i, _, _ in planted]}


def ids(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "scores" / "*.parquet", columns=["sample_id", "id"])


COLS = ["sample_id", "dup_group", "group_size", "is_representative", "dup_kind", "duplicate_of", "score__neardup"]


def test_two_runs_share_one_group_space_equal_to_one_run_of_both(corpus):
    info = dedup([corpus["human"], corpus["web"]], DedupOptions(cache=str(corpus["tmp"] / "cache")))
    dedup(corpus["both"])
    joint = pl.concat([groups(corpus["human"]), groups(corpus["web"])]).select(COLS).sort("sample_id")
    alone = groups(corpus["both"]).select(COLS).sort("sample_id")
    assert joint.equals(alone)
    h, w = groups(corpus["human"]), groups(corpus["web"])
    assert h.height == 400 and w.height == corpus["n_copies"] + 300
    # copies in web share a group with their original in human (either may represent it)
    hid, wid = ids(corpus["human"]), ids(corpus["web"])
    pairs = pl.DataFrame({"id": [f"web-{j}" for j in range(corpus["n_copies"])],
                          "orig": [f"human-{i}" for i in corpus["orig"]]})
    hit = (pairs.join(wid.join(w, on="sample_id"), on="id")
           .join(hid.join(h, on="sample_id").select(pl.col("id").alias("orig"), pl.col("dup_group").alias("g")), on="orig"))
    assert hit.height == corpus["n_copies"] and (hit["dup_group"] == hit["g"]).mean() >= 0.95
    across = w.filter(pl.col("dup_group").is_in(h["sample_id"].implode()))
    assert across.height >= 0.5 * corpus["n_copies"] and not across["is_representative"].any()
    # every group has exactly one representative across the two runs
    reps = pl.concat([h, w]).group_by("dup_group").agg(pl.col("is_representative").sum())
    assert (reps["is_representative"] == 1).all()
    for run in (corpus["human"], corpus["web"]):
        saved = json.loads((run / "dedup" / "dedup.json").read_text())
        assert [r["name"] for r in saved["set"]["runs"]] == ["human", "web"]
        assert saved["set"]["id"] == info["set"]["id"] and saved["set_counts"]["rows"] == 400 + w.height
    assert info["per_run"][str(corpus["web"])]["represented_by_other_runs"] == across.height
    assert set_problem(corpus["human"]) is None


def test_prefer_makes_a_run_represent_its_groups(corpus):
    dedup([corpus["human"], corpus["web"]], DedupOptions(prefer=["web"], cache=str(corpus["tmp"] / "cache")))
    h, w = groups(corpus["human"]), groups(corpus["web"])
    mixed = pl.concat([h.with_columns(pl.lit("h").alias("r")), w.with_columns(pl.lit("w").alias("r"))])
    mixed = mixed.filter(pl.col("r").n_unique().over("dup_group") > 1)
    assert mixed.height > 100
    assert set(mixed.filter(pl.col("is_representative"))["r"]) == {"w"}
    saved = json.loads((corpus["human"] / "dedup" / "dedup.json").read_text())
    assert saved["order"][0].startswith("run preference")
    dedup([corpus["human"], corpus["web"]], DedupOptions(cache=str(corpus["tmp"] / "cache")))  # back


def test_adding_a_run_embeds_only_its_new_texts(corpus):
    cache = str(corpus["tmp"] / "cache")
    dedup([corpus["human"], corpus["web"]], DedupOptions(cache=cache))
    again = dedup([corpus["human"], corpus["web"], corpus["late"]], DedupOptions(cache=cache))
    new = 80  # late: 100 Flickr8k captions web already holds, and 80 CC3M captions
    assert again["embedding"]["embedded"] <= new and again["embedding"]["embedded"] >= new - 5
    late = ids(corpus["late"]).join(groups(corpus["late"]), on="sample_id")
    web = ids(corpus["web"]).join(groups(corpus["web"]), on="sample_id")
    same = pl.DataFrame({"id": [f"late-{j}" for j in range(100)], "w": [f"web-{corpus['n_copies'] + j}" for j in range(100)]})
    same = same.join(late, on="id").join(web.select(pl.col("id").alias("w"), pl.col("dup_group").alias("g")), on="w")
    assert same.height == 100 and (same["dup_group"] == same["g"]).all()  # the same captions: one group
    # human and web now name a set of three: the two-run set they held before is gone
    assert len(json.loads((corpus["web"] / "dedup" / "dedup.json").read_text())["set"]["runs"]) == 3
    dedup([corpus["human"], corpus["web"]], DedupOptions(cache=cache))
    assert "another set" in set_problem(corpus["late"])


def test_a_run_alone_after_a_set_reuses_its_own_cache(corpus):
    alone = dedup(corpus["human"])  # RUN/dedup/embeddings holds its vectors
    info = dedup([corpus["human"], corpus["web"]], DedupOptions(cache=str(corpus["tmp"] / "other-cache")))
    e = info["embedding"]
    assert e["cached"] >= alone["counts"]["texts"] and e["embedded"] + e["cached"] == info["set_counts"]["texts"]
    assert e["embedded"] > 0 and set_problem(corpus["human"]) is None


def test_rescored_member_makes_the_set_stale(corpus, tmp_path):
    a = scored(tmp_path, "a", ["a dog runs on the grass in the park", "two cats sleep on a red sofa"])
    b = scored(tmp_path, "b", ["A dog runs on the grass in the park.", "a man rides a red bicycle"])
    dedup([a, b])
    assert set_problem(a) is None and set_problem(b) is None
    run_json = a / "run.json"
    run_json.write_text(json.dumps({**json.loads(run_json.read_text()), "key": "scored-again"}))
    assert "scored again" in set_problem(b) and f"curate dedup {a.resolve()} {b.resolve()}" in set_problem(b)


# -- bad input ----------------------------------------------------------------------------


def test_error_two_runs_share_a_sample_id(tmp_path):
    a = scored(tmp_path, "a", ["a dog runs on the grass", "two cats sleep"], prefix="x")
    b = scored(tmp_path, "b", ["a red bicycle", "a dog runs on the grass"], prefix="x")
    one_line_error(invoke("dedup", a, b), r"share sample_id \d+ \(2 shared ids.*--id-column")


def test_error_missing_run(tmp_path):
    a = scored(tmp_path, "a", ["a dog runs on the grass", "two cats sleep"])
    one_line_error(invoke("dedup", a, tmp_path / "nosuch"), "nosuch: no such run folder")
    one_line_error(invoke("dedup", a, tmp_path), "not a curate run")


def test_error_run_named_twice_and_unknown_prefer(tmp_path):
    a = scored(tmp_path, "a", ["a dog runs on the grass", "two cats sleep"])
    one_line_error(invoke("dedup", a, a), "named twice")
    one_line_error(invoke("dedup", a, "--prefer", "web"), r"--prefer 'web' is not one of the runs")


def test_other_embedders_cache_is_noted(tmp_path):
    a = scored(tmp_path, "a", ["a dog runs on the grass in the park", "two cats sleep on a red sofa"])
    b = scored(tmp_path, "b", ["a man rides a red bicycle", "a bowl of soup on a table"])
    fake = a / "dedup" / "embeddings" / "0123456789abcdef"
    fake.mkdir(parents=True)
    (fake / "manifest.json").write_text(json.dumps({"embedder": "minilm", "model_sha256": "0123456789abcdef99"}))
    res = invoke("dedup", a, b)
    assert res.exit_code == 0, res.output
    assert "made by another embedder (minilm 0123456789ab)" in res.output


def test_a_held_lock_on_one_run_stops_the_set(tmp_path):
    from curate.layout import lock_folder

    a = scored(tmp_path, "a", ["a dog runs on the grass", "two cats sleep"])
    b = scored(tmp_path, "b", ["a red bicycle", "a bowl of soup"])
    with lock_folder(b):
        with pytest.raises(CurateError, match="b"):
            dedup([a, b])
    assert not (a / "dedup" / "groups.parquet").exists()


# -- mixtures and explain across the set ---------------------------------------------------


def test_per_dup_group_cap_spans_runs_deduplicated_together(corpus, tmp_path):
    from curate.audit.explain import explain
    from curate.mix.build import build_mixture

    runs = {"human": corpus["human"], "web": corpus["web"]}
    recipe = write_recipe(tmp_path / "r.toml", runs, {"human": {"share": 0.5}, "web": {"share": 0.5}},
                          caps={"per_dup_group": 1}, size=300, seed=3, quality="1.0")
    dedup(corpus["human"])
    dedup(corpus["web"])  # apart: two group spaces, so a caption can be drawn from both runs
    build_mixture(recipe, tmp_path / "apart")
    apart = pl.read_parquet(tmp_path / "apart" / "manifest.parquet")
    dedup([corpus["human"], corpus["web"]], DedupOptions(cache=str(corpus["tmp"] / "cache")))
    build_mixture(recipe, tmp_path / "together")
    m = pl.read_parquet(tmp_path / "together" / "manifest.parquet")
    assert m.group_by("dup_group").len()["len"].max() == 1
    # the same groups held apart: some were drawn from both runs
    joint = pl.concat([groups(corpus["human"]), groups(corpus["web"])]).select("sample_id", pl.col("dup_group").alias("j"))
    assert apart.join(joint, on="sample_id").group_by("j").len()["len"].max() >= 2
    # explain names the duplicates in the other run
    copy = groups(corpus["web"]).filter(pl.col("dup_group").is_in(groups(corpus["human"])["sample_id"].implode()))
    e = explain(int(copy["sample_id"][0]), run=corpus["web"])
    assert e["dedup"]["in_other_runs"] and e["dedup"]["in_other_runs"][0]["run"] == str(corpus["human"].resolve())
    assert e["dedup"]["representative_run"] == str(corpus["human"].resolve())
    # a member scored again: the cap refuses the stale set with one line
    run_json = corpus["human"] / "run.json"
    saved = run_json.read_text()
    run_json.write_text(json.dumps({**json.loads(saved), "key": "scored-again"}))
    try:
        one_line_error(invoke("mix", recipe, "--out", tmp_path / "again"), "scored again since")
    finally:
        run_json.write_text(saved)
