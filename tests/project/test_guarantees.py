"""What readers and writers may rely on (docs/guarantees.md): a reader that pins the
current version reads it whole while real writers switch the run; whole-folder writers
refuse the folder that holds the shell; a retrain needs --overwrite and loses no file; two
reports to one file never mix; a mix that races a decide does not blame the recipe."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import polars as pl
import pytest

from helpers import invoke, ok, fails_in_one_line
from curate.layout import pinned, pinned_groups, pinned_run, scores_glob

LIGHT = '[[filter]]\nname = "length"\nmin = {min}\n\n[[filter]]\nname = "junk"\n'
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "POLARS_MAX_THREADS": "1"}


@pytest.fixture(scope="module")
def many_parts(tmp_path_factory, read_data):
    """A run of 12,000 real web and human captions in 100 parts of 120 rows, and two chains
    that keep different rows."""
    d = tmp_path_factory.mktemp("guarantees")
    caps = pl.concat([read_data("c_", ["caption"]), read_data("a_", ["caption"])]).head(12_000)
    (d / "in").mkdir()
    for i in range(100):  # one part per input file
        caps.slice(i * 120, 120).write_parquet(d / "in" / f"caps-{i:03d}.parquet")
    chains = []
    for i, lo in enumerate((3, 9)):
        (d / f"chain{i}.toml").write_text(LIGHT.format(min=lo))
        chains.append(d / f"chain{i}.toml")
    ok("score", d / "in", "--out", d / "run", "--chain", chains[0], "-j", "1")
    assert len(list((d / "run" / "scores").glob("part-*.parquet"))) == 100
    return d, chains


SWITCHER = """
import sys, time
from curate.scoring.chain import load_chain
from curate.scoring.decide import decide_run
run, a, b, switches = sys.argv[1], load_chain(sys.argv[2]), load_chain(sys.argv[3]), int(sys.argv[4])
n = 0
while n < switches:
    decide_run(run, (a, b)[n % 2])
    n += 1
    print(n, flush=True)
