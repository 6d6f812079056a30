"""The Ray engine writes the same tables as the local engine.

Both engines score the same few thousand real captions (Parquet with row groups that do and
do not line up with the parts, JSON lines, CSV); every row must come out with the same
sample_id, source, row, caption, scores, keep and reason; ``curate dedup`` on both engines
must give the same groups. Runs on the session's local Ray with 2 CPUs
(``ray_local`` in conftest.py). Without Ray installed these tests skip, except under CI (``make test``
installs the ``ray`` extra), where they fail.
"""
from __future__ import annotations

import json
import shutil

import polars as pl
import pytest
from click.testing import CliRunner

from curate import engines
from curate.cli import cli
from curate.engines import score
from curate.errors import CurateError
from curate.scoring.chain import load_chain
from curate.scoring.runner import ScoreOptions

BATCH = 500


@pytest.fixture(scope="module")
def inputs(read_data, tmp_path_factory) -> list[str]:
    d = tmp_path_factory.mktemp("ray-inputs")
    web = read_data("c_laion").select("caption", "url", "image_id").head(1200)
    # a few empty captions: reason "empty" must match too
    web = web.with_columns(
        pl.when(pl.int_range(pl.len()) % 97 == 5).then(None).otherwise(pl.col("caption")).alias("caption")
    )
    # row groups of 300 never end on a part boundary before the file ends: one unit, 3 parts
    web.write_parquet(d / "web.parquet", row_group_size=300)
    # row groups of 250: units of two row groups, one part each
    read_data("b_multi30k_task1").select("caption", "image_id").head(1500).write_parquet(
        d / "multi.parquet", row_group_size=250)
    # JSON lines: Chinese and long captions, no url column (carried as null)
    pl.concat([
        read_data("b_coco_cn").select("caption", "image_id").head(400),
        read_data("d_imageinwords").select("caption", "image_id").head(200),
    ]).write_ndjson(d / "zh-long.jsonl")
    read_data("c_cc3m").select("caption", "url", "image_id").head(300).write_csv(d / "cc3m.csv")
    return [str(d / n) for n in ("web.parquet", "multi.parquet", "zh-long.jsonl", "cc3m.csv")]


def _table(run) -> pl.DataFrame:
    return pl.read_parquet(str(run / "scores" / "part-*.parquet"))


#: parts of the local run that the Ray run finds already written: a whole Parquet unit (the
#: driver skips it), a part inside a three-part unit and a JSON-lines part (the actor skips them)
KEPT = ("part-00001-00001.parquet", "part-00000-00001.parquet", "part-00002-00000.parquet")


@pytest.fixture(scope="module")
def both(ray_local, inputs, tmp_path_factory):
    """A local run, and a Ray run that finishes a copy of it from which most parts are gone
    (so one Ray run checks both equal output and resuming across engines)."""
    out = tmp_path_factory.mktemp("runs")
    chain = load_chain("default")
    local = score(inputs, out / "local", chain, ScoreOptions(carry=("image_id",), batch_rows=BATCH, workers=1))
    shutil.copytree(out / "local", out / "ray")
    (out / "ray" / "run.json").unlink()
    for part in (out / "ray" / "scores").glob("part-*.parquet"):
        if part.name not in KEPT:
            part.unlink()
    mtimes = {name: (out / "ray" / "scores" / name).stat().st_mtime_ns for name in KEPT}
    ray_run = score(inputs, out / "ray", chain, ScoreOptions(carry=("image_id",), batch_rows=BATCH, engine="ray"))
    return out, local, ray_run, mtimes


@pytest.mark.slow
def test_same_parts_with_the_same_schema(both):
    out, *_ = both
    parts = {p.name: p for p in (out / "local" / "scores").glob("part-*.parquet")}
    ray_parts = {p.name: p for p in (out / "ray" / "scores").glob("part-*.parquet")}
    assert sorted(ray_parts) == sorted(parts)
    for name, p in parts.items():
        assert pl.read_parquet_schema(ray_parts[name]) == pl.read_parquet_schema(p), name
    assert pl.read_parquet_schema(next(iter(parts.values())))["sample_id"] == pl.UInt64


@pytest.mark.slow
def test_every_row_has_the_same_provenance_scores_and_decision(both):
    out, *_ = both
    a, b = _table(out / "local"), _table(out / "ray")
    assert a.height == b.height == 3600
    assert a["sample_id"].n_unique() == a.height
    assert set(a["sample_id"]) == set(b["sample_id"])
    j = a.join(b, on="sample_id", suffix="_ray")
    floats = [c for c in a.columns if a.schema[c] == pl.Float64]
    for c in a.columns:
        if c == "sample_id":
            continue
        if c in floats:
            diff = (j[c] - j[f"{c}_ray"]).abs().max()
            assert diff is None or diff <= 1e-9, c
            assert j[c].is_null().equals(j[f"{c}_ray"].is_null()), c
        else:
            assert j[c].equals(j[f"{c}_ray"].alias(c)), c
    # row numbers are the index within each file, whichever engine read it
    for src, n in (("web.parquet", 1200), ("zh-long.jsonl", 600), ("cc3m.csv", 300)):
        rows = b.filter(pl.col("source").str.ends_with(src))["row"].sort()
        assert rows.to_list() == list(range(n)), src


