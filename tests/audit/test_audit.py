"""Audit: `curate explain` reports what the tables hold, `curate verify` catches an edited
source row, `curate diff` accounts for every added and removed sample."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import QUALITY, invoke, make_runs, manifest, quality_expr, scores_of, write_recipe

from curate.audit.diff import diff
from curate.audit.explain import explain
from curate.audit.verify import verify
from curate.errors import CurateError
from curate.hashing import FINGERPRINT, file_fingerprint, input_fingerprint
from curate.layout import MANIFEST_JSON
from curate.mix.build import build_mixture
from curate.scoring.chain import load_chain
from curate.scoring.runner import ScoreOptions, score


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    return make_runs(tmp_path_factory, data_dir)


@pytest.fixture(scope="module")
def table(runs):
    return scores_of(runs)


@pytest.fixture(scope="module")
def mix(runs, tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    recipe = write_recipe(d / "recipe.toml", runs, {"web": {"share": 0.5}, "human": {"share": 0.5}},
                          caps={"group_by": "group_id"}, size=2000, seed=4, quality=QUALITY)
    build_mixture(recipe, d / "mix")
    return d / "mix"


# -- explain -------------------------------------------------------------------------------


def _check_against_tables(e: dict, row: dict, run: Path) -> None:
    info = json.loads((run / "run.json").read_text())
    assert e["origin"]["source"] == row["source"] and e["origin"]["row"] == row["row"]
    assert e["caption"] == row["caption"]
    assert e["decision"] == {"keep": row["keep"], "reason": row["reason"]}
    chain = {f["id"]: f for f in info["chain"]["filter"]}
    assert [s["filter"] for s in e["scores"]] == list(chain)
    for s in e["scores"]:
        f = chain[s["filter"]]
        assert s["score"] == row[s["column"]]
        assert (s["min"], s["max"]) == (f["min"], f["max"])
        v = row[s["column"]]
        within = v is not None and (f["min"] is None or v >= f["min"]) and (f["max"] is None or v <= f["max"])
        assert s["pass"] == within
    first_fail = next((s["filter"] for s in e["scores"] if not s["pass"]), None)
    if row["reason"] not in (None, "empty"):
        assert first_fail == row["reason"]  # the reason is the first failing filter
    assert e["carried"]["group_id"] == row["group_id"]


@pytest.mark.slow
def test_explain_a_selected_sample_reports_the_tables(mix, runs, table):
    m = manifest(mix)
    for picked in m.head(3).iter_rows(named=True):
        e = explain(picked["sample_id"], mix=mix)
        mine = (pl.col("sample_id") == picked["sample_id"]) & (pl.col("run") == picked["run"])
        row = table.filter(mine).row(0, named=True)
        _check_against_tables(e, row, runs[picked["run"]])
        mx = e["mix"]
        assert mx["selected"] and mx["repeat"] == picked["repeat"]
        assert mx["quality"] == pytest.approx(picked["quality"], rel=1e-12)
        assert mx["sample_key"] == pytest.approx(picked["sample_key"], rel=1e-9)
        assert mx["key_cutoff"] >= picked["sample_key"]
        assert e["origin"]["file"] and Path(e["origin"]["file"]).is_file()


@pytest.mark.slow
def test_explain_says_why_a_sample_was_not_selected(mix, runs, table):
    m = manifest(mix)
    info = json.loads((mix / "manifest.json").read_text())
    web = table.filter(pl.col("run") == "web").with_columns(quality_expr().alias("q"))
    out = web.filter(~pl.col("sample_id").is_in(m["sample_id"].implode()))
    dropped = out.filter(~pl.col("keep")).row(0, named=True)
    e = explain(dropped["sample_id"], mix=mix)
    _check_against_tables(e, dropped, runs["web"])
    assert not e["mix"]["selected"] and e["mix"]["why"].startswith("not eligible")
    seen = set()
    for row in out.filter(pl.col("keep")).head(40).iter_rows(named=True):
        why = explain(row["sample_id"], mix=mix)["mix"]["why"]
        kind = why.split(":")[0]
        seen.add(kind)
        if kind == "capped":
            others = (table.filter((pl.col("group_id") == row["group_id"]) & pl.col("keep"))
                      .with_columns(quality_expr().alias("q")))
            assert others["q"].max() >= row["q"]
        else:
            assert kind == "not drawn"
            key = -math.log(explain(row["sample_id"], mix=mix)["mix"]["u"]) / row["q"]
            assert key > info["counts"]["per_source"]["web"]["key_cutoff"]
    assert seen == {"capped", "not drawn"} or seen == {"not drawn"}


def test_explain_with_a_run_only_and_the_cli(mix, runs, table):
    row = table.filter(pl.col("run") == "human").row(7, named=True)
    e = explain(row["sample_id"], run=runs["human"])
    _check_against_tables(e, row, runs["human"])
    assert "mix" not in e and e["dedup"] is None
    res = invoke("explain", row["sample_id"], "--run", runs["human"], "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["scores"] == json.loads(json.dumps(e["scores"]))
    res = invoke("explain", row["sample_id"], "--mix", mix)
    assert res.exit_code == 0, res.output
    assert "decision" in res.output and "specificity" in res.output


def test_explain_errors_are_one_line(mix):
    for args in (["123", "--mix", mix], ["not-a-number", "--mix", mix], ["5"]):
        res = invoke("explain", *args)
        assert res.exit_code == 1, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:"), res.output


def test_explain_reports_the_duplicate_group(runs, tmp_path, table):
    run = tmp_path / "web"
    shutil.copytree(runs["web"], run)
    s = pl.read_parquet(run / "scores" / "part-*.parquet").head(4).select("sample_id")
    rep = s["sample_id"][0]
    g = s.with_columns(pl.lit(rep, pl.UInt64).alias("dup_group"), pl.lit(4, pl.UInt32).alias("group_size"),
                       (pl.col("sample_id") == rep).alias("is_representative"))
    (run / "dedup").mkdir()
    g.write_parquet(run / "dedup" / "groups.parquet")
    e = explain(s["sample_id"][2], run=run)
    assert e["dedup"]["dup_group"] == rep and e["dedup"]["representative"] == rep
    assert e["dedup"]["group_size"] == 4 and e["dedup"]["is_representative"] is False


# -- verify --------------------------------------------------------------------------------


def _edit_parquet_caption(path: Path, row: int) -> None:
    t = pq.read_table(path)
    caps = t.column("caption").to_pylist()
    caps[row] = (caps[row] or "") + " [edited]"
    t = t.set_column(t.schema.get_field_index("caption"), "caption", pa.array(caps, t.schema.field("caption").type))
    pq.write_table(t, path)


@pytest.fixture
def private_copy(tmp_path, data_dir):
    """A copy of one real source file, scored and mixed on its own."""
    src = tmp_path / "data" / "cc3m.parquet"
    src.parent.mkdir()
    shutil.copy(next(data_dir.glob("c_cc3m*.parquet")), src)
    run = tmp_path / "run"
    score([str(src)], run, load_chain(None), ScoreOptions())
    recipe = write_recipe(tmp_path / "r.toml", {"cc": run}, {"cc": {}}, size=500, seed=8)
    build_mixture(recipe, tmp_path / "mix")
    return src, tmp_path / "mix"


def test_verify_intact_then_catches_an_edited_row(private_copy):
    src, mix = private_copy
    assert verify(mix)["ok"] and verify(mix, full=True)["ok"]
    assert invoke("verify", mix).exit_code == 0
    picked = manifest(mix).sort("row").row(10, named=True)
    _edit_parquet_caption(src, picked["row"])
    v = verify(mix)
    assert not v["ok"] and v["changed"] == 1
    assert v["changes"][0]["row"] == picked["row"] and v["changes"][0]["sample_id"] == picked["sample_id"]
    assert v["changes"][0]["problem"] == "caption changed"
    res = invoke("verify", mix)
    assert res.exit_code == 1
    assert f"row {picked['row']} (sample {picked['sample_id']})" in res.output


def test_an_edit_to_an_unselected_row_keeps_the_mixture_intact(private_copy):
    src, mix = private_copy
    chosen = set(manifest(mix)["row"].to_list())
    free = next(r for r in range(3000) if r not in chosen)
    _edit_parquet_caption(src, free)
    v = verify(mix)
    assert v["ok"] and v["files"][0]["fingerprint_matches"] is False
    assert v["files"][0]["status"] == "intact (rows)"


def test_a_mixture_of_runs_fingerprinted_with_blake2b_still_verifies(private_copy):
    """Runs scored before XXH3-128 fingerprints recorded blake2b-128: verify checks those."""
    src, mix = private_copy
    info = json.loads((mix / MANIFEST_JSON).read_text())
    [rec] = info["inputs"][0]["files"]
    assert rec.pop(FINGERPRINT) == input_fingerprint(src)
    rec["blake2b"] = file_fingerprint(src)
    (mix / MANIFEST_JSON).write_text(json.dumps(info))
    v = verify(mix)
    assert v["ok"] and v["files"][0]["fingerprint_matches"] and v["files"][0]["status"] == "intact (fingerprint)"
    _edit_parquet_caption(src, manifest(mix)["row"][0])
    v = verify(mix)
    assert not v["ok"] and v["files"][0]["fingerprint_matches"] is False
    assert v["changes"][0]["problem"] == "caption changed"


def test_verify_reports_a_missing_file_and_truncated_rows(private_copy):
    src, mix = private_copy
    t = pq.read_table(src)
    last = manifest(mix)["row"].max()
    pq.write_table(t.slice(0, last), src)  # the last selected row is gone
    v = verify(mix)
    assert not v["ok"] and any("row missing" in c["problem"] and c["row"] == last for c in v["changes"])
    src.unlink()
    v = verify(mix)
    assert not v["ok"] and "file not found" in v["changes"][0]["problem"]
    assert invoke("verify", mix).exit_code == 1


def test_verify_a_jsonl_source(tmp_path, read_data):
    df = read_data("a_coco").head(400).select("caption", "image_id")
    src = tmp_path / "coco.jsonl"
    df.write_ndjson(src)
    run = tmp_path / "run"
    score([str(src)], run, load_chain(None), ScoreOptions())
    build_mixture(write_recipe(tmp_path / "r.toml", {"j": run}, {"j": {}}, size=100, seed=1), tmp_path / "mix")
    assert verify(tmp_path / "mix", full=True)["ok"]
    row = manifest(tmp_path / "mix")["row"].min()
    lines = src.read_text().splitlines()
    obj = json.loads(lines[row])
    obj["caption"] = obj["caption"].upper() + "!"
    lines[row] = json.dumps(obj)
    src.write_text("\n".join(lines) + "\n")
    v = verify(tmp_path / "mix")
    assert [c["row"] for c in v["changes"]] == [row]


# -- diff ----------------------------------------------------------------------------------


def test_diff_accounts_for_every_sample(runs, tmp_path, table):
    a = write_recipe(tmp_path / "a.toml", runs, {"human": {"share": 0.5}, "web": {"share": 0.5}}, size=1000, seed=1)
    b = write_recipe(tmp_path / "b.toml", runs, {"human": {"share": 0.5}, "long": {"share": 0.5}}, size=1000, seed=1,
                     eligible="keep AND score__specificity > 12")
    build_mixture(a, tmp_path / "A")
    build_mixture(b, tmp_path / "B")
    d = diff(tmp_path / "A", tmp_path / "B")
    ma, mb = manifest(tmp_path / "A"), manifest(tmp_path / "B")
    ia, ib = set(ma["sample_id"].to_list()), set(mb["sample_id"].to_list())
    assert d["removed"] == len(ia - ib) and d["added"] == len(ib - ia) and d["in_both"] == len(ia & ib)
    assert not d["same"]
    removed = d["removed_by_reason"]
    # every web sample is gone because web is not a source of B
    assert removed["not in the runs of B"]["web"] == ma.filter(pl.col("run") == "web").height
    # human samples with specificity <= 12 fail B's eligible condition
    spec = ma.filter(pl.col("run") == "human").join(table.select("sample_id", "score__specificity"), on="sample_id")
    assert removed["not eligible under B's recipe"]["human"] == spec.filter(pl.col("score__specificity") <= 12).height
    assert sum(sum(v.values()) for v in removed.values()) == d["removed"]
    assert sum(sum(v.values()) for v in d["added_by_reason"].values()) == d["added"]
    assert d["per_source"]["web"]["removed"] == ma.filter(pl.col("run") == "web").height
    res = invoke("diff", tmp_path / "A", tmp_path / "B")
    assert res.exit_code == 0 and "not in the runs of B" in res.output
    same = diff(tmp_path / "A", tmp_path / "A")
    assert same["same"] and same["added"] == same["removed"] == 0


def test_not_a_mixture_is_one_line(tmp_path):
    for cmd in (["verify", tmp_path], ["diff", tmp_path, tmp_path], ["explain", "1", "--mix", tmp_path]):
        res = invoke(*cmd)
        assert res.exit_code == 1 and res.output.startswith("Error:") and len(res.output.strip().splitlines()) == 1
    with pytest.raises(CurateError, match="not a mixture folder"):
        verify(tmp_path)
