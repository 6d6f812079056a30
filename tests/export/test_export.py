"""`curate export`: shards and an index that Hugging Face `datasets` and `webdataset` read."""
from __future__ import annotations

import json
import tarfile

import polars as pl
import pytest
from helpers import QUALITY, invoke, make_runs, manifest, write_recipe

from curate.errors import CurateError
from curate.export.shards import export, tar_bytes
from curate.mix.build import build_mixture


@pytest.fixture(scope="module")
def mix(tmp_path_factory, data_dir):
    runs = make_runs(tmp_path_factory, data_dir)
    d = tmp_path_factory.mktemp("export")
    recipe = write_recipe(d / "recipe.toml", runs, {"web": {"share": 0.3}, "human": {"share": 0.3},
                                                    "long": {"share": 0.4, "repeat": 2}},
                          size=5000, seed=6, quality=QUALITY)
    build_mixture(recipe, d / "mix")
    return d / "mix"


@pytest.fixture(autouse=True)
def hf_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))


def test_parquet_shards_load_with_datasets(mix, tmp_path):
    datasets = pytest.importorskip("datasets")
    idx = export(mix, "parquet", tmp_path / "out", shard_rows=1000)
    m = manifest(mix)
    full, rest = divmod(m.height, 1000)
    assert [s["rows"] for s in idx["shards"]] == [1000] * full + ([rest] if rest else [])
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "out" / "part-*.parquet"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    assert ds.num_rows == m.height
    assert ds["sample_id"] == m["sample_id"].to_list()  # shards keep the manifest's order
    assert ds["caption"] == m["caption_clean"].to_list()  # the text the trainer gets
    assert ds["caption_original"] == m["caption"].to_list()
    assert (set(m.columns) - {"caption_clean"}) | {"caption_original"} == set(ds.column_names)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["mixture"] == json.loads((mix / "manifest.json").read_text())["mixture"]
    assert "images are not included" in index["images"]


def test_jsonl_shards_load_with_datasets(mix, tmp_path):
    datasets = pytest.importorskip("datasets")
    export(mix, "jsonl", tmp_path / "out", shard_rows=2000)
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "out" / "part-*.jsonl"), split="train",
                               cache_dir=str(tmp_path / "hf-cache"))
    m = manifest(mix)
    assert ds.num_rows == m.height
    assert ds["sample_id"] == [str(x) for x in m["sample_id"].to_list()]  # 64-bit ids as strings
    assert ds["caption"] == m["caption_clean"].to_list() and ds["repeat"] == m["repeat"].to_list()


def test_webdataset_shards_load_with_webdataset(mix, tmp_path):
    wds = pytest.importorskip("webdataset")
    idx = export(mix, "webdataset", tmp_path / "out", shard_rows=1500)
    m = manifest(mix)
    n = len(idx["shards"])
    url = str(tmp_path / "out" / f"shard-{{00000..{n - 1:05d}}}.tar")
    got = list(wds.WebDataset(url, shardshuffle=False).decode())
    assert len(got) == m.height
    assert [g["__key__"] for g in got] == [f"{x:020d}" for x in m["sample_id"].to_list()]
    assert [g["txt"] for g in got] == m["caption_clean"].to_list()
    meta = [g["json"] for g in got]
    assert [x["sample_id"] for x in meta] == [str(x) for x in m["sample_id"].to_list()]
    assert [x["row"] for x in meta] == m["row"].to_list() and [x["run"] for x in meta] == m["run"].to_list()
    assert "caption" not in meta[0]


def test_tar_members_are_standard(mix, tmp_path):
    export(mix, "webdataset", tmp_path / "out", shard_rows=100_000)
    m = manifest(mix)
    with tarfile.open(tmp_path / "out" / "shard-00000.tar") as t:
        members = t.getmembers()
        assert len(members) == 2 * m.height
        first = members[0]
        assert first.name == f"{m['sample_id'][0]:020d}.txt" and first.isfile() and first.mode == 0o644
        assert t.extractfile(first).read().decode() == m["caption_clean"][0]
        assert json.loads(t.extractfile(members[1]).read())["url"] == m["url"][0]


def test_expanded_repeats_and_deterministic_bytes(mix, tmp_path):
    wds = pytest.importorskip("webdataset")
    m = manifest(mix)
    assert m["repeat"].max() == 2  # the long source is repeated
    a = export(mix, "webdataset", tmp_path / "a", shard_rows=1000, expand_repeats=True)
    b = export(mix, "webdataset", tmp_path / "b", shard_rows=1000, expand_repeats=True)
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    assert a["rows"] == m["repeat"].sum() == 5000
    keys = [g["__key__"] for g in wds.WebDataset(str(tmp_path / "a" / "shard-{00000..00004}.tar"), shardshuffle=False)]
    assert len(keys) == 5000 == len(set(keys))


def test_tar_of_empty_and_unicode_captions(tmp_path):
    t = pl.DataFrame({"sample_id": pl.Series([1, 2, 3], dtype=pl.UInt64),
                      "caption": ["", None, "e\u0301\u4e2d\U0001f600"], "row": [0, 1, 2]}).to_arrow()
    (tmp_path / "x.tar").write_bytes(tar_bytes(t, expand=False))
    with tarfile.open(tmp_path / "x.tar") as tf:
        texts = [tf.extractfile(x).read().decode() for x in tf.getmembers() if x.name.endswith(".txt")]
    assert texts == ["", "", "e\u0301\u4e2d\U0001f600"]


def test_export_errors(mix, tmp_path):
    with pytest.raises(CurateError, match="unknown format"):
        export(mix, "csv", tmp_path / "x")
    export(mix, "jsonl", tmp_path / "x")
    res = invoke("export", mix, "--format", "jsonl", "--out", tmp_path / "x")
    assert res.exit_code == 1 and res.output.startswith("Error:") and "--overwrite" in res.output
    res = invoke("export", mix, "--format", "parquet", "--out", tmp_path / "x", "--overwrite", "--shard-rows", 4000)
    assert res.exit_code == 0, res.output
    names = sorted(p.name for p in (tmp_path / "x").iterdir())
    assert names == ["index.json", "part-00000.parquet", "part-00001.parquet"]
    assert "images are not included" in res.output
