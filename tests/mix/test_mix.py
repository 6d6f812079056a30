"""`curate mix`: recipes, shares, caps, quality tilt, determinism and the outputs.

Three real sources from ../shared/data, scored once per session with the default chain:
web alt-text (c_*), human captions with ~5 per image (a_*) and long captions (d_*).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import QUALITY, invoke, make_runs, manifest, quality_expr, scores_of, write_recipe

from curate.errors import CurateError
from curate.mix.build import build_mixture
from curate.mix.manifest import content_hash
from curate.mix.recipe import load_recipe, parse_recipe
from curate.mix.sql import sampling_u

@pytest.fixture(scope="session")
def runs(tmp_path_factory, data_dir):
    return make_runs(tmp_path_factory, data_dir)


@pytest.fixture(scope="session")
def table(runs):
    return scores_of(runs)


@pytest.fixture(scope="session")
def three_way(runs, tmp_path_factory):
    """A three-source mixture with a per-image cap; shared by several tests."""
    d = tmp_path_factory.mktemp("three-way")
    recipe = write_recipe(d / "recipe.toml", runs, {
        "web": {"share": 0.5}, "human": {"share": 0.3}, "long": {"share": 0.2, "repeat": 3},
    }, caps={"group_by": "group_id", "per_group": 1}, size=4000, seed=11, quality=QUALITY, alpha=1.0)
    build_mixture(recipe, d / "mix")
    return d / "mix"


# -- shares, caps, tilt --------------------------------------------------------------------


def test_shares_are_met_exactly_on_real_data(three_way):
    m = manifest(three_way)
    used = dict(m.group_by("run").agg(pl.col("repeat").sum()).iter_rows())
    assert used == {"web": 2000, "human": 1200, "long": 800}
    info = json.loads((three_way / "manifest.json").read_text())
    assert info["quotas"] == used
    assert {k: v["rows"] for k, v in info["counts"]["per_source"].items()} == used


def test_every_selected_row_is_eligible_and_kept(three_way, table):
    m = manifest(three_way)
    joined = m.join(table, on=["run", "sample_id", "source", "row"], how="left", suffix="_run")
    assert joined["keep"].to_list() == [True] * m.height
    assert (joined["caption"] == joined["caption_run"]).all()


def test_best_caption_per_image_across_the_mixture(three_way, table):
    m = manifest(three_way)
    assert m.filter(pl.col("group_id").is_not_null())["group_id"].is_unique().all()
    # The row kept for an image is its best eligible caption in any source.
    best = (table.filter(pl.col("keep")).with_columns(quality_expr().alias("q"))
            .group_by("group_id").agg(pl.col("q").max().alias("best")))
    chk = m.join(best, on="group_id")
    assert chk.height == m.filter(pl.col("group_id").is_not_null()).height
    assert (chk["quality"] >= chk["best"] - 1e-12).all()


def test_group_cap_per_source_and_k(runs, tmp_path, table):
    recipe = write_recipe(tmp_path / "r.toml", runs, {"human": {}},
                          caps={"group_by": "group_id", "per_group": 2, "scope": "source"}, size=1500, seed=3)
    build_mixture(recipe, tmp_path / "mix")
    m = manifest(tmp_path / "mix")
    assert m.group_by("group_id").len()["len"].max() == 2
    assert m["repeat"].sum() == 1500


def test_dup_group_cap(runs, tmp_path):
    """A fake groups.parquet (every caption of an image is one near-duplicate group) in a
    copy of the human run: at most k rows per group."""
    import shutil

    run = tmp_path / "human"
    shutil.copytree(runs["human"], run)
    s = pl.read_parquet(run / "scores" / "part-*.parquet")
    rep = s.group_by("group_id").agg(pl.col("sample_id").min().alias("dup_group"))
    g = s.select("sample_id", "group_id").join(rep, on="group_id").select(
        "sample_id", "dup_group",
        pl.len().over("dup_group").cast(pl.UInt32).alias("group_size"),
        (pl.col("sample_id") == pl.col("dup_group")).alias("is_representative"),
    )
    recipe = write_recipe(tmp_path / "r.toml", {"human": run}, {"human": {}}, caps={"per_dup_group": 2},
                          size=1000, seed=5, quality=QUALITY)
    with pytest.raises(CurateError, match=r"run `curate dedup .*human` first"):
        build_mixture(recipe, tmp_path / "mix")
    (run / "dedup").mkdir()
    g.write_parquet(run / "dedup" / "groups.parquet")
    build_mixture(recipe, tmp_path / "mix")
    m = manifest(tmp_path / "mix")
    assert "dup_group" in m.columns
    assert m.group_by("dup_group").len()["len"].max() == 2
    truth = m.join(g.select("sample_id", pl.col("dup_group").alias("g")), on="sample_id")
    assert (truth["dup_group"] == truth["g"]).all()


def test_alpha_tilts_towards_quality(runs, tmp_path, table):
    means = {}
    for alpha in (0.0, 1.0, 2.0):
        recipe = write_recipe(tmp_path / f"a{alpha}.toml", runs, {"web": {"share": 0.5}, "human": {"share": 0.5}},
                              size=2000, seed=1, quality=QUALITY, alpha=alpha)
        build_mixture(recipe, tmp_path / f"mix{alpha}")
        m = manifest(tmp_path / f"mix{alpha}")
        means[alpha] = {r: v for r, v in m.group_by("run").agg(pl.col("quality").mean()).iter_rows()}
    elig = (table.filter(pl.col("keep")).with_columns(quality_expr().alias("q"))
            .group_by("run").agg(pl.col("q").mean(), pl.col("q").std().alias("sd")))
    for run, mean, sd in elig.iter_rows():
        if run not in means[0.0]:
            continue
        assert means[0.0][run] < means[1.0][run] < means[2.0][run]
        # alpha = 0 is a uniform draw: its mean is the eligible mean, within sampling error
        assert abs(means[0.0][run] - mean) < 4 * sd / np.sqrt(1000)


def test_repeats_only_when_needed(runs, tmp_path, table):
    n_long = table.filter((pl.col("run") == "long") & pl.col("keep")).height
    need = n_long + n_long // 2
    recipe = write_recipe(tmp_path / "r.toml", runs, {"web": {"share": 0.5}, "long": {"share": 0.5, "repeat": 2}},
                          size=2 * need, seed=2)
    build_mixture(recipe, tmp_path / "mix")
    m = manifest(tmp_path / "mix")
    long = m.filter(pl.col("run") == "long")
    assert long["repeat"].sum() == need and long.height == n_long  # every eligible row, half of them twice
    assert long["repeat"].max() == 2 and m.filter(pl.col("run") == "web")["repeat"].max() == 1
    # the rows used twice are those with the smallest sampling keys
    twice = long.filter(pl.col("repeat") == 2)["sample_key"].max()
    once = long.filter(pl.col("repeat") == 1)["sample_key"].min()
    assert twice <= once


def test_sampling_u_is_the_documented_hash(three_way):
    """The query's u is SplitMix64(sample_id XOR seed_key): recomputed with numpy here."""
    m = manifest(three_way)
    u = sampling_u(m["sample_id"].to_numpy(), 11)
    key = -np.log(u) / m["sampling_weight"].to_numpy()
    assert np.allclose(key, m["sample_key"].to_numpy(), rtol=1e-12, atol=0)


