"""The file-system layer against a real S3 API server on loopback (moto's server mode)."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import CurateError
from curate.storage import exists, filesystem, is_url, join, open_file, redact


def test_urls_and_local_paths_are_told_apart(tmp_path):
    assert is_url("s3://bucket/x.parquet") and is_url("gs://b/k")
    assert not is_url(tmp_path / "x") and not is_url("file:///tmp/x") and not is_url("relative/x")
    assert join("s3://b/run/", "scores", "part.parquet") == "s3://b/run/scores/part.parquet"
    fs, p = filesystem(tmp_path / "x")
    assert fs.protocol[0] == "file" and p == str(tmp_path / "x")


def test_objects_written_and_read_through_the_layer(s3):
    url = s3.url("data/t.parquet")
    fs, p = filesystem(url)
    pq.write_table(pa.table({"caption": ["a red bus", "two dogs"]}), p, filesystem=fs)
    assert exists(url) and not exists(s3.url("data/none.parquet"))
    with open_file(url) as f:
        assert pq.read_table(f).column("caption").to_pylist() == ["a red bus", "two dogs"]


def test_a_missing_bucket_or_object_is_one_line_naming_it_without_secrets(s3):
    for url in ("s3://no-such-bucket-anywhere/x.parquet", s3.url("missing.parquet")):
        with pytest.raises(CurateError) as e:
            open_file(url).read()
        msg = str(e.value)
        assert "\n" not in msg and url in msg and "testing-secret-value" not in msg


def test_credentials_never_reach_a_message():
    text = ("s3://AKIAEXAMPLE:verysecret@bucket/k failed; aws_secret_access_key=verysecret "
            "X-Amz-Signature=abc123 token: tok")
    out = redact(text)
    assert "verysecret" not in out and "abc123" not in out and "tok" not in out.split("token")[-1]
    assert "bucket/k" in out


def test_duckdb_reads_a_store_by_the_ranges_it_asks_for(s3, data_dir):
    """The client DuckDB reads a store through keeps no read-ahead: 100 bytes read from a
    real Parquet object fetch 100 bytes, where s3fs's default fetches a block of up to
    50 MB per open file (memory that DuckDB's memory_limit does not count). DuckDB still
    reads the whole object through it."""
    import duckdb

    from curate.db import register_stores
    from curate.storage.fs import query_filesystem

    src = data_dir / "c_laion_web_alttext_sample.parquet"
    url = s3.url("runs/laion.parquet")
    fs, path = filesystem(url)
    fs.put_file(str(src), path)

    def fetched(client) -> int:
        sizes: list[int] = []
        with client.open(path, "rb") as f:
            fetch = f.cache.fetcher
            f.cache.fetcher = lambda a, b: sizes.append(b - a) or fetch(a, b)
            assert f.read(100)[:4] == b"PAR1"
        return sum(sizes)

    assert fetched(query_filesystem(url)) == 100
    assert fetched(fs) == src.stat().st_size  # the default client: the whole object at once
    con = duckdb.connect()
    register_stores(con, [url])
    assert con.execute(f"SELECT count(*) FROM read_parquet('{url}')").fetchone()[0] == pq.ParquetFile(src).metadata.num_rows
