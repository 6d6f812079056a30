"""A run on a real S3 API server: `curate score --out s3://...`, read back from Python with
curate, polars, DuckDB and pyarrow, the same bytes as the same run on local disk."""
from __future__ import annotations

import io
import json

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest
from helpers import ok

import curate
from curate.layout import pinned_run, pinned_scores_glob, store_pointer
from curate.storage.fs import filesystem

SECRET = "testing-secret-value"


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, data_dir):
    run = tmp_path_factory.mktemp("local") / "run"
    ok("score", str(data_dir / "a_flickr8k_captions.parquet"), "--batch-rows", "2000", "--out", str(run))
    return run


def store_files(url: str) -> dict[str, bytes]:
    """The current version's files by name, as bytes."""
    fs, root = filesystem(pinned_run(url))
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)}


def local_files(run) -> dict[str, bytes]:
    v = curate.pinned_run(run)
    return {p.relative_to(v).as_posix(): p.read_bytes() for p in v.rglob("*") if p.is_file()}


def test_score_to_s3_switches_in_a_version_with_the_local_runs_bytes(s3, data_dir, local_run):
    url = s3.url("runs/flickr")
    res = ok("score", str(data_dir / "a_flickr8k_captions.parquet"), "--batch-rows", "2000", "--out", url)
    assert f"{url}/scores" in res.output
    ptr = store_pointer(url)
    local = curate.pinned_run(local_run)
    assert ptr["previous"] is None and ptr["version"].split("-")[0] == local.name.split("-")[0]  # key-time
    got, want = store_files(url), local_files(local_run)
    assert sorted(got) == sorted(want) and any(n.startswith("scores/part-") for n in got)
    for name in want:
        if name.endswith(".parquet") or name == "chain.toml":
            assert got[name] == want[name], name
    info = json.loads(got["run.json"])
    assert info["key"] == json.loads(want["run.json"])["key"] and info["rows"] == json.loads(want["run.json"])["rows"]
    fs, _ = filesystem(url)
    assert fs.ls(url + "/.v", detail=False) and not fs.exists(url + "/.curate-lock")
    everything = b"".join(fs.cat_file(p) for p in fs.find(url))
    assert SECRET.encode() not in everything and b"testing" not in got["run.json"]


def test_a_run_on_s3_reads_from_python_like_a_local_one(s3, data_dir, local_run):
    url = s3.url("runs/flickr")
    ok("score", str(data_dir / "a_flickr8k_captions.parquet"), "--batch-rows", "2000", "--out", url)
    want = pl.read_parquet(curate.pinned_scores_glob(local_run)).sort("sample_id")
    run = curate.open_run(url)
    assert run.scores.collect().sort("sample_id").equals(want)
    assert curate.reason_counts(run).equals(curate.reason_counts(curate.open_run(local_run)))
    glob = pinned_scores_glob(url)  # one version, resolved once
    assert pl.scan_parquet(glob).collect().sort("sample_id").equals(want)
    fs, path = filesystem(pinned_run(url))
    con = duckdb.connect()
    con.register_filesystem(fs)
    kept = con.execute(f"SELECT count(*) FROM read_parquet('{glob}') WHERE keep").fetchone()[0]
    assert kept == want["keep"].sum()
    table = ds.dataset(f"{path}/scores", filesystem=fs, format="parquet").to_table()
    assert table.num_rows == want.height


def test_a_second_score_completes_the_run_from_the_store_and_other_inputs_are_refused(s3, data_dir):
    url = s3.url("runs/coco")
    src = str(data_dir / "a_coco_captions_val2017.parquet")
    ok("score", src, "--batch-rows", "2000", "--out", url)
    first = store_pointer(url)["version"]
    ok("score", src, "--batch-rows", "2000", "--out", url)
    assert store_pointer(url)["previous"] == first
    from helpers import fails_in_one_line

    msg = fails_in_one_line("score", str(data_dir / "a_flickr8k_captions.parquet"), "--out", url)
    assert "already holds a run of other inputs" in msg and url in msg and "store-staging" not in msg


def test_decide_on_s3_gives_the_bytes_of_decide_on_disk(s3, data_dir, tmp_path):
    src = str(data_dir / "a_flickr8k_captions.parquet")
    url, run = s3.url("runs/flickr"), tmp_path / "run"
    for out in (url, str(run)):
        ok("score", src, "--batch-rows", "2000", "--out", out)
        ok("decide", out, "--chain", "english-strict")
    got, want = store_files(url), local_files(run)
    parts = [n for n in want if n.startswith("scores/")]
    assert parts and all(got[n] == want[n] for n in parts) and got["chain.toml"] == want["chain.toml"]
    decisions = json.loads(got["run.json"])["decisions"]
    assert [d["chain"] for d in decisions] == [d["chain"] for d in json.loads(want["run.json"])["decisions"]]
    assert decisions[-1]["kept"] < decisions[0]["kept"]


def test_dedup_of_a_run_on_s3_and_a_local_run_gives_the_groups_of_both_on_disk(s3, data_dir, tmp_path):
    a, b = str(data_dir / "a_coco_captions_val2017.parquet"), str(data_dir / "a_flickr8k_captions.parquet")
    url = s3.url("runs/coco")
    ok("score", a, "--out", url)
    ok("score", a, "--out", tmp_path / "coco")
    for run in (tmp_path / "flickr-1", tmp_path / "flickr-2"):
        ok("score", b, "--out", run)
    ok("dedup", url, tmp_path / "flickr-1")
    ok("dedup", tmp_path / "coco", tmp_path / "flickr-2")
    got, want = store_files(url), local_files(tmp_path / "coco")
    groups = pl.read_parquet(io.BytesIO(got["dedup/groups.parquet"]))
    local_groups = pl.read_parquet(tmp_path / "coco" / "dedup" / "groups.parquet")
    assert groups.equals(local_groups) and (~groups["is_representative"]).sum() > 0
    assert got["dedup/groups.parquet"] == (tmp_path / "coco" / "dedup" / "groups.parquet").read_bytes()
    assert all(got[n] == want[n] for n in want if n.startswith("scores/"))
    the_set = json.loads(got["dedup/dedup.json"])["set"]
    assert [m["path"] for m in the_set["runs"]] == [url, str((tmp_path / "flickr-1").resolve())]
    assert curate.open_run(url).dedup.collect().equals(local_groups)
    ok("decide", url, "--chain", "default-dedup")  # score__neardup from the store's groups
    assert json.loads(store_files(url)["run.json"])["decisions"][-1]["chain"] == "default-dedup"


def test_a_second_writer_of_a_run_on_s3_gets_one_line_and_the_run_stays(s3, data_dir):
    from helpers import fails_in_one_line

    from curate.storage.lock import StoreLock

    url = s3.url("runs/flickr")
    src = str(data_dir / "a_flickr8k_captions.parquet")
    ok("score", src, "--batch-rows", "2000", "--out", url)
    before = store_pointer(url)
    with StoreLock(url + "/.curate-lock", url, "curate decide " + url):
        msg = fails_in_one_line("decide", url, "--chain", "english-strict")
    assert "being written by another curate process" in msg and f"curate decide {url}" in msg
    assert SECRET not in msg and store_pointer(url) == before
