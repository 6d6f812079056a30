"""Inputs on S3 (a real S3 API server on loopback): every format read from the store gives
the same scores, byte for byte, as the same files read from local disk; prefixes and globs
are listed (paginated, a listing of thousands of objects); run.json names each object with
its size and ETag and never a credential.

Captions are real (``../shared/data``); the WebDataset shard and its img2dataset sidecars are
made here."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from helpers import invoke, run_scores

from curate.ingest.inputs import inspect_input, resolve_inputs
from curate.ingest.readers import read_batches
from curate.storage import filesystem, listing
from curate.storage.listing import list_objects

wds = pytest.importorskip("webdataset")


def upload(s3, folder: Path, prefix: str) -> None:
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            s3.client.upload_file(str(p), s3.name, f"{prefix}/{p.relative_to(folder).as_posix()}")


def image(i: int) -> bytes:
    body = hashlib.sha256(str(i).encode()).digest() * (32 + i % 64)
    return b"\xff\xd8\xff\xe0" + body + b"\xff\xd9"


def shard(path: Path, caps: list[str]) -> None:
    """An img2dataset shard: the tar (key.jpg, key.txt, key.json) and its sidecar Parquet."""
    rows = []
    with open(path, "wb") as f:
        tw = wds.TarWriter(f)
        for i, c in enumerate(caps):
            meta = {"key": f"{i:09d}", "caption": c, "status": "success", "error_message": None,
                    "url": f"https://img.example/{i}.jpg", "width": 200 + i % 9}
            rows.append(meta)
            tw.write({"__key__": meta["key"], "jpg": image(i), "txt": c, "json": json.dumps(meta)})
        tw.close()
    pq.write_table(pa.Table.from_pylist(rows), path.with_suffix(".parquet"))
    path.with_name(path.stem + "_stats.json").write_text(json.dumps({"count": len(caps)}))


@pytest.fixture(scope="module")
def folder(read_data, tmp_path_factory) -> Path:
    """One input of every format curate reads, from real captions."""
    d = tmp_path_factory.mktemp("store-inputs") / "in"
    d.mkdir()
    coco = read_data("a_coco", ["caption", "group_id"])
    pq.write_table(coco.to_arrow(), d / "coco.parquet", row_group_size=700)  # read by row group, by range
    laion = read_data("c_laion", ["caption", "image_id"]).head(1500)
    (d / "laion.jsonl.gz").write_bytes(gzip.compress(laion.write_ndjson().encode()))
    read_data("b_multi30k_task1", ["caption", "lang"]).head(900).write_csv(d / "multi30k.csv")
    zh = read_data("b_flickr8k_cn", ["caption"]).head(400)
    tsv = "caption\n" + "\n".join(zh.filter(~pl.col("caption").str.contains(r"[\t\n\r]"))["caption"]) + "\n"
    with pa.CompressedOutputStream(str(d / "flickr8k_cn.tsv.zst"), "zstd") as f:
        f.write(tsv.encode())
    feather.write_feather(read_data("d_imageinwords", ["caption"]).head(300).to_arrow(), d / "iiw.feather")
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_polars(read_data("a_flickr8k", ["caption"]).head(600)).save_to_disk(
        str(d / "hf"), num_shards=2)
    (d / "shards").mkdir()
    shard(d / "shards" / "00000.tar", read_data("a_flickr30k", ["caption"])["caption"].head(700).to_list())
    return d


def relative(df: pl.DataFrame, base: str) -> pl.DataFrame:
    return df.with_columns(pl.col("source").str.strip_prefix(base)).sort("source", "row")


def test_every_format_from_s3_scores_byte_identical_to_local(folder, s3, tmp_path):
    upload(s3, folder, "in")
    local = relative(run_scores([folder], tmp_path / "local"), str(folder) + "/")
    remote = relative(run_scores([s3.url("in") + "/"], tmp_path / "remote"), s3.url("in") + "/")
    assert set(local["source"]) == {"coco.parquet", "laion.jsonl.gz", "multi30k.csv", "flickr8k_cn.tsv.zst",
                                    "iiw.feather", "hf/data-00000-of-00002.arrow", "hf/data-00001-of-00002.arrow",
                                    "shards/00000.tar"}
    assert local.height == 3001 + 1500 + 900 + 300 + 600 + 700 + local.filter(
        pl.col("source") == "flickr8k_cn.tsv.zst").height
    cols = [c for c in local.columns if c != "sample_id"]  # the id hashes the source's name
    assert remote.columns == local.columns
    differ = [c for c in cols if not remote[c].to_arrow().equals(local[c].to_arrow())]
    assert not differ, (differ, remote.select(differ).head(3), local.select(differ).head(3))
    info = json.loads((tmp_path / "remote" / "run.json").read_text())
    by = {i["source"].removeprefix(s3.url("in") + "/"): i for i in info["inputs"]}
    head = s3.client.head_object(Bucket=s3.name, Key="in/coco.parquet")
    assert by["coco.parquet"]["etag"] == head["ETag"].strip('"')
    assert by["coco.parquet"]["bytes"] == (folder / "coco.parquet").stat().st_size
    assert info["sidecars"] == [s3.url("in/shards/00000.parquet")]  # set aside, as locally
    assert info["read"].startswith("read ") and "img2dataset sidecar" in info["read"]
    text = (tmp_path / "remote" / "run.json").read_text()
    assert "testing-secret-value" not in text and "AWS_SECRET" not in text


def test_a_glob_reads_only_its_matches(folder, s3, tmp_path):
    upload(s3, folder, "g")
    r = invoke("score", s3.url("g/*.parquet"), s3.url("g/**/*.tar"), "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    assert "testing-secret-value" not in r.output + (tmp_path / "run" / "run.json").read_text()
    got = pl.read_parquet(tmp_path / "run" / "scores" / "*.parquet")
    assert sorted(set(got["source"])) == [s3.url("g/coco.parquet"), s3.url("g/shards/00000.tar")]
    assert got.height == 3001 + 700


def test_a_listing_of_thousands_of_objects_is_paged_not_one_request_each(s3):
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]  # the server's store: set-up only
    for i in range(2500):
        backend.put_object(s3.name, f"many/{i:05d}.jsonl", b'{"caption": "a dog"}\n')
    calls = []
    fs, _ = filesystem(s3.url("many/"))
    fs.s3.meta.events.register("before-call.s3", lambda model, **kw: calls.append(model.name))
    objs = list_objects(s3.url("many") + "/")
    assert [o.url for o in objs[:2]] == [s3.url("many/00000.jsonl"), s3.url("many/00001.jsonl")]
    assert len(objs) == 2500 and all(o.size == 21 and len(o.etag) == 32 for o in objs)
    # 1,000 keys a page; no HEAD per object (other requests on the shared client, such as
    # a lock's lease renewal left running by another test, are not the listing's)
    assert [c for c in calls if c in ("ListObjectsV2", "HeadObject")] == ["ListObjectsV2"] * 3


def ranges_read(s3, url: str, caption: str = "caption") -> tuple[int, list[int]]:
    """Read ``url`` as `curate score` does; (rows, bytes of each GET)."""
    got = []
    fs, _ = filesystem(url)
    fs.s3.meta.events.register("before-parameter-build.s3.GetObject", lambda params, **kw: got.append(params.get("Range")))
    (inp,) = resolve_inputs([url])
    inspect_input(inp)
    rows = sum(b.height for b in read_batches(inp, caption, None, [], 1000))
    spans = [int(b) - int(a) + 1 for a, b in (r.removeprefix("bytes=").split("-") for r in got)]
    return rows, spans


def test_parquet_is_read_by_ranges_and_text_streamed_in_blocks(s3, read_data, monkeypatch):
    coco = read_data("a_coco", ["caption", "image_id"])
    rng = np.random.default_rng(0)
    wide = coco.with_columns(pl.Series("padding", [rng.bytes(1000) for _ in range(coco.height)]))
    sink = pa.BufferOutputStream()
    pq.write_table(wide.to_arrow(), sink, row_group_size=500)
    s3.client.put_object(Bucket=s3.name, Key="wide.parquet", Body=sink.getvalue().to_pybytes())
    rows, spans = ranges_read(s3, s3.url("wide.parquet"))
    assert rows == coco.height and len(spans) >= 7  # the footer, then a chunk per row group
    assert sum(spans) < sink.getvalue().size / 10  # the padding column is never fetched

    monkeypatch.setattr(listing, "STREAM_BLOCK", 1 << 20)
    body = gzip.compress((coco.write_ndjson() * 6).encode(), compresslevel=1)
    s3.client.put_object(Bucket=s3.name, Key="many.jsonl.gz", Body=body)
    rows, spans = ranges_read(s3, s3.url("many.jsonl.gz"))
    assert rows == 6 * coco.height
    assert max(spans) <= 1 << 20 and sum(spans) < 2 * len(body) + (2 << 20)  # blocks, not the whole object
    assert len(spans) >= len(body) >> 20
