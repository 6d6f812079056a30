"""The command line: every command documented (help with an example, listed in the README),
thin commands that print a closing table, and errors as one line from the real entry point."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from helpers import invoke


from curate.cli import cli

REPO = Path(__file__).resolve().parents[2]
COMMANDS = sorted(cli.commands)
CURATE = Path(sys.executable).parent / "curate"


def test_the_foundation_commands_exist():
    assert {"score", "decide", "demo"} <= set(COMMANDS)


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_has_an_example(command):
    res = invoke(*([command] if command else []), "--help")
    assert res.exit_code == 0, res.output
    assert "Example" in res.output
    assert "curate " in res.output.split("Example", 1)[1]  # the example is a command line


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme(command):
    readme = (REPO / "README.md").read_text()
    assert f"curate {command}" in readme, f"README.md does not mention `curate {command}`"


def test_version():
    import curate

    res = invoke("--version")
    assert res.exit_code == 0 and curate.__version__ in res.output


def test_score_and_decide_print_a_closing_table(tmp_path):
    inp = tmp_path / "in.parquet"
    caps = ["A brown dog runs across a green field with a red ball in its mouth.", "IMG_4821.jpg", ""]
    pl.DataFrame({"caption": caps}).write_parquet(inp)
    res = invoke("score", inp, "--out", tmp_path / "run")
    assert res.exit_code == 0, res.output
    for text in ("rows in", "kept", "dropped: empty", "dropped: junk", "run.json"):  # IMG_4821.jpg: junk
        assert text in res.output, text
    res = invoke("decide", tmp_path / "run", "--chain", "english-strict")
    assert res.exit_code == 0, res.output
    assert "english-strict" in res.output and "rows in" in res.output and "decided 3 rows" in res.output


@pytest.mark.slow
def test_demo_is_deterministic_and_runs_the_default_chain(demo_run, tmp_path):
    from curate.demo import make_sample

    a, b = make_sample(300), make_sample(300)
    assert a.equals(b)
    assert set(a["kind"]) >= {"descriptive", "generic", "junk", "near_duplicate", "model_artefact", "foreign_language"}
    demo = demo_run  # `curate demo --out DIR --rows 600`, once per pytest run
    runs = [json.loads(p.read_text()) for p in sorted((demo / "runs").glob("*/run.json"))]
    assert len(runs) == 3 and all(r["chain"]["name"] == "default" for r in runs)
    df = pl.read_parquet(demo / "runs" / "*" / "scores" / "*.parquet")
    assert df.filter(pl.col("kind") != "long_description").height == 600  # the fixture's --rows
    share = dict(df.group_by("kind").agg(pl.col("keep").mean()).iter_rows())
    assert share["descriptive"] >= 0.95
    assert share["junk"] <= 0.3 and share["generic"] <= 0.2
    # refusals and loops are dropped; a description behind a model preamble is cleaned and kept
    art = df.filter(pl.col("kind") == "model_artefact")
    opener = art["caption"].str.starts_with("Sure!")
    assert art.filter(opener)["keep"].all() and set(art.filter(opener)["caption_clean"]) == {"A dog on a couch."}
    assert not art.filter(~opener)["keep"].any()
    # the whole path: dedup, mix, export, report
    assert all((demo / "runs" / r / "dedup" / "groups.parquet").is_file() for r in ("web", "captions", "long"))
    assert (demo / "mix" / "manifest.json").is_file() and (demo / "export" / "index.json").is_file()
    assert (demo / "report.html").is_file()
    # running it again (here on a copy) replaces the demo run rather than refusing
    shutil.copytree(demo, tmp_path / "demo")
    assert invoke("demo", "--out", tmp_path / "demo", "--rows", "600").exit_code == 0


@pytest.mark.skipif(not CURATE.exists(), reason="the curate console script is not installed beside python")
def test_the_real_entry_point_prints_one_line_errors(tmp_path):
    """Through the installed console script: exit 1, one `Error:` line, no traceback."""
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for args in (["score", str(bad), "--out", str(tmp_path / "run")],
                 ["decide", str(tmp_path)]):
        proc = subprocess.run([str(CURATE), *args], capture_output=True, text=True, env=env, timeout=120)
        out = (proc.stdout + proc.stderr).strip().splitlines()
        assert proc.returncode == 1, proc.stderr
        assert len(out) == 1 and out[0].startswith("Error: "), out
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.parametrize("command", ["score", "dedup"])
def test_engine_choices_come_from_the_registry(command):
    from curate.engines import ENGINES

    option = next(p for p in cli.commands[command].params if p.name == "engine")
    assert list(option.type.choices) == list(ENGINES)
