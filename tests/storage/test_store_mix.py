"""Mixtures and exports on a real S3 API server: `curate mix` over runs on the store into
a mixture on the store, read back, explained, verified and exported; the same manifest
bytes as the same mix on local disk."""
from __future__ import annotations

import json

import polars as pl
import pytest
from helpers import fails_in_one_line, module_bucket, ok, write_recipe

import curate
from curate.layout import pinned_store, store_pointer
from curate.storage.fs import filesystem

INPUTS = {"human": "a_flickr8k_captions.parquet", "web": "c_redcaps_sample.parquet"}
SOURCES = {"human": {"share": 0.5}, "web": {"share": 0.5}}


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    """One bucket for the module (the runs are scored once), the AWS environment pointed at it."""
    yield from module_bucket(s3_endpoint, "store-mix")


@pytest.fixture(scope="module")
def runs(s3, data_dir, tmp_path_factory):
    """The same two real sources scored on disk and on the store."""
    base = tmp_path_factory.mktemp("runs")
    local = {n: base / n for n in INPUTS}
    store = {n: s3.url(f"runs/{n}") for n in INPUTS}
    for n, f in INPUTS.items():
        for out in (local[n], store[n]):
            ok("score", str(data_dir / f), "--carry-all", "--out", out)
    return local, store


def cat(url: str) -> bytes:
    fs, p = filesystem(url)
    return fs.cat_file(p)


def test_mix_over_runs_on_s3_into_s3_gives_the_local_manifest_bytes(s3, runs, tmp_path):
    local, store = runs
    ok("mix", write_recipe(tmp_path / "local.toml", local, SOURCES, size=800, seed=3), "--out", tmp_path / "mix")
    url = s3.url("mixes/v1")
    res = ok("mix", write_recipe(tmp_path / "store.toml", store, SOURCES, size=800, seed=3), "--out", url,
             "--memory-limit", "1GB")
    assert f"{url}/manifest.parquet" in res.output
    version = pinned_store(url)
    assert cat(f"{version}/manifest.parquet") == (tmp_path / "mix" / "manifest.parquet").read_bytes()
    info = json.loads(cat(f"{version}/manifest.json"))
    want = json.loads((tmp_path / "mix" / "manifest.json").read_text())
    assert info["content_hash"] == want["content_hash"] and info["counts"]["rows"] == want["counts"]["rows"]
    assert [i["run"] for i in info["inputs"]] == [store["human"], store["web"]]
    assert "testing-secret-value" not in json.dumps(info) and "store-staging" not in json.dumps(info)
    recipe = cat(f"{version}/recipe.toml").decode()
    assert store["human"] in recipe
    ok("export", url, "--format", "jsonl", "--out", s3.url("shards/from-store"), "--shard-rows", "300")
    ok("export", tmp_path / "mix", "--format", "jsonl", "--out", tmp_path / "shards", "--shard-rows", "300")
    exported = pinned_store(s3.url("shards/from-store"))
    shards = sorted((tmp_path / "shards").glob("*.jsonl"))
    assert len(shards) == 3
    for p in shards:
        assert cat(f"{exported}/{p.name}") == p.read_bytes(), p.name
    mix = curate.open_mix(url)  # read from Python like a local mixture
    assert mix.manifest.collect().equals(pl.read_parquet(tmp_path / "mix" / "manifest.parquet"))
    again = fails_in_one_line("mix", tmp_path / "store.toml", "--out", url)
    assert "already holds a mixture" in again and "--overwrite" in again
    ok("mix", tmp_path / "store.toml", "--out", url, "--overwrite")
    assert store_pointer(url)["previous"] == version.rsplit("/", 1)[1]


def test_a_mixture_of_local_runs_written_to_s3_then_exported_to_s3(s3, runs, tmp_path):
    local, _ = runs
    url, shards = s3.url("mixes/local-runs"), s3.url("shards/v1")
    ok("mix", write_recipe(tmp_path / "r.toml", local, SOURCES, size=600, seed=1), "--out", url)
    ok("mix", tmp_path / "r.toml", "--out", tmp_path / "mix")
    assert cat(f"{pinned_store(url)}/manifest.parquet") == (tmp_path / "mix" / "manifest.parquet").read_bytes()
    ok("export", tmp_path / "mix", "--format", "parquet", "--out", shards, "--shard-rows", "250")
    ok("export", tmp_path / "mix", "--format", "parquet", "--out", tmp_path / "shards", "--shard-rows", "250")
    version = pinned_store(shards)
    index = json.loads(cat(f"{version}/index.json"))
    local_index = json.loads((tmp_path / "shards" / "index.json").read_text())
    assert index["rows"] == local_index["rows"] == 600 and len(index["shards"]) == 3
    fs, root = filesystem(version)
    assert len(list((tmp_path / "shards").glob("*.parquet"))) == 3
    for p in sorted((tmp_path / "shards").glob("*.parquet")):
        assert cat(f"{version}/{p.name}") == p.read_bytes(), p.name