def test_seed_changes_the_draw(runs, tmp_path):
    ids = []
    for seed in (1, 2):
        recipe = write_recipe(tmp_path / f"s{seed}.toml", runs, {"human": {}}, size=1000, seed=seed)
        build_mixture(recipe, tmp_path / f"mix{seed}")
        ids.append(set(manifest(tmp_path / f"mix{seed}")["sample_id"].to_list()))
    assert len(ids[0] & ids[1]) < 0.5 * len(ids[0])


# -- determinism and outputs ---------------------------------------------------------------


def test_byte_identical_across_runs_threads_and_the_resolved_recipe(three_way, tmp_path):
    original = (three_way / "manifest.parquet").read_bytes()
    info = json.loads((three_way / "manifest.json").read_text())
    for threads in (1, 4):
        build_mixture(three_way / "recipe.toml", tmp_path / f"t{threads}", threads=threads)
        assert (tmp_path / f"t{threads}" / "manifest.parquet").read_bytes() == original
        again = json.loads((tmp_path / f"t{threads}" / "manifest.json").read_text())
        assert again["mixture"] == info["mixture"] and again["recipe_sha256"] == info["recipe_sha256"]
    res = invoke("mix", three_way / "recipe.toml", "--out", tmp_path / "cli", "--threads", 2)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "cli" / "manifest.parquet").read_bytes() == original
    assert (tmp_path / "cli" / "query.sql").read_text() == (three_way / "query.sql").read_text()


def test_manifest_json_records_everything(three_way, runs):
    info = json.loads((three_way / "manifest.json").read_text())
    assert info["sql"] == (three_way / "query.sql").read_text()
    assert info["recipe"]["size"] == 4000 and info["recipe"]["seed"] == 11
    assert len(info["recipe_sha256"]) == 64
    for inp in info["inputs"]:
        run = json.loads((Path(inp["run"]) / "run.json").read_text())
        assert inp["files"] and all(len(f["xxh3_128"]) == 32 for f in inp["files"])
        assert [f["xxh3_128"] for f in inp["files"]] == [f["xxh3_128"] for f in run["inputs"]]
        assert all(f["path"] and Path(f["path"]).is_file() for f in inp["files"])
        assert info["filters"][inp["name"]] == run["filters"]
    assert info["model_files"] and info["curate_version"]
    buckets = info["counts"]["quality_buckets"]
    assert sum(sum(v) for v in buckets["rows"].values()) == 4000
    assert info["content_hash"] == content_hash(three_way / "manifest.parquet", ["web", "human", "long"])
    assert info["mixture"] == "mix-" + info["content_hash"][:16]
    assert not list(three_way.glob(".tmp-*"))


