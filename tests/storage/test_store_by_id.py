"""A run's index by sample id on a real S3 API server: part of the version `curate score`
switches in, read by `curate explain` by ranged reads, written again by `curate index`."""
from __future__ import annotations

import polars as pl
from helpers import ok

from curate.audit.explain import explain
from curate.layout import pinned_run, pinned_store
from curate.storage.fs import filesystem

FACTS = ("sample_id", "origin", "caption", "caption_clean", "clean_ops", "signals", "carried", "lang",
         "scores", "decision", "dedup")


def test_explain_on_s3_reads_the_index_of_the_version_and_answers_as_locally(s3, data_dir, tmp_path):
    inp = data_dir / "a_flickr8k_captions.parquet"
    local, url = tmp_path / "run", s3.url("runs/flickr")
    for out in (local, url):
        ok("score", inp, "--batch-rows", "1000", "--carry", "image_id", "--out", out)
    fs, root = filesystem(pinned_store(url))
    names = sorted(p[len(root) + 1:] for p in fs.find(root))
    assert "by-id/by-id.json" in names and "by-id/bucket-00000.parquet" in names
    assert fs.cat_file(f"{root}/by-id/bucket-00000.parquet") == \
        (pinned_run(local) / "by-id" / "bucket-00000.parquet").read_bytes()
    ids = pl.read_parquet(local / "scores" / "*.parquet")["sample_id"]
    for sid in (ids[0], ids[1234], ids[-1]):
        got, want = explain(sid, run=url), explain(sid, run=local)
        assert "notes" not in got and "notes" not in want
        for key in FACTS:
            assert got[key] == want[key], key
    # a version without the index (as written before indexes): the same answer, with a note
    fs.rm(f"{root}/by-id", recursive=True)
    got, want = explain(ids[1234], run=url), explain(ids[1234], run=local)
    assert len(got["notes"]) == 1 and "has no index" in got["notes"][0]
    for key in FACTS:
        assert got[key] == want[key], key
    ok("index", url)
    assert "notes" not in explain(ids[1234], run=url)
    fs2, root2 = filesystem(pinned_store(url))
    assert root2 != root and fs2.exists(f"{root2}/by-id/by-id.json")
