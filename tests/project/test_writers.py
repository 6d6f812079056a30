"""One writer per folder, and one switch (DESIGN conventions 10 and 14): real `curate`
processes killed at many moments leave the old state or the new one, never a mix; a second
writer gets a one-line error naming the holder; a dead holder does not block; temporary
files never match the documented globs."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from helpers import invoke, ok


from curate.cli import cli
from curate.layout import lock_folder, lock_output
from curate.scoring.chain import load_chain
from curate.scoring.decision import decide

LIGHT = '[[filter]]\nname = "length"\nmin = {min}\n\n[[filter]]\nname = "junk"\n'
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "POLARS_MAX_THREADS": "1"}


def curate_proc(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "curate.cli", *map(str, args)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def web_run(tmp_path_factory, read_data):
    """A run of about 18,000 real web and human captions in 1,000-row parts, and two chains to
    switch between."""
    d = tmp_path_factory.mktemp("writers")
    caps = pl.concat([read_data("c_", ["caption"]), read_data("a_", ["caption"])])
    assert caps.height > 15_000
    caps.write_parquet(d / "caps.parquet")
    chains = []
    for i, lo in enumerate((3, 9)):
        (d / f"chain{i}.toml").write_text(LIGHT.format(min=lo))
        chains.append(d / f"chain{i}.toml")
    ok("score", d / "caps.parquet", "--out", d / "run", "--batch-rows", "1000", "--chain", chains[0], "-j", "1")
    return d, chains


def consistent(run: Path) -> dict:
    """The run agrees with itself: its parts hold exactly the decisions that run.json and
    chain.toml describe. Returns run.json."""
    info = json.loads((run / "run.json").read_text())
    parts = pl.read_parquet(run / "scores" / "*.parquet")  # the README's glob reads cleanly
    assert parts.height == info["rows"]
    assert int(parts["keep"].sum()) == info["kept"]
    chain = load_chain(str(run / "chain.toml"))
    assert chain.digest() == info["decisions"][-1]["digest"]
    again = decide(parts.drop("keep", "reason"), chain)
    assert again["keep"].equals(parts["keep"]) and again["reason"].equals(parts["reason"])
    assert all(p.name.startswith("part-") for p in (run / "scores").iterdir())
    return info


@pytest.mark.slow
def test_decide_killed_at_any_moment_leaves_the_old_run_or_the_new(web_run):
    d, chains = web_run
    run = d / "run"
    t0 = time.perf_counter()
    ok("decide", run, "--chain", chains[1])
    full = time.perf_counter() - t0 + 1.5  # a subprocess also starts Python and imports
    ok("decide", run, "--chain", chains[0])
    for i in range(12):
        before = consistent(run)
        target = chains[(i + 1) % 2]
        proc = curate_proc("decide", run, "--chain", target)
        time.sleep(full * (i + 1) / 12)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        after = consistent(run)
        assert after["kept"] in (before["kept"], *(d["kept"] for d in after["decisions"][-1:]))
    # whatever the moment, a later decide completes
    ok("decide", run, "--chain", chains[0])
    consistent(run)
    # the current version and the one it replaced (readers may be inside it) are left
    assert len([p for p in (run / ".v").iterdir() if p.is_dir()]) == 2


def test_score_killed_leaves_nothing_that_looks_finished_and_resumes(web_run, tmp_path):
    d, chains = web_run
    out = tmp_path / "run"
    proc = curate_proc("score", d / "caps.parquet", "--out", out, "--batch-rows", "1000", "--chain", chains[0], "-j", "1")
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob(".v/*/scores/part-00000-0000[3-9].parquet")):
        # readers of the documented glob see no run, never a half-written file
        assert not list(out.glob("scores/*"))
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "run.json").exists() and not list(out.glob("scores/*"))
    ok("score", d / "caps.parquet", "--out", out, "--batch-rows", "1000", "--chain", chains[0], "-j", "1")
    info = consistent(out)
    assert info["rows"] == pl.scan_parquet(d / "caps.parquet").select(pl.len()).collect().item()


def hold(kind: str, folder: Path) -> subprocess.Popen:
    """A process that holds a lock until killed; returns once it holds it."""
    code = (f"import sys, time\nfrom curate.layout import {kind}\n"
            f"with {kind}({str(folder)!r}):\n    print('held', flush=True)\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, "mix", "other.toml"], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_gets_one_line_naming_the_holder(web_run):
    d, chains = web_run
    run = d / "run"
    holder = hold("lock_folder", run)
    try:
        for args in (("decide", run, "--chain", chains[1]), ("dedup", run),
                     ("score", d / "caps.parquet", "--out", run, "--chain", chains[0])):
            res = invoke(*args)
            assert res.exit_code == 1, res.output
            [line] = res.output.strip().splitlines()
            assert line.startswith("Error: ") and "being written by another curate process" in line
            assert f"pid {holder.pid}" in line and "mix other.toml" in line
    finally:
        holder.kill()
        holder.wait()
    # the holder died without letting go: its lock is gone with it
    ok("decide", run, "--chain", chains[0])


def test_two_mixes_into_one_folder_never_both_succeed(web_run, tmp_path):
    d, _ = web_run
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'size = 500\n[[source]]\nname = "web"\nrun = "{d / "run"}"\nshare = 1.0\n')
    out = tmp_path / "mix"
    holder = hold("lock_output", out)
    try:
        res = invoke("mix", recipe, "--out", out)
        assert res.exit_code == 1 and f"pid {holder.pid}" in res.output
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    procs = [curate_proc("mix", recipe, "--out", out) for _ in range(2)]
    codes = [p.wait() for p in procs]
    errs = [p.stderr.read() for p in procs]
    assert sorted(codes) == [0, 1], errs
    loser = errs[codes.index(1)].strip()
    assert ("being written by another curate process" in loser or "already holds a mixture" in loser), loser
    assert (out / "manifest.json").is_file()


def test_mix_killed_leaves_the_old_mixture(web_run, tmp_path):
    d, _ = web_run
    out = tmp_path / "mix"
    recipe = tmp_path / "r.toml"
    for size in (500, 800):
        recipe.write_text(f'size = {size}\n[[source]]\nname = "web"\nrun = "{d / "run"}"\nshare = 1.0\n')
        if size == 500:
            ok("mix", recipe, "--out", out)
    for delay in (0.5, 1.0, 1.5, 2.0, 3.0):
        proc = curate_proc("mix", recipe, "--out", out, "--overwrite")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        m = json.loads((out / "manifest.json").read_text())
        assert m["counts"]["rows"] in (500, 800)
        assert pl.read_parquet(out / "manifest.parquet").height == m["counts"]["rows"]
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_locks_are_exclusive_in_one_process_too(tmp_path):
    with lock_folder(tmp_path):
        with pytest.raises(Exception) as e:
            with lock_folder(tmp_path):
                pass
        assert "being written by another curate process" in str(e.value)
    with lock_output(tmp_path / "m"):
        pass


def test_a_mix_leaves_no_lock_file_beside_its_folder_whether_it_fails_or_not(web_run, tmp_path):
    d, _ = web_run
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text(f'size = 300\n[[source]]\nname = "web"\nrun = "{d / "run"}"\nshare = 1.0\n')
    bad.write_text(good.read_text() + 'eligible = "no_such_column > 1"\n')
    out = tmp_path / "mixes"
    out.mkdir()
    ok("mix", good, "--out", out / "ok")
    res = invoke("mix", bad, "--out", out / "failed")
    assert res.exit_code == 1 and "no_such_column" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["ok"]
    holder = hold("lock_output", out / "ok")  # killed while holding: its file stays, and blocks nobody
    holder.kill()
    holder.wait()
    ok("mix", good, "--out", out / "ok", "--overwrite")
    assert sorted(p.name for p in out.iterdir()) == ["ok"]
