"""What many test modules share: running the CLI in-process and checking its outcome.

Test modules import from here (``from helpers import invoke``), never from one another.
"""
from __future__ import annotations

import re

from click.testing import CliRunner

from curate.cli import cli


def invoke(*args):
    """Run ``curate ARGS`` in this process (arguments may be paths or numbers)."""
    return CliRunner().invoke(cli, [str(a) for a in args])


def ok(*args):
    """Run ``curate ARGS`` and assert it succeeded."""
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    return res


def one_line_error(res, pattern: str = "") -> str:
    """Assert a failed run printed one ``Error:`` line (matching ``pattern``); return it."""
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]
