"""`curate score`'s worker processes and the work done beside them: the workers start (and
load the chain's models) while the inputs are inspected and fingerprinted; a failure there
stops the hashing, stops the workers and leaves no run."""
from __future__ import annotations

import multiprocessing
import shutil

import polars as pl
import pytest
from helpers import fails_in_one_line, ok

from curate import hashing
from curate.scoring import runner


@pytest.fixture(scope="module")
def web(data_dir, tmp_path_factory):
    """Real web alt-texts (CC3M validation) as one Parquet input."""
    out = tmp_path_factory.mktemp("pool") / "web.parquet"
    pl.read_parquet(data_dir / "c_cc3m_validation.parquet").select("caption").head(4000).write_parquet(out)
    return out


def test_the_workers_start_before_the_inputs_are_inspected(web, tmp_path, monkeypatch):
    alive = []
    real = runner.inspect_input

    def inspect(f, names=()):
        alive.append(len(multiprocessing.active_children()))
        return real(f, names)

    monkeypatch.setattr(runner, "inspect_input", inspect)
    ok("score", web, "--out", tmp_path / "run", "--workers", "2")
    assert alive and alive[0] >= 2  # both workers run while the first input is inspected
    assert not multiprocessing.active_children()  # and are gone when the run is written
    one = tmp_path / "one"
    ok("score", web, "--out", one, "--workers", "1")
    assert pl.read_parquet(one / "scores" / "*.parquet").equals(pl.read_parquet(tmp_path / "run" / "scores" / "*.parquet"))


def test_a_failed_inspection_stops_the_fingerprints_and_the_workers(web, tmp_path, monkeypatch):
    """The inputs are hashed while their headers are read: the header that cannot be read
    is the one error, the hashing stops at once, and no run folder is left."""
    told = []

    def hashing_until_told(path, kind=hashing.FINGERPRINT, stop=None):
        told.append(stop.wait(60))  # a large file: hashed until the run says stop
        raise hashing.Stopped(path)

    monkeypatch.setattr(hashing, "input_fingerprint", hashing_until_told)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(web, folder / "a.parquet")
    (folder / "b.parquet").write_bytes(b"PAR1 not a parquet file")
    msg = fails_in_one_line("score", folder, "--out", tmp_path / "run", "--workers", "2")
    assert "b.parquet" in msg and "not a readable Parquet file" in msg
    assert told and all(told)
    assert not (tmp_path / "run").exists()
    assert not multiprocessing.active_children()


def test_a_failed_fingerprint_is_one_line_and_leaves_no_run(web, tmp_path, monkeypatch):
    def unreadable(path, kind=hashing.FINGERPRINT, stop=None):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(hashing, "input_fingerprint", unreadable)
    msg = fails_in_one_line("score", web, "--out", tmp_path / "run", "--workers", "2")
    assert msg == f"Error: permission denied: {web}\n"
    assert not (tmp_path / "run").exists()
    assert not multiprocessing.active_children()


def test_hashing_told_to_stop_reads_no_further(tmp_path):
    import threading

    f = tmp_path / "big.bin"
    with open(f, "wb") as out:
        out.truncate(64 << 20)
    stop = threading.Event()
    assert hashing.input_fingerprints([str(f)], stop) == [hashing.input_fingerprint(f)]
    stop.set()
    with pytest.raises(hashing.Stopped):
        hashing.input_fingerprints([str(f)], stop)
