"""Bad inputs on a store, against a real S3 API server on loopback: a missing bucket, object
or prefix, denied credentials, an endpoint that drops every connection (retried with backoff,
then one line), an object replaced between listing and reading or while it is read. Each is
one line naming the object, no traceback, and never the secret key."""
from __future__ import annotations

import socket
import threading
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import invoke, one_line_error

from curate.errors import CurateError
from curate.ingest.inputs import resolve_inputs
from curate.ingest.readers import read_batches
from curate.storage.fs import clear_clients
from curate.storage.listing import open_object

SECRET = "testing-secret-value"  # what the s3 fixture puts in AWS_SECRET_ACCESS_KEY


def put_parquet(s3, key: str, captions: list[str]) -> str:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"caption": captions}), sink)
    s3.client.put_object(Bucket=s3.name, Key=key, Body=sink.getvalue().to_pybytes())
    return s3.url(key)


def fails(tmp_path, *inputs) -> str:
    res = invoke("score", *inputs, "--out", tmp_path / "run")
    line = one_line_error(res)
    assert SECRET not in res.output and "Traceback" not in res.output
    return line


def test_missing_bucket_object_and_prefix_are_one_line_naming_them(s3, tmp_path):
    put_parquet(s3, "in/a.parquet", ["a red bus"])
    assert "no-such-bucket-for-curate" in fails(tmp_path, "s3://no-such-bucket-for-curate/x.parquet")
    assert "no-such-bucket-for-curate" in fails(tmp_path, "s3://no-such-bucket-for-curate/")
    assert s3.url("in/b.parquet") in fails(tmp_path, s3.url("in/b.parquet"))
    assert s3.url("none") in fails(tmp_path, s3.url("none") + "/")
    assert "no objects match" in fails(tmp_path, s3.url("in/*.jsonl"))
    assert "credentials in it" in fails(tmp_path, f"s3://AKIAXX:{SECRET}@{s3.name}/in/a.parquet")


def test_denied_credentials_are_one_line(s3, tmp_path):
    from moto.core.authorization import enable_iam_authentication

    url = put_parquet(s3, "in/a.parquet", ["a red bus", "two dogs on a beach"])
    with enable_iam_authentication():  # the server now checks keys: ours is no IAM user's
        line = fails(tmp_path, url)
    assert url in line and ("denied" in line or "InvalidAccessKeyId" in line)


@pytest.fixture
def dropping_endpoint(monkeypatch):
    """An endpoint that accepts every connection and closes it at once; its connections
    counted."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            accepted.append(time.monotonic())
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{srv.getsockname()[1]}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    clear_clients()
    yield accepted
    srv.close()
    clear_clients()


def test_a_dropped_connection_is_retried_with_backoff_then_one_line(s3, dropping_endpoint, tmp_path):
    url = s3.url("in/a.parquet")
    line = fails(tmp_path, url)
    assert url in line
    assert len(dropping_endpoint) >= 3  # tried again, not given up at the first drop
    gaps = [b - a for a, b in zip(dropping_endpoint, dropping_endpoint[1:])]
    assert max(gaps) > 0.05  # waited between tries


def test_an_object_replaced_after_listing_is_refused(s3):
    url = put_parquet(s3, "in/a.parquet", ["a red bus", "two dogs on a beach"])
    (inp,) = resolve_inputs([url])
    put_parquet(s3, "in/a.parquet", ["something else entirely"])
    with pytest.raises(CurateError) as e:
        list(read_batches(inp, "caption", None, [], 1000))
    msg = str(e.value)
    assert "\n" not in msg and url in msg and "changed since it was listed" in msg and SECRET not in msg


def test_an_object_replaced_while_it_is_read_is_one_line(s3):
    s3.client.put_object(Bucket=s3.name, Key="big.jsonl", Body=b'{"caption": "a dog"}\n' * 50_000)
    url = s3.url("big.jsonl")
    f = open_object(url, block_size=64 << 10)
    assert f.read(1000).startswith(b'{"caption"')
    s3.client.put_object(Bucket=s3.name, Key="big.jsonl", Body=b'{"caption": "a cat"}\n' * 50_000)
    with pytest.raises(CurateError) as e:
        f.seek(500_000)
        f.read(1000)
    msg = str(e.value)
    assert "\n" not in msg and url in msg and "changed while it was read" in msg


class CuttingProxy:
    """A TCP proxy to the S3 server that cuts the first response to a GET of ``key`` after
    ``keep`` bytes (headers and part of the body), as a connection dropped mid-read."""

    def __init__(self, upstream: str, key: str, keep: int = 2000):
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream, self.key, self.keep, self.cuts = (host, int(port)), key.encode(), keep, 0
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(64)
        self.url = f"http://127.0.0.1:{self.srv.getsockname()[1]}"
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            cut = threading.Event()
            threading.Thread(target=self.pipe, args=(client, server, cut, True), daemon=True).start()
            threading.Thread(target=self.pipe, args=(server, client, cut, False), daemon=True).start()

    def pipe(self, src, dst, cut, requests):
        sent = 0
        try:
            while data := src.recv(65536):
                if requests and not self.cuts and b"GET /" in data and self.key in data.split(b"\r\n", 1)[0]:
                    self.cuts += 1
                    cut.set()
                if not requests and cut.is_set():
                    if sent + len(data) >= self.keep:
                        dst.sendall(data[: self.keep - sent])
                        break
                    sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_a_connection_dropped_mid_read_is_read_again(s3, monkeypatch, read_data):
    import gzip

    coco = read_data("a_coco", ["caption"])
    s3.client.put_object(Bucket=s3.name, Key="coco.jsonl.gz", Body=gzip.compress(coco.write_ndjson().encode()))
    proxy = CuttingProxy(s3.endpoint, "coco.jsonl.gz")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    clear_clients()
    (inp,) = resolve_inputs([s3.url("coco.jsonl.gz")])
    got = [c for b in read_batches(inp, "caption", None, [], 1000) for c in b["caption"]]
    assert proxy.cuts == 1  # the first read was cut, the next one read it whole
    assert got == coco["caption"].to_list()
    proxy.srv.close()