"""


def test_a_pinned_reader_sees_one_whole_version_while_decide_switches(many_parts):
    d, chains = many_parts
    run = d / "run"
    proc = subprocess.Popen([sys.executable, "-c", SWITCHER, str(run), str(chains[0]), str(chains[1]), "3"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reads, kept_seen = 0, set()
    try:
        deadline = time.time() + 120
        while proc.poll() is None and time.time() < deadline:
            version = pinned_run(run)  # one resolution: scores, run.json and chain.toml belong together
            df = pl.read_parquet(scores_glob(version), columns=["keep"])
            info = json.loads((version / "run.json").read_text())
            assert df.height == info["rows"] == 12_000
            assert int(df["keep"].sum()) == info["kept"]
            kept_seen.add(info["kept"])
            reads += 1
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split()[-1] == "3" and reads >= 5
    assert len(kept_seen) == 2  # the reader saw both chains' versions, each whole


def test_the_replaced_version_stays_until_the_switch_after_next(many_parts):
    d, chains = many_parts
    run = d / "run"
    ok("decide", run, "--chain", chains[0])
    first = pinned_run(run)
    ok("decide", run, "--chain", chains[1])
    assert first.is_dir() and pinned_run(run) != first  # a reader inside the old one can finish
    ok("decide", run, "--chain", chains[0])
    assert not first.exists()  # gone at the switch after that
    versions = [p for p in (run / ".v").iterdir() if p.is_dir()]
    assert len(versions) == 2


def test_pinned_groups_read_whole_while_dedup_switches(many_parts, tmp_path):
    d, _ = many_parts
    run = d / "run"
    ok("dedup", run)
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "dedup", str(run)], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reads = 0
    try:
        while proc.poll() is None:
            g = pl.read_parquet(pinned_groups(run))
            assert g.height == 12_000 and g["sample_id"].n_unique() == 12_000
            reads += 1
    finally:
        proc.communicate(timeout=120)
    assert proc.returncode == 0 and reads > 0
    assert pinned(run / "dedup" / "groups.parquet").is_file()


def test_out_may_not_be_the_current_folder(many_parts, labels, tmp_path, monkeypatch):
    d, chains = many_parts
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'size = 50\n[[source]]\nname = "web"\nrun = "{d / "run"}"\n')
    ok("mix", recipe, "--out", tmp_path / "mix")
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    monkeypatch.chdir(work / "sub")
    (tmp_path / "in.jsonl").write_text('{"caption": "a red barn in a snowy field at dusk"}\n')
    for args in (("score", tmp_path / "in.jsonl", "--out", "."),
                 ("score", tmp_path / "in.jsonl", "--out", work),
                 ("export", tmp_path / "mix", "--format", "parquet", "--out", "."),
                 ("export", tmp_path / "mix", "--format", "parquet", "--out", work),
                 ("mix", recipe, "--out", "."),
                 ("train", labels, "--label", "good", "--positive", "yes", "--out", ".")):
        msg = fails_in_one_line(*args)
        assert "current folder" in msg, msg
    assert sorted(os.listdir(work)) == ["sub"] and os.listdir(work / "sub") == []  # no staging copy left


def test_mix_into_an_empty_folder_is_not_blocked_by_its_own_lock(many_parts, tmp_path):
    d, _ = many_parts
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'size = 50\n[[source]]\nname = "web"\nrun = "{d / "run"}"\n')
    (tmp_path / "m").mkdir()
    ok("mix", recipe, "--out", tmp_path / "m")
    ok("mix", recipe, "--out", tmp_path / "m", "--overwrite")


@pytest.fixture(scope="module")
def labels(many_parts, read_data):
    """Human (good) against web (bad) captions, real ones."""
    d, _ = many_parts
    good = read_data("a_coco", ["caption"]).head(150).with_columns(good=pl.lit("yes"))
    bad = read_data("c_laion", ["caption"]).head(150).with_columns(good=pl.lit("no"))
    pl.concat([good, bad]).write_csv(d / "labels.csv")
    return d / "labels.csv"


def test_train_into_a_model_folder_needs_overwrite_and_keeps_other_files(labels, tmp_path):
    out = tmp_path / "model"
    ok("train", labels, "--label", "good", "--positive", "yes", "--out", out)
    sha = json.loads((out / "metrics.json").read_text())["model_sha256"]
    msg = fails_in_one_line("train", labels, "--label", "good", "--positive", "yes", "--out", out)
    assert "--overwrite" in msg
    (out / "notes.txt").write_text("mine")
    msg = fails_in_one_line("train", labels, "--label", "good", "--positive", "yes", "--out", out, "--overwrite")
    assert "notes.txt" in msg
    assert (out / "notes.txt").read_text() == "mine"
    (out / "notes.txt").unlink()
    ok("train", labels, "--label", "good", "--positive", "yes", "--out", out, "--overwrite")
    assert json.loads((out / "metrics.json").read_text())["model_sha256"] == sha  # same labels, same model


REPORT = """
import sys
from curate.report.html import build_report
try:
    build_report(sys.argv[1], sys.argv[2])
    print("ok")
except Exception as e:
    print("error:", e)
"""


def test_two_reports_to_one_file_one_wins_and_html_matches_json(many_parts, tmp_path):
    d, _ = many_parts
    out = tmp_path / "r" / "report.html"
    procs = [subprocess.Popen([sys.executable, "-c", REPORT, str(d / "run"), str(out)], env=ENV,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert sorted(r.split(":")[0] for r in results) == ["error", "ok"], results
    err = next(r for r in results if r.startswith("error"))
    assert "being written by another curate process" in err and "\n" not in err
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["report_id"] in out.read_text()  # both files from one report
    ok("report", d / "run", "--out", out)  # a later report replaces both together
    data2 = json.loads(out.with_suffix(".json").read_text())
    assert data2["report_id"] in out.read_text() and data2["report_id"] != data["report_id"]
    assert sorted(p.name for p in out.parent.iterdir() if not p.name.startswith(".")) == ["report.html", "report.json"]


def test_a_mix_racing_a_decide_reads_one_version_or_says_the_run_changed(many_parts, tmp_path):
    d, chains = many_parts
    run = d / "run"
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'size = 2000\n[[source]]\nname = "web"\nrun = "{run}"\n')
    proc = subprocess.Popen([sys.executable, "-c", SWITCHER, str(run), str(chains[0]), str(chains[1]), "3"],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outcomes = []
    try:
        while proc.poll() is None:
            res = invoke("mix", recipe, "--out", tmp_path / "m", "--overwrite")
            outcomes.append(res.output.strip() if res.exit_code else "ok")
    finally:
        proc.communicate(timeout=60)
    assert "ok" in outcomes
    for o in outcomes:
        assert o == "ok" or ("changed while" in o and "\n" not in o and "recipe" not in o.split("changed")[0]), o
