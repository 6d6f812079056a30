"""One-line errors for click's own usage errors (exit 2), through the real entry point, and
the run's count of rows that repeat a sample_id (duplicate --id-column values)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import curate.cli
from curate.cli import cli, main

CURATE = Path(sys.executable).parent / "curate"
needs_script = pytest.mark.skipif(not CURATE.exists(), reason="the curate console script is not installed beside python")


def run_script(*args):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(CURATE), *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


@needs_script
@pytest.mark.parametrize("case, expect", [
    ("out-is-a-file", "Error: Invalid value for '--out' / '-o': Directory '{afile}' is a file."),
    ("no-input", "Error: Missing argument 'INPUTS...'."),
    ("unknown-option", "Error: No such option '--bogus'."),
])
def test_usage_errors_are_one_line_with_exit_2(tmp_path, case, expect):
    afile = tmp_path / "afile"
    afile.write_text("")
    args = {
        "out-is-a-file": ["score", tmp_path / "in.jsonl", "--out", afile],
        "no-input": ["score"],
        "unknown-option": ["score", tmp_path / "in.jsonl", "--bogus"],
    }[case]
    proc = run_script(*args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(expect.format(afile=afile)), lines
    assert lines[0].endswith("(see 'curate score --help')")
    assert not (tmp_path / "afile" / "run.json").exists()


@needs_script
@pytest.mark.parametrize("args", [["--help"], ["score", "--help"], ["score", "-h"], ["--version"]])
def test_help_and_version_exit_0(args):
    proc = run_script(*args)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout.strip()


# -- main() in this process, with a small command group in place of curate's ------------------


def call_main(monkeypatch, capsys, group, *args) -> tuple[int, list[str], str]:
    monkeypatch.setattr(curate.cli, "cli", group)
    monkeypatch.setattr(sys, "argv", ["curate", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    return exc.value.code, err.splitlines(), out


def fake_group():
    @click.group()
    def group():
        pass

    @group.command()
    def badparam():
        raise click.BadParameter("the first line\n  and the second\n\nand a third", param_hint="'--x'")

    @group.command()
    def clickerror():
        raise click.ClickException("one\ntwo")

    @group.command()
    def abort():
        raise click.Abort()

    @group.command()
    def prompt():
        click.prompt("name")

    @group.command()
    def exits():
        click.get_current_context().exit(3)

    @group.command()
    def fine():
        click.echo("done")

    return group


def test_a_multi_line_usage_error_is_folded_onto_one_line(monkeypatch, capsys):
    code, err, out = call_main(monkeypatch, capsys, fake_group(), "badparam")
    assert code == 2 and out == ""
    assert err == ["Error: Invalid value for '--x': the first line and the second and a third (see 'curate badparam --help')"]


def test_a_click_exception_is_one_line_with_exit_1(monkeypatch, capsys):
    code, err, _ = call_main(monkeypatch, capsys, fake_group(), "clickerror")
    assert (code, err) == (1, ["Error: one two"])


def test_abort_is_one_line(monkeypatch, capsys):
    code, err, _ = call_main(monkeypatch, capsys, fake_group(), "abort")
    assert (code, err) == (1, ["Aborted!"])
    # end of input at a prompt: click closes the prompt's line, then one message
    monkeypatch.setattr(sys, "stdin", open(os.devnull))
    code, err, _ = call_main(monkeypatch, capsys, fake_group(), "prompt")
    assert code == 1 and [line for line in err if line.strip()] == ["Aborted!"]


def test_exit_codes_of_commands_pass_through(monkeypatch, capsys):
    assert call_main(monkeypatch, capsys, fake_group(), "exits")[0] == 3
    code, err, out = call_main(monkeypatch, capsys, fake_group(), "fine")
    assert (code, err, out) == (0, [], "done\n")


# -- duplicate ids ----------------------------------------------------------------------------

CAPTIONS = [
    "A brown dog runs across a green field with a red ball in its mouth.",
    "Two children build a sandcastle on a sunny beach near the water.",
    "An old man reads a newspaper on a wooden bench in the city park.",
    "A red bus stops at a crowded street corner on a rainy afternoon.",
    "A grey cat sleeps on a windowsill in the warm morning light.",
    "Three people ride bicycles along a narrow path beside a quiet lake.",
]


def score_jsonl(tmp_path: Path, *files: list[str]):
    """Score JSONL files with the given ids (one list per file) and --id-column id."""
    captions = iter(CAPTIONS)
    inputs = []
    for n, ids in enumerate(files):
        inputs.append(tmp_path / f"in{n}.jsonl")
        inputs[-1].write_text("".join(json.dumps({"id": i, "caption": next(captions)}) + "\n" for i in ids))
    res = CliRunner().invoke(cli, ["score", *map(str, inputs), "--out", str(tmp_path / "run"), "--id-column", "id"])
    assert res.exit_code == 0, res.output
    return res, json.loads((tmp_path / "run" / "run.json").read_text())


def test_duplicate_ids_are_counted_and_warned_about(tmp_path):
    # "a" three times and "c" twice, within a file and across the two: three rows repeat
    # another row's id
    res, run = score_jsonl(tmp_path, ["a", "b", "a"], ["c", "a", "c"])
    assert run["rows"] == 6 and run["duplicate_sample_ids"] == 3
    warnings = [line for line in res.output.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1, res.output
    assert warnings[0].startswith("warning: 3 rows repeat another row's sample_id")
    assert "--id-column 'id'" in warnings[0]


def test_unique_ids_give_zero_and_no_warning(tmp_path):
    res, run = score_jsonl(tmp_path, ["a", "b", "c"], ["d", "e", "f"])
    assert run["duplicate_sample_ids"] == 0
    assert "warning" not in res.output.lower()