def test_manifest_columns_for_a_trainer(three_way):
    m = manifest(three_way)
    for col in ("sample_id", "run", "source", "row", "caption", "url", "image_id", "quality",
                "sampling_weight", "repeat", "caption_hash"):
        assert col in m.columns
    assert m.schema["sample_id"] == pl.UInt64 and m.schema["row"] == pl.Int64
    assert m["sample_id"].is_sorted()
    web = m.filter(pl.col("run") == "web")
    assert web["url"].null_count() < web.height  # web alt-text carries its url
    digest = [int(hashlib.md5(c.encode()).hexdigest()[:16], 16) for c in m["caption"].head(50).to_list()]
    assert m["caption_hash"].head(50).to_list() == digest


def test_query_sql_reproduces_the_manifest_on_its_own(three_way):
    sql = (three_way / "query.sql").read_text()
    con = duckdb.connect()
    rows = con.sql(sql).to_arrow_table() if hasattr(con.sql(sql), "to_arrow_table") else con.sql(sql).arrow()
    m = pq.read_table(three_way / "manifest.parquet")
    assert rows.num_rows == m.num_rows
    assert rows.column("sample_id").to_pylist() == m.column("sample_id").to_pylist()
    assert rows.column("repeat").to_pylist() == m.column("repeat").to_pylist()


def test_cli_mix_prints_a_table(runs, tmp_path):
    recipe = write_recipe(tmp_path / "r.toml", runs, {"web": {"share": 0.6}, "human": {"share": 0.4}}, size=500)
    res = invoke("mix", recipe, "--out", tmp_path / "mix")
    assert res.exit_code == 0, res.output
    assert "web" in res.output and "human" in res.output and "mix-" in res.output
    again = invoke("mix", recipe, "--out", tmp_path / "mix")
    assert again.exit_code == 1 and "--overwrite" in again.output
    assert invoke("mix", recipe, "--out", tmp_path / "mix", "--overwrite").exit_code == 0


def test_the_example_recipe_runs(runs, tmp_path):
    """mixtures/example.toml, with its runs where its comments say they go."""
    example = Path(__file__).resolve().parents[2] / "mixtures" / "example.toml"
    (tmp_path / "mixtures").mkdir()
    (tmp_path / "mixtures" / "example.toml").write_text(example.read_text())
    (tmp_path / "runs").mkdir()
    for name, run in runs.items():
        (tmp_path / "runs" / name).symlink_to(run, target_is_directory=True)
    recipe = load_recipe(tmp_path / "mixtures" / "example.toml")
    assert [s.name for s in recipe.sources] == ["web", "human", "long"]
    info = build_mixture(tmp_path / "mixtures" / "example.toml", tmp_path / "mix")
    assert info["counts"]["rows"] == recipe.size


# -- recipe parsing ------------------------------------------------------------------------


def test_quotas_add_up_by_largest_remainder():
    r = parse_recipe({"size": 10, "source": [{"name": n, "run": n, "weight": 1} for n in "abc"]})
    assert r.quotas == {"a": 4, "b": 3, "c": 3}
    r = parse_recipe({"size": 7, "source": [{"name": "a", "run": "a", "share": 0.7},
                                            {"name": "b", "run": "b", "share": 0.3}]})
    assert r.quotas == {"a": 5, "b": 2}


def test_resolved_recipe_round_trips(tmp_path):
    data = {"size": 100, "seed": 9, "alpha": 0.5, "quality": "score__specificity", "caps": {"group_by": "image_id"},
            "source": [{"name": "a", "run": "runs/a", "weight": 2}, {"name": "b", "run": "runs/b", "weight": 1,
                                                                     "eligible": "keep AND lang = 'en'"}]}
    r = parse_recipe(data, str(tmp_path / "x.toml"), base=tmp_path)
    out = tmp_path / "mix"
    out.mkdir()
    (out / "recipe.toml").write_text(r.to_toml(out))
    back = load_recipe(out / "recipe.toml")
    assert back.digest() == r.digest() and back.quotas == r.quotas
    assert [s.path for s in back.sources] == [s.path for s in r.sources]  # run folders relative to the file
    assert [s["run"] for s in back.to_dict()["source"]] == ["../runs/a", "../runs/b"]


