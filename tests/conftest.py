"""Shared test fixtures. Tests live in one folder per stage (ingest, clean, scoring, dedup,
mix, export, audit, report, engines) and ``project`` (CLI, docs, install, layout rules,
writers); ``helpers.py`` and ``nearcopy.py`` here are importable from every folder.

Accuracy tests read real third-party captions from ``../shared/data`` (beside the repo).
They skip with a message when it is absent, except under CI (``CI`` set), where a missing
folder is an error.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))  # helpers.py, nearcopy.py

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", autouse=True)
def curate_cache(request, tmp_path_factory):
    """CURATE_CACHE for the whole session: a folder in .pytest_cache (kept between sessions,
    so the static model is distilled once), or a temporary one; never ~/.cache."""
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir("curate-cache") if cache is not None else tmp_path_factory.mktemp("curate-cache")
    old = os.environ.get("CURATE_CACHE")
    os.environ["CURATE_CACHE"] = str(folder)
    yield Path(folder)
    if old is None:
        os.environ.pop("CURATE_CACHE", None)
    else:
        os.environ["CURATE_CACHE"] = old


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"shared data folder {DATA} is missing (required under CI)")
        pytest.skip(f"shared data folder {DATA} not found; accuracy tests need it")
    return DATA


@pytest.fixture(scope="session")
def read_data(data_dir):
    """read_data('a_coco') -> DataFrame of every file whose name starts with that prefix."""

    def read(prefix: str, columns: list[str] | None = None) -> pl.DataFrame:
        files = sorted(data_dir.glob(f"{prefix}*.parquet"))
        assert files, f"no data files start with {prefix!r} in {data_dir}"
        return pl.concat([pl.read_parquet(f, columns=columns) for f in files], how="diagonal_relaxed")

    return read


@pytest.fixture
def interrupt_scoring(monkeypatch):
    """``interrupt_scoring(n)``: the n-th part a local run scores raises KeyboardInterrupt
    (as Ctrl-C would); returns a function that restores normal scoring."""
    import curate.scoring.workers as workers

    real = workers.score_and_write

    def install(n: int):
        calls = []

        def interrupted(frame, chain, part):
            calls.append(part)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(frame, chain, part)

        monkeypatch.setattr(workers, "score_and_write", interrupted)
        return lambda: monkeypatch.setattr(workers, "score_and_write", real)

    return install


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory) -> Path:
    """One `curate demo` per pytest run, made through the command line as a user makes it
    (score, dedup, mix, export, report), shared by every test that reads a demo's folder.
    Tests only read it (or write beside it)."""
    from click.testing import CliRunner

    from curate.cli import cli

    out = tmp_path_factory.mktemp("demo-run") / "demo"
    res = CliRunner().invoke(cli, ["demo", "--out", str(out), "--rows", "600"])
    assert res.exit_code == 0, res.output
    return out


LAST_RAY_TEST = pytest.StashKey[str]()


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray with 2 CPUs, started once for every test that asks for it (a start costs
    seconds) and stopped after the last of them (:func:`pytest_runtest_teardown`)."""
    from helpers import local_ray

    yield from local_ray(2)


def pytest_collection_finish(session):
    uses = [item.nodeid for item in session.items if "ray_local" in getattr(item, "fixturenames", ())]
    session.config.stash[LAST_RAY_TEST] = uses[-1] if uses else ""


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After the last test that uses Ray, Ray stops rather than idle through the rest."""
    yield
    if item.nodeid == item.config.stash.get(LAST_RAY_TEST, "") and "ray" in sys.modules:
        ray = sys.modules["ray"]
        if ray.is_initialized():
            ray.shutdown()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API server (moto's server mode) on loopback for the whole session; its
    URL. Nothing mocks the client: boto3, s3fs, DuckDB and polars talk HTTP to it."""
    import logging

    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch, request):
    """A fresh bucket on the session's S3 server, with the AWS environment pointing at it
    (inherited by CLI subprocesses); ``s3.url("key")`` -> ``s3://bucket/key``."""
    import re
    import uuid

    from helpers import point_aws_at

    point_aws_at(monkeypatch, s3_endpoint)
    import boto3

    name = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    bucket = f"{name}-{uuid.uuid4().hex[:8]}"
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.create_bucket(Bucket=bucket)

    class Bucket:
        def __init__(self):
            self.name, self.endpoint, self.client = bucket, s3_endpoint, client

        def url(self, key: str = "") -> str:
            return f"s3://{bucket}/{key}".rstrip("/")

    from curate.storage.fs import clear_clients

    clear_clients()  # a new environment: a new client
    yield Bucket()
    clear_clients()