def test_explain_verify_and_diff_over_mixtures_and_runs_on_s3(s3, runs, tmp_path):
    local, store = runs
    for seed in (3, 4):
        ok("mix", write_recipe(tmp_path / f"l{seed}.toml", local, SOURCES, size=500, seed=seed),
           "--out", tmp_path / f"mix{seed}")
        ok("mix", write_recipe(tmp_path / f"s{seed}.toml", store, SOURCES, size=500, seed=seed),
           "--out", s3.url(f"mixes/m{seed}"))
    url = s3.url("mixes/m3")
    sid = pl.read_parquet(tmp_path / "mix3" / "manifest.parquet")["sample_id"][7]
    got, want = curate.explain(sid, mix=url), curate.explain(sid, mix=tmp_path / "mix3")
    assert got["mixture"]["folder"] == url
    for key in ("caption", "scores", "decision", "mix", "origin"):
        assert got[key] == want[key], key
    alone = curate.explain(sid, run=store["human"] if got["run"]["source_name"] == "human" else store["web"])
    assert alone["scores"] == want["scores"]
    v_got, v_want = curate.verify(url), curate.verify(tmp_path / "mix3")
    assert v_got["ok"] and v_got["changed"] == v_want["changed"] == 0
    assert v_got["checked_rows"] == v_want["checked_rows"] and v_got["files"] == v_want["files"]
    d_got = curate.diff(url, s3.url("mixes/m4"))
    d_want = curate.diff(tmp_path / "mix3", tmp_path / "mix4")
    assert d_got["a"]["folder"] == url and d_got["added"] > 0
    for key in ("in_both", "removed", "added", "per_source", "removed_by_reason", "added_by_reason", "changed_examples"):
        assert d_got[key] == d_want[key], key
    res = ok("explain", str(sid), "--mix", url)
    assert str(sid) in res.output


def test_concepts_on_runs_on_s3_and_a_balanced_mix_over_them(s3, runs, tmp_path):
    local, store = runs
    ok("concepts", *local.values())
    ok("concepts", *store.values())
    for name in INPUTS:
        got = cat(f"{pinned_store(store[name])}/concepts/concepts.parquet")
        assert got == (local[name] / "concepts" / "concepts.parquet").read_bytes(), name
    balanced = []
    for runs_, out in ((local, str(tmp_path / "mix")), (store, s3.url("mixes/balanced"))):
        path = write_recipe(tmp_path / f"{len(balanced)}.toml", runs_, SOURCES, size=400, seed=2)
        path.write_text(path.read_text() + "[balance]\nper_concept = 20\n")
        ok("mix", path, "--out", out)
        balanced.append(out)
    assert cat(f"{pinned_store(balanced[1])}/manifest.parquet") == (tmp_path / "mix" / "manifest.parquet").read_bytes()


@pytest.mark.parametrize("after_s", [1.0, 4.0])
def test_kill_9_of_a_mix_into_s3_leaves_the_old_mixture_or_the_new_one_whole(s3, runs, tmp_path, after_s):
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    _, store = runs
    url = s3.url(f"mixes/killed-{after_s}")
    ok("mix", write_recipe(tmp_path / "a.toml", store, SOURCES, size=500, seed=1), "--out", url)
    old = pinned_store(url)
    old_bytes = cat(f"{old}/manifest.parquet")
    recipe = write_recipe(tmp_path / "b.toml", store, SOURCES, size=500, seed=2)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "mix", str(recipe), "--out", url, "--overwrite"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(after_s)
    os.killpg(proc.pid, signal.SIGKILL)  # the command and its mix child
    proc.wait()
    now = pinned_store(url)
    info = json.loads(cat(f"{now}/manifest.json"))  # whole: manifest.json is uploaded last
    assert (now == old and cat(f"{now}/manifest.parquet") == old_bytes) or info["recipe"]["seed"] == 2
    ok("mix", recipe, "--out", url, "--overwrite")  # the next writer is not blocked by the killed one
