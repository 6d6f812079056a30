"""The ``curate`` command line: one verb per command, each a thin call into the library.

Library errors become one-line messages (``Error: ...``, exit 1); every command's help ends
with an example (DESIGN convention 11).
"""
from __future__ import annotations

import atexit
import gc
import os
import sys

import click

from curate.cli import balance_commands, mix_commands, run_commands, train_commands

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="curate")
def cli():
    """Curate image-caption training data: score, deduplicate, decide, mix.

    \b
    Example:
      curate score captions.parquet --out runs/web
    """


for _command in (run_commands.score, run_commands.decide, run_commands.index, run_commands.dedup, run_commands.demo, run_commands.report,
                 mix_commands.mix, mix_commands.export, mix_commands.explain, mix_commands.verify, mix_commands.diff,
                 train_commands.train, train_commands.sample, balance_commands.concepts, balance_commands.balance):
    cli.add_command(_command)


def _one_line(text: str) -> str:
    """A message folded onto one line: its lines, stripped, joined by a space."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def _usage_hint(e: click.UsageError) -> str:
    ctx = e.ctx
    if ctx is None or ctx.command.get_help_option(ctx) is None:
        return ""
    names = ctx.command.get_help_option_names(ctx)
    return f" (see '{ctx.command_path} {max(names, key=len)}')"


def main() -> None:
    """The console script: click's errors as one line on stderr (usage errors exit 2, other
    errors 1), instead of click's usage block; --help and --version exit 0."""
    # at exit, the objects left need no garbage collection: the interpreter's collections
    # while it shuts down took a large share of a second after a large run (outputs are
    # written and closed by then; the other exit handlers run as before)
    atexit.register(gc.freeze)
    try:
        rv = cli(standalone_mode=False, prog_name="curate")  # click raises instead of printing; returns ctx.exit's code
    except BrokenPipeError:  # e.g. `curate ... | head`
        sys.exit(0)
    except click.exceptions.NoArgsIsHelpError as e:  # bare `curate`: the help, as click prints it
        e.show()
        sys.exit(e.exit_code)
    except click.UsageError as e:
        click.echo(f"Error: {_one_line(e.format_message())}{_usage_hint(e)}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"Error: {_one_line(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except (click.Abort, KeyboardInterrupt):  # Ctrl-C at a prompt or while parsing
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
