"""Running the CLI in-process in tests: the exit code, the output, one-line errors."""
from __future__ import annotations

from click.testing import CliRunner

from curate.cli import cli


def invoke(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args):
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    return res


def one_line_error(*args) -> str:
    """The output of a command that must fail with exit code 1 and one line, no traceback."""
    res = invoke(*args)
    assert res.exit_code == 1, res.output
    assert len(res.output.strip().splitlines()) == 1 and "Traceback" not in res.output, res.output
    return res.output
