"""Mixtures and exports on a real S3 API server: `curate mix` over runs on the store into
a mixture on the store, read back, explained, verified and exported; the same manifest
bytes as the same mix on local disk."""
from __future__ import annotations

import json

import polars as pl
import pytest
from helpers import fails_in_one_line, ok, write_recipe

import curate
from curate.layout import pinned_store, store_pointer
from curate.storage.fs import filesystem

INPUTS = {"human": "a_flickr8k_captions.parquet", "web": "c_redcaps_sample.parquet"}
SOURCES = {"human": {"share": 0.5}, "web": {"share": 0.5}}


@pytest.fixture
def runs(s3, data_dir, tmp_path):
    """The same two real sources scored on disk and on the store."""
    local = {n: tmp_path / "runs" / n for n in INPUTS}
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
    for p in sorted((tmp_path / "shards").glob("*.parquet")):
        assert cat(f"{version}/{p.name}") == p.read_bytes(), p.name
