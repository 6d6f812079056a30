"""The requests a `curate score` of Parquet objects makes to a real S3 API server, counted by
type through botocore's event hooks: one listing, no HEAD per object (the listing gives
size and ETag), and the footer fetched once per object however often the object is opened
(inspected, read, checked for a sidecar)."""
from __future__ import annotations

import collections
import io

import polars as pl

from curate.progress import Reporter
from curate.scoring.chain import load_chain
from curate.scoring.runner import ScoreOptions, score
from curate.storage.fs import filesystem

OBJECTS = 6


def test_score_of_parquet_objects_makes_one_listing_no_heads_and_two_gets_per_object(s3, data_dir, tmp_path):
    captions = pl.read_parquet(data_dir / "c_redcaps_sample.parquet")
    for i in range(OBJECTS):
        buf = io.BytesIO()
        captions.slice(i * 500, 500).write_parquet(buf)
        s3.client.put_object(Bucket=s3.name, Key=f"in/part-{i}.parquet", Body=buf.getvalue())
    fs, _ = filesystem(s3.url())
    calls: collections.Counter = collections.Counter()

    def count(event_name, **kw):
        calls[event_name.rsplit(".", 1)[-1]] += 1

    fs.s3.meta.events.register("before-call.s3", count)
    result = score([s3.url("in") + "/"], tmp_path / "run", load_chain(None), ScoreOptions(workers=1), Reporter())
    assert result["rows"] == 3000
    assert calls["ListObjectsV2"] == 1, dict(calls)
    assert calls["HeadObject"] == 0, dict(calls)
    assert calls["GetObject"] <= 2 * OBJECTS, dict(calls)  # the footer once, then the column chunks
    got = pl.read_parquet(tmp_path / "run" / "scores" / "*.parquet")
    assert got["caption"].sort().equals(captions["caption"].cast(pl.String).sort())