@pytest.mark.slow
def test_run_json_is_the_same_but_for_the_engine(both):
    out, local, ray_run, _ = both
    assert (local["engine"], ray_run["engine"]) == ("local", "ray")
    assert ray_run["engine_info"]["cluster_cpus"] == 2
    for key in ("rows", "kept", "dropped", "quantiles", "languages", "inputs", "key", "chain", "filters"):
        assert ray_run[key] == local[key], key
    assert json.loads((out / "ray" / "run.json").read_text())["engine"] == "ray"


@pytest.mark.slow
def test_ray_finishes_a_run_keeping_its_finished_parts(both):
    out, _, _, mtimes = both
    for name, mtime in mtimes.items():
        assert (out / "ray" / "scores" / name).stat().st_mtime_ns == mtime, name
    assert len(list((out / "ray" / "scores").glob("part-*.parquet"))) == 9


@pytest.mark.slow
def test_a_library_error_in_an_actor_is_one_message(ray_local, tmp_path):
    pl.DataFrame({"caption": ["a dog", "a cat"], "id": ["x", None]}).write_parquet(tmp_path / "ids.parquet")
    with pytest.raises(CurateError, match="id column 'id' is empty"):
        score([str(tmp_path / "ids.parquet")], tmp_path / "run", load_chain("default"),
              ScoreOptions(id_column="id", engine="ray"))


# -- without Ray ----------------------------------------------------------------------------


def test_without_ray_the_engine_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(engines, "find_spec", lambda name: None)
    with pytest.raises(CurateError, match=r"pip install 'curate\[ray\]'"):
        engines.check_engine("ray")
    res = CliRunner().invoke(cli, ["score", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "r"), "--engine", "ray"])
    assert res.exit_code == 1
    assert res.output.strip().count("\n") == 0 and "pip install 'curate[ray]'" in res.output
    assert not (tmp_path / "r").exists()


def test_address_needs_the_ray_engine(tmp_path):
    res = CliRunner().invoke(cli, ["score", str(tmp_path / "x.parquet"), "--out", str(tmp_path / "r"), "--address", "auto"])
    assert res.exit_code == 1 and "--engine ray" in res.output


# -- curate dedup --engine ray ----------------------------------------------------------------


@pytest.mark.slow
def test_dedup_on_ray_writes_the_same_groups(ray_local, read_data, tmp_path, monkeypatch):
    """Both engines, partitioned search forced (so the Ray tasks run), give the same groups."""
    from curate.dedup import index as dedup_index
    from curate.dedup.run import DedupOptions, dedup

    caps = read_data("c_cc3m").select("caption").head(1700)
    # some exact and near copies, so that there are groups to agree on
    caps = pl.concat([caps, caps.head(200), caps.slice(300, 100).with_columns(pl.col("caption").str.to_uppercase())])
    caps.write_parquet(tmp_path / "caps.parquet")
    score([str(tmp_path / "caps.parquet")], tmp_path / "local", load_chain("default"), ScoreOptions(batch_rows=1000))
    shutil.copytree(tmp_path / "local", tmp_path / "ray")
    monkeypatch.setattr(dedup_index, "FLAT_MAX", 100)
    monkeypatch.setattr(dedup_index, "CLUSTER_SIZE", 100)
    a = dedup(tmp_path / "local", DedupOptions())
    res = CliRunner().invoke(cli, ["dedup", str(tmp_path / "ray"), "--engine", "ray"])
    assert res.exit_code == 0, res.output
    b = json.loads((tmp_path / "ray" / "dedup" / "dedup.json").read_text())
    assert (a["engine"], b["engine"]) == ("local", "ray") and b["engine_info"]["cluster_cpus"] == 2
    assert not b["index"]["exact"] and b["index"]["nlist"] >= 10
    assert b["embedding"]["ray"]["actors"] >= 1 and b["embedding"]["embedded"] == a["embedding"]["embedded"]
    assert b["counts"] == a["counts"] and a["counts"]["duplicate_rows"] >= 300
    ga = pl.read_parquet(tmp_path / "local" / "dedup" / "groups.parquet").sort("sample_id")
    gb = pl.read_parquet(tmp_path / "ray" / "dedup" / "groups.parquet").sort("sample_id")
    assert ga.height == gb.height == 2000
    for c in ("sample_id", "dup_group", "is_representative"):
        assert ga[c].equals(gb[c]), c
    assert (ga["score__neardup"] - gb["score__neardup"]).abs().max() <= 1e-6
    na = pl.read_parquet(str(tmp_path / "local" / "dedup" / "neighbors" / "*.parquet"))
    nb = pl.read_parquet(str(tmp_path / "ray" / "dedup" / "neighbors" / "*.parquet"))
    assert na.sort("sample_id", "neighbor_id").equals(nb.sort("sample_id", "neighbor_id"))


def test_dedup_address_needs_the_ray_engine(tmp_path):
    res = CliRunner().invoke(cli, ["dedup", str(tmp_path), "--address", "auto"])
    assert res.exit_code == 1 and "--engine ray" in res.output
