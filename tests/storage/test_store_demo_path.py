"""The demo's path with every folder on S3 gives the bytes of the same path on local disk.

Inputs of three formats lie in the store (real captions: a Parquet, a JSON lines .gz, and a
WebDataset tar with small generated images): score each, dedup across the three runs,
decide with the dedup chain, mix two mixtures, export one as WebDataset tars with the
images, explain a sample, verify, diff. Once with the runs, the mixtures and the export on
local disk, once with all of them on the store. Both read the same input objects (a row's
``source`` and ``sample_id`` name its input), so every file must be the same bytes: score
parts, dedup groups, manifests, shards."""
from __future__ import annotations

import gzip
import io
import json

import numpy as np
import polars as pl
import pytest
from helpers import module_bucket, ok, write_recipe

import curate
from curate.layout import pinned_run, pinned_store
from curate.storage.fs import filesystem

wds = pytest.importorskip("webdataset")

INPUTS = {"coco": "inputs/coco.parquet", "laion": "inputs/laion.jsonl.gz", "wds": "inputs/wds/00000.tar"}
SOURCES = {"coco": {"share": 0.4}, "laion": {"share": 0.3}, "wds": {"share": 0.3}}


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    with module_bucket(s3_endpoint, "demo-path") as bucket:
        yield bucket


def store_tree(url: str) -> dict[str, bytes]:
    fs, root = filesystem(url)
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)}


@pytest.fixture(scope="module")
def paths(s3, read_data, tmp_path_factory):
    """The same commands on disk and on the store: name -> (local result, store result)."""
    d = tmp_path_factory.mktemp("demo-path")
    coco = read_data("a_coco", ["caption"]).head(500)
    laion = read_data("c_laion", ["caption", "url"]).head(500)
    flickr = read_data("a_flickr30k", ["caption"])["caption"].head(300).to_list()
    body = io.BytesIO()
    coco.write_parquet(body)
    s3.client.put_object(Bucket=s3.name, Key=INPUTS["coco"], Body=body.getvalue())
    s3.client.put_object(Bucket=s3.name, Key=INPUTS["laion"], Body=gzip.compress(laion.write_ndjson().encode()))
    rng = np.random.default_rng(3)
    tar = io.BytesIO()
    with wds.TarWriter(tar) as w:
        for i, c in enumerate(flickr + flickr[:40]):  # 40 exact repeats: duplicates across and within
            w.write({"__key__": f"{i:06d}", "txt": c, "jpg": b"\xff\xd8" + rng.bytes(200 + i % 300) + b"\xff\xd9"})
    s3.client.put_object(Bucket=s3.name, Key=INPUTS["wds"], Body=tar.getvalue())
    out = {"disk": {k: str(d / k) for k in ("runs", "mixes", "shards")},
           "store": {k: s3.url(k) for k in ("runs", "mixes", "shards")}}
    got = {}
    for where, base in out.items():
        runs = {n: f"{base['runs']}/{n}" for n in INPUTS}
        for n, key in INPUTS.items():
            ok("score", s3.url(key), "--out", runs[n], "--carry-all")
        ok("dedup", *runs.values())
        for r in runs.values():
            ok("decide", r, "--chain", "default-dedup")
        mixes = {}
        for seed in (1, 2):
            recipe = write_recipe(d / f"{where}-{seed}.toml", runs, SOURCES, caps={"per_dup_group": 1},
                                  size=600, seed=seed)
            mixes[seed] = f"{base['mixes']}/m{seed}"
            ok("mix", recipe, "--out", mixes[seed])
        ok("export", mixes[1], "--format", "webdataset", "--out", base["shards"], "--shard-rows", "250")
        sid = curate.open_mix(mixes[1]).manifest.filter(pl.col("run") == "wds").collect()["sample_id"][5]
        got[where] = {"runs": runs, "mixes": mixes, "shards": base["shards"], "sid": sid,
                      "explain": curate.explain(sid, mix=mixes[1]), "verify": curate.verify(mixes[1]),
                      "diff": curate.diff(mixes[1], mixes[2])}
    return got


def local_tree(folder) -> dict[str, bytes]:
    from pathlib import Path

    root = Path(folder)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_scores_and_groups_are_the_bytes_of_the_runs_on_disk(paths):
    disk, store = paths["disk"], paths["store"]
    for name in INPUTS:
        mine = local_tree(curate.pinned_run(disk["runs"][name]))
        theirs = store_tree(pinned_run(store["runs"][name]))
        parts = [n for n in mine if n.startswith("scores/")]
        assert parts and all(theirs[n] == mine[n] for n in parts), name
        assert theirs["chain.toml"] == mine["chain.toml"]
        groups = local_tree(f"{disk['runs'][name]}/dedup")["groups.parquet"]
        assert theirs["dedup/groups.parquet"] == groups, name
    g = pl.read_parquet(io.BytesIO(store_tree(pinned_run(store["runs"]["wds"]))["dedup/groups.parquet"]))
    assert (~g["is_representative"]).sum() >= 40  # the repeated captions found across the runs' set


def test_manifests_and_shards_with_images_are_the_bytes_of_the_disk_path(paths):
    disk, store = paths["disk"], paths["store"]
    for seed in (1, 2):
        mine = local_tree(disk["mixes"][seed])
        theirs = store_tree(pinned_store(store["mixes"][seed]))
        assert theirs["manifest.parquet"] == mine["manifest.parquet"], seed
        assert json.loads(theirs["manifest.json"])["content_hash"] == json.loads(mine["manifest.json"])["content_hash"]
    mine, theirs = local_tree(disk["shards"]), store_tree(pinned_store(store["shards"]))
    tars = sorted(n for n in mine if n.endswith(".tar"))
    assert len(tars) >= 2 and all(theirs[n] == mine[n] for n in tars)
    index = json.loads(theirs["index.json"])
    assert index["images_copied"] == index["per_source"]["wds"]["images"] > 100
    assert index["from"] == store["mixes"][1] and "store-staging" not in theirs["index.json"].decode()


def test_explain_verify_and_diff_say_the_same_on_both_paths(paths):
    disk, store = paths["disk"], paths["store"]
    a, b = disk["explain"], store["explain"]
    for key in ("caption", "scores", "decision", "mix", "origin"):
        assert a[key] == b[key], key
    va, vb = disk["verify"], store["verify"]
    assert va["ok"] and vb["ok"] and va["checked_rows"] == vb["checked_rows"] and va["files"] == vb["files"]
    for key in ("in_both", "removed", "added", "per_source", "removed_by_reason", "added_by_reason"):
        assert disk["diff"][key] == store["diff"][key], key
    assert store["diff"]["added"] > 0
