"""`kill -9` of `curate score` and `curate decide` writing a run on a real S3 API server, at
two moments: while the command works locally (scoring, deciding) and while it uploads the
new version. The run is the old state or the new one, whole, never a mix; the next
command is not blocked by the killed one."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from helpers import ok

from curate.layout import SCORES, STORE_BASE, load_run, pinned_scores_glob, store_pointer
from curate.storage.commit import working_folder
from curate.storage.fs import filesystem

REPO = Path(__file__).resolve().parents[2]
FILES = ["a_flickr8k_captions.parquet", "a_coco_captions_val2017.parquet", "c_cc3m_validation.parquet",
         "c_redcaps_sample.parquet"]


def inputs(data_dir) -> list[str]:
    return [str(data_dir / f) for f in FILES]


def state(url: str) -> tuple[str, str]:
    """(version, chain) of the run on the store, after checking it is whole: its parts hold
    the rows run.json counts, and its last decision's kept rows."""
    info = load_run(url)
    scores = pl.read_parquet(pinned_scores_glob(url))
    assert scores.height == info["rows"]
    decisions = info.get("decisions") or []
    if decisions:
        assert int(scores["keep"].sum()) == decisions[-1]["kept"]
    chain = (decisions[-1]["chain"] if decisions else info["chain"]["name"])
    return store_pointer(url)["version"], chain


def new_objects(url: str, old: str) -> int:
    fs, root = filesystem(url + "/.v")
    fs.invalidate_cache()
    try:
        return sum(1 for p in fs.find(root) if f"/.v/{old}/" not in p)
    except FileNotFoundError:
        return 0


def kill_when(args: list[str], ready, timeout: float = 240) -> bool:
    """Run ``curate ARGS`` in a process group and SIGKILL the group once ``ready()``; False
    when the command ended first."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    try:
        while proc.poll() is None and time.time() < deadline:
            if ready():
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.02)
        return False
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def working_parts(url: str) -> int:
    """Score parts in the command's local working folder (it works on the new state)."""
    local = working_folder(url)
    return len(list((local / SCORES).glob("*.parquet"))) if (local / STORE_BASE).is_file() else 0


@pytest.mark.parametrize("moment", ["working", "uploading"])
@pytest.mark.parametrize("command", ["score", "decide"])
def test_kill_9_of_score_or_decide_on_s3_leaves_the_old_run_or_the_new_one_whole(s3, data_dir, command, moment):
    url = s3.url(f"runs/{command}-{moment}")
    ok("score", *inputs(data_dir), "--batch-rows", "1000", "--out", url)
    old = state(url)
    assert old[1] == "default"
    if command == "score":
        args = ["score", *inputs(data_dir), "--batch-rows", "1000", "--chain", "english-strict", "--overwrite",
                "--out", url]
    else:
        args = ["decide", url, "--chain", "english-strict"]
    if moment == "working":
        ready = (lambda: working_parts(url) >= 2) if command == "score" else (lambda: working_parts(url) >= 1)
    else:
        ready = lambda: new_objects(url, old[0]) >= 3  # noqa: E731 - some of the new version uploaded
    assert kill_when(args, ready), "the command ended before the moment of the kill"
    now = state(url)  # whole, whichever it is
    assert now == old or (now[0] != old[0] and now[1] == "english-strict")
    if moment == "working":
        assert now == old  # nothing was uploaded yet
    ok(*args)  # the next writer takes the dead writer's lock over at once (same host, process gone)
    done = state(url)
    assert done[1] == "english-strict" and done[0] != old[0]
    fs, _ = filesystem(url)
    fs.invalidate_cache()
    versions = {p.rsplit("/", 1)[1] for p in fs.ls(url + "/.v", detail=False)}
    assert done[0] in versions and len(versions) <= 2  # the killed writer's half version is gone