# -- one-line validation errors ------------------------------------------------------------


def _bad(runs: dict[str, Path], tmp_path: Path, case: str) -> Path:
    two = {"web": {"share": 0.5}, "human": {"share": 0.5}}
    cases = {
        "unknown_column": (dict(two, web={"share": 0.5, "quality": "score__nope * 2"}), None, {}),
        "sql_error": (two, None, {"eligible": "keep AND (score__length > "}),
        "not_boolean": (two, None, {"eligible": "score__length"}),
        "not_number": (two, None, {"quality": "caption"}),
        "unknown_run": ({"web": {"share": 0.5}, "ghost": {"share": 0.5}}, None, {}),
        "shares_sum": ({"web": {"share": 0.5}, "human": {"share": 0.4}}, None, {}),
        "share_unmet": ({"web": {"share": 0.2}, "long": {"share": 0.8}}, None, {}),
        "cap_unmet": ({"human": {}}, {"group_by": "group_id"}, {"size": 5000}),
        "no_dedup": (two, {"per_dup_group": 1}, {}),
        "unknown_key": (two, None, {"sise": 3}),
        "unknown_group_column": (two, {"group_by": "image_key"}, {}),
        "runtime_error": (two, None, {"quality": "CAST(caption AS DOUBLE)"}),
    }
    sources, caps, top = cases[case]
    top = {"size": 3000, **top}
    return write_recipe(tmp_path / f"{case}.toml", runs, sources, caps=caps, **top)


@pytest.mark.parametrize("case,needle", [
    ("unknown_column", "'score__nope * 2': unknown column 'score__nope'"),
    ("sql_error", "'keep AND (score__length >'"),
    ("not_boolean", "gives DOUBLE values; it must give a BOOLEAN"),
    ("not_number", "'caption' gives VARCHAR values"),
    ("unknown_run", "source 'ghost': run folder"),
    ("shares_sum", "add up to 0.9"),
    ("share_unmet", "set repeat = "),
    ("cap_unmet", "eligible after the caps"),
    ("no_dedup", "run `curate dedup"),
    ("unknown_key", "unknown key 'sise'"),
    ("unknown_group_column", "group_by column 'image_key'"),
    ("runtime_error", "source 'web': eligible 'keep' or quality 'CAST(caption AS DOUBLE)' failed on the data"),
])
def test_validation_errors_are_one_line(runs, tmp_path, case, needle):
    recipe = _bad(runs, tmp_path, case)
    res = invoke("mix", recipe, "--out", tmp_path / "mix")
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), res.output
    assert needle in lines[0], lines[0]
    assert not (tmp_path / "mix").exists()  # nothing is written before the recipe holds


@pytest.mark.parametrize("quality", ["score__nope", "CAST(caption AS DOUBLE)"])
def test_a_failed_rerun_keeps_no_stale_manifest_json(runs, tmp_path, quality):
    """A rerun that fails (in validation, or while the query runs) leaves the folder's
    manifest.json describing the manifest.parquet beside it: the previous mixture, byte for
    byte, never a manifest.json of one attempt beside the rows of another."""
    good = write_recipe(tmp_path / "g.toml", runs, {"human": {}}, size=100)
    build_mixture(good, tmp_path / "mix")
    before = {p.name: p.read_bytes() for p in (tmp_path / "mix").iterdir()}
    bad = write_recipe(tmp_path / "b.toml", runs, {"human": {}}, size=100, quality=quality)
    with pytest.raises(CurateError):
        build_mixture(bad, tmp_path / "mix", overwrite=True)
    after = {p.name: p.read_bytes() for p in (tmp_path / "mix").iterdir()}
    assert after == before
    info = json.loads(after["manifest.json"])
    assert info["content_hash"] == content_hash(tmp_path / "mix" / "manifest.parquet", ["human"])
    assert not list(tmp_path.glob(".mix.staging-*"))  # no half-written attempt left behind


def test_content_hash_ignores_parquet_encoding(three_way, tmp_path):
    t = pq.read_table(three_way / "manifest.parquet")
    pq.write_table(t, tmp_path / "other.parquet", compression="snappy", row_group_size=777)
    names = ["web", "human", "long"]
    assert content_hash(tmp_path / "other.parquet", names) == content_hash(three_way / "manifest.parquet", names)
    rep = np.array(t.column("repeat").to_pylist(), np.int32)
    rep[0] += 1
    flipped = t.set_column(t.schema.get_field_index("repeat"), "repeat", pa.array(rep))
    pq.write_table(flipped, tmp_path / "flipped.parquet")
    assert content_hash(tmp_path / "flipped.parquet", names) != content_hash(three_way / "manifest.parquet", names)
