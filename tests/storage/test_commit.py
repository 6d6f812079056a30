"""Commit without rename on a real S3 API server: one writer by a lock object, one switch
by a pointer written last, and what a killed writer leaves."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from curate.errors import CurateError
from curate.layout import pinned_store, store_pointer
from curate.storage.commit import store_write
from curate.storage.fs import filesystem
from curate.storage.lock import StoreLock, get_with_etag, put_if

REPO = Path(__file__).resolve().parents[2]


def write_folder(url: str, files: dict[str, bytes], tmp: Path, last: str) -> str:
    with store_write(url, "a test folder") as w:
        out = w.output_folder()
        out.mkdir()
        for name, data in files.items():
            (out / name).write_bytes(data)
        return w.commit_folder(out, last)


def test_the_pointer_switches_to_a_complete_version_and_old_versions_go(s3, tmp_path):
    url = s3.url("mix")
    fs, _ = filesystem(url)
    v1 = write_folder(url, {"a.txt": b"one", "index.json": b"{}"}, tmp_path, "index.json")
    assert pinned_store(url) == v1 and fs.cat(f"{v1}/a.txt") == b"one"
    v2 = write_folder(url, {"a.txt": b"two", "index.json": b"{}"}, tmp_path, "index.json")
    v3 = write_folder(url, {"a.txt": b"three", "index.json": b"{}"}, tmp_path, "index.json")
    assert pinned_store(url) == v3 and store_pointer(url)["previous"] == v2.rsplit("/", 1)[1]
    fs.invalidate_cache()
    left = {p.rsplit("/", 1)[1] for p in fs.ls(s3.url("mix/.v"), detail=False)}
    assert left == {v2.rsplit("/", 1)[1], v3.rsplit("/", 1)[1]}  # the replaced one stays for readers
    assert not fs.exists(s3.url("mix/.curate-lock"))  # released


def test_two_writers_one_wins_the_other_gets_one_line_naming_the_holder(s3):
    url = s3.url("run")
    with StoreLock(url + "/.curate-lock", url, "curate score a.parquet --out " + url):
        with pytest.raises(CurateError) as e:
            StoreLock(url + "/.curate-lock", url, "curate decide").acquire()
    msg = str(e.value)
    assert "\n" not in msg and "being written by another curate process" in msg
    assert f"pid {os.getpid()}" in msg and "curate score a.parquet" in msg and "lease until" in msg
    StoreLock(url + "/.curate-lock", url, "curate decide").acquire()  # free again after release


def test_an_expired_lease_is_taken_over_once_with_a_notice(s3, capsys):
    url = s3.url("run")
    key = url + "/.curate-lock"
    stale = {"pid": 999999, "host": "gone", "command": "curate mix r.toml", "since": "x", "expires": time.time() - 5}
    etag = put_if(key, json.dumps(stale).encode())
    lk = StoreLock(key, url, "curate mix again", lease_s=30)
    lk.acquire()
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "took over the expired lock" in err and "pid 999999 on gone" in err
    with pytest.raises(FileExistsError):  # a second takeover conditional on the same stale ETag fails
        put_if(key, b"{}", etag)
    body, _ = get_with_etag(key)
    assert json.loads(body)["token"] == lk.token
    lk.release()


def test_a_writer_whose_lease_was_taken_over_switches_nothing(s3, capsys):
    url = s3.url("run")
    first = StoreLock(url + "/.curate-lock", url, "curate score", lease_s=0.6)
    first.acquire()
    first._stop.set()  # paused past its lease: no renewal
    first._thread.join()
    time.sleep(0.8)
    second = StoreLock(url + "/.curate-lock", url, "curate decide", lease_s=30)
    second.acquire()
    assert first.renew() is False
    with pytest.raises(CurateError, match="took the lock over.*nothing was switched"):
        first.check()
    second.release()


KILLED_WRITER = """
import sys, time
from pathlib import Path
from curate.storage.commit import store_write
from curate.storage import fs as sfs
url = sys.argv[1]
with store_write(url, "a test folder") as w:
    out = w.local / "out"
    out.mkdir()
    for i in range(20):
        (out / f"part-{i:05d}.bin").write_bytes(b"new" * 1000)
    (out / "index.json").write_text("{}")
    real_put = None
    fs, _ = sfs.filesystem(url)
    orig = fs.put
    def slow_put(lpaths, rpaths, **kw):
        for lp, rp in zip(lpaths, rpaths):
            orig(lp, rp)
            print("uploaded", rp, flush=True)
            time.sleep(0.5)
    fs.put = slow_put
    w.commit_folder(out, "index.json")
"""


def test_kill_9_mid_upload_leaves_the_old_state_and_the_next_writer_cleans_up(s3, tmp_path, monkeypatch, capsys):
    url = s3.url("export")
    old = write_folder(url, {"part-00000.bin": b"old", "index.json": b"{}"}, tmp_path, "index.json")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, url], env=env, stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):
            line = proc.stdout.readline()
            assert line.startswith("uploaded"), line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    fs, _ = filesystem(url)
    fs.invalidate_cache()
    assert pinned_store(url) == old and fs.cat(f"{old}/part-00000.bin") == b"old"
    versions = fs.ls(s3.url("export/.v"), detail=False)
    assert len(versions) == 2  # the old one and the half-uploaded one, which no pointer names
    new = write_folder(url, {"part-00000.bin": b"newer", "index.json": b"{}"}, tmp_path, "index.json")
    notice = capsys.readouterr().err  # the holder ran here and is gone: no wait for its lease
    assert f"took over the lock of {url}" in notice and "that process is gone" in notice
    fs.invalidate_cache()
    assert pinned_store(url) == new
    assert sorted(fs.ls(s3.url("export/.v"), detail=False)) == sorted([old[len("s3://"):], new[len("s3://"):]])
