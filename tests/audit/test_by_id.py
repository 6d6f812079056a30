"""A run's index by sample id: written by score, decide and `curate index`, read by
`curate explain`, which answers the same with it as by reading every part, and says in one
note when a run has no index that answers for its scores."""
from __future__ import annotations

import json
import shutil

import numpy as np
import polars as pl
import pytest
from helpers import QUALITY, invoke, make_runs, ok, write_recipe

from curate.audit.explain import explain
from curate.layout import pinned_run
from curate.mix.build import build_mixture
from curate.scoring.byid import BUCKET_ROWS, bucket_bits


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    return make_runs(tmp_path_factory, data_dir)


def copy_run(run, dst):
    """A copy of a run folder with its versions and links (the copy's own files)."""
    shutil.copytree(run, dst, symlinks=True)
    return dst


def without_index(run, dst):
    copy_run(run, dst)
    shutil.rmtree(pinned_run(dst) / "by-id")
    return dst


@pytest.fixture(scope="module")
def mixes(runs, tmp_path_factory):
    """The same recipe over the runs and over copies of them without an index."""
    d = tmp_path_factory.mktemp("by-id")
    bare = {name: without_index(run, d / f"bare-{name}") for name, run in runs.items()}
    out = {}
    for label, rs in (("indexed", runs), ("bare", bare)):
        recipe = write_recipe(d / f"{label}.toml", rs, {"web": {"share": 0.5}, "human": {"share": 0.5}},
                              size=1500, seed=7, quality=QUALITY)
        build_mixture(recipe, d / label)
        out[label] = d / label
    return out, bare


def same_facts(a: dict, b: dict) -> None:
    for key in ("sample_id", "origin", "caption", "caption_clean", "clean_ops", "signals", "carried", "lang",
                "scores", "decision", "dedup", "mix"):
        assert a.get(key) == b.get(key), key
    assert a["run"]["source_name"] == b["run"]["source_name"]


def test_score_writes_an_index_of_every_row(runs):
    for run in runs.values():
        v = pinned_run(run)
        info = json.loads((v / "by-id" / "by-id.json").read_text())
        assert info["run_key"] == json.loads((run / "run.json").read_text())["key"]
        idx = pl.read_parquet(v / "by-id" / "bucket-*.parquet")
        assert idx["sample_id"].is_sorted() and idx.height == info["rows"]
        parts = [pl.read_parquet(v / "scores" / name).select("sample_id").with_row_index("row")
                 .with_columns(pl.lit(i, pl.UInt32).alias("part")) for i, name in enumerate(info["parts"])]
        want = pl.concat(parts).select("sample_id", "part", pl.col("row").cast(pl.UInt32)).sort("sample_id", "part", "row")
        assert idx.equals(want)  # every row once, at its place


def test_buckets_split_large_runs_by_the_top_bits_of_the_id():
    assert bucket_bits(BUCKET_ROWS) == 0 and bucket_bits(BUCKET_ROWS + 1) == 1
    assert bucket_bits(100_000_000) == 6  # 64 buckets of about 1.6M rows


def test_explain_is_the_same_with_and_without_the_index(runs, mixes, table_ids):
    (mix, bare_runs) = mixes
    for name, sid in table_ids:
        a = explain(sid, run=runs[name])
        b = explain(sid, run=bare_runs[name])
        assert "notes" not in a
        assert len(b["notes"]) == 1 and "has no index" in b["notes"][0]
        same_facts(a, b)
        if name in ("web", "human"):
            a, b = explain(sid, mix=mix["indexed"]), explain(sid, mix=mix["bare"])
            assert "notes" not in a and b["notes"]
            same_facts(a, b)


@pytest.fixture(scope="module")
def table_ids(runs, mixes):
    """Ids from every run: selected by the mixture, not selected, and from parts other than the first."""
    mix, _ = mixes
    picked = set(pl.read_parquet(mix["indexed"] / "manifest.parquet")["sample_id"].to_list())
    rng = np.random.default_rng(3)
    out = []
    for name, run in runs.items():
        ids = pl.read_parquet(run / "scores" / "*.parquet")["sample_id"].to_list()
        chosen = [ids[i] for i in rng.choice(len(ids), 6, replace=False)] + [ids[-1]]
        chosen += [next(i for i in ids if i in picked)] if name != "long" else []
        out += [(name, sid) for sid in chosen]
    return out


def test_a_stale_index_gives_one_note_and_the_same_answer(runs, tmp_path):
    run = copy_run(runs["human"], tmp_path / "human")
    sid = pl.read_parquet(run / "scores" / "*.parquet")["sample_id"][100]
    want = explain(sid, run=runs["human"])
    meta = pinned_run(run) / "by-id" / "by-id.json"
    info = json.loads(meta.read_text())
    meta.write_text(json.dumps({**info, "run_key": "0123456789abcdef"}))
    got = explain(sid, run=run)
    assert got["notes"] == [f"{run}: its index by sample id was made for other scores "
                            "(curate index RUN writes it again); read every part instead"]
    same_facts(got, want)
    # an index under this run's key whose rows point one row off: the rows read hold other ids
    meta.write_text(json.dumps(info))
    for bucket in meta.parent.glob("bucket-*.parquet"):
        t = pl.read_parquet(bucket)
        t.with_columns((pl.col("row") + 1) % 1000).write_parquet(bucket)
    res = invoke("explain", sid, "--run", run)
    assert res.exit_code == 0, res.output
    notes = [line for line in res.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "does not match its parts" in notes[0]
    ok("index", run)
    assert "notes" not in explain(sid, run=run)


def test_curate_index_and_decide_write_it_for_a_run_made_without_one(tmp_path, data_dir):
    run = tmp_path / "run"
    ok("score", data_dir / "a_flickr8k_captions.parquet", "--batch-rows", "1000", "--out", run)
    shutil.rmtree(pinned_run(run) / "by-id")  # as a run made before indexes
    sid = pl.read_parquet(run / "scores" / "*.parquet")["sample_id"][2345]
    assert "has no index" in explain(sid, run=run)["notes"][0]
    res = ok("index", run)
    assert "indexed 3,000 rows of 3 parts" in res.output
    before = explain(sid, run=run)
    assert "notes" not in before
    ok("decide", run)
    after = explain(sid, run=run)
    assert "notes" not in after and (pinned_run(run) / "by-id" / "by-id.json").is_file()
    assert after["origin"] == before["origin"] and after["caption"] == before["caption"]


def test_verify_and_diff_under_a_small_memory_limit_agree_with_the_default(mixes):
    from curate.audit.diff import diff
    from curate.audit.verify import verify

    mix, _ = mixes
    small = verify(mix["indexed"], full=True, memory_limit="200MB")
    assert small == verify(mix["indexed"], full=True) and small["ok"] and small["checked_rows"] == 1500
    assert all(f["status"] == "intact (rows)" for f in small["files"])
    d = diff(mix["indexed"], mix["bare"], memory_limit="200MB")
    assert d == diff(mix["indexed"], mix["bare"]) and d["same"] and d["in_both"] == 1500
