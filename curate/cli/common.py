"""What every command shares: expected errors as one line, ``--debug``, the console and the
one progress bar (:mod:`curate.progress`)."""
from __future__ import annotations

import functools
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from pathlib import Path

import click

from curate.errors import CurateError
from curate.layout import DEBUG_LOG, command_line
from curate.progress import Reporter, Stage

DEBUG_HELP = "Show the full traceback of any error; long commands also log their stages to curate-debug.log."
#: whether this command runs with --debug (set by :func:`friendly`)
DEBUG = {"on": False}


def friendly(fn):
    """Add ``--debug`` to a command, and turn expected errors into one-line messages: the
    library's :class:`CurateError` (bad input, a bad recipe), an interrupt, a worker killed
    by the system, and an ``OSError`` about a path (a missing file, a full disk, no
    permission). Anything else is a bug and keeps its traceback; with ``--debug`` every
    error does."""

    @functools.wraps(fn)
    def wrapper(*args, debug: bool = False, **kwargs):
        DEBUG["on"] = debug
        if debug:
            return fn(*args, **kwargs)
        try:
            return fn(*args, **kwargs)
        except CurateError as e:
            raise click.ClickException(str(e)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted; finished parts are kept, rerun to resume") from None
        except BrokenProcessPool:
            raise click.ClickException(
                "a worker process died (out of memory?); finished parts are kept, "
                "rerun (with fewer --workers or smaller --batch-rows) to resume"
            ) from None
        except OSError as e:
            if e.filename is None:  # not about a path the user gave: a bug, or the system's
                raise
            if isinstance(e, PermissionError):
                raise click.ClickException(f"permission denied: {e.filename}") from None
            raise click.ClickException(f"{e.strerror or e}: {e.filename}") from None

    return click.option("--debug", is_flag=True, help=DEBUG_HELP)(wrapper)


def local_file(path: str | None, option: str) -> None:
    """A one-line error for a URL where curate reads a small local file (a chain, a recipe,
    a vocabulary, a model file)."""
    from curate.storage.fs import is_url

    if path is not None and is_url(path):
        raise CurateError(f"{option} {path}: this file is read from local disk, not from a store; "
                          "copy it here first (e.g. aws s3 cp URL .)")


def make_console():
    from rich.console import Console

    return Console(stderr=False)


class BarReporter(Reporter):
    """Progress bars on a terminal (one rich bar per stage, with its rate); notes are printed
    either way. Use it as a context manager."""

    def __init__(self, console) -> None:
        self.console = console
        self.bar = None
        if console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            rate = TextColumn("{task.fields[rate]}")
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), rate,
                                TimeElapsedColumn(), console=console, transient=True)

    def __enter__(self) -> "BarReporter":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def stage(self, name: str, total: int | None = None) -> Stage:
        if self.bar is None:
            return Stage()
        bar = self.bar
        task = bar.add_task(name, total=total, rate="")

        class Drawn(Stage):
            def __call__(self, amount: float) -> None:
                speed = bar.tasks[task].speed if task < len(bar.tasks) else None
                bar.update(task, advance=amount, rate=f"{speed:,.0f}/s" if speed else "")

            def total(self, n: int | None) -> None:
                bar.update(task, total=n)

        return Drawn()

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False)


@contextmanager
def reporting(console, log_folder: str | Path | None = None):
    """The command's reporter: bars on a terminal and, with ``--debug``, a log of every stage
    (and of the traceback, should the command fail) in ``log_folder/curate-debug.log``."""
    with BarReporter(console) as bars:
        if not (DEBUG["on"] and log_folder is not None):
            yield bars
            return
        log = None
        try:
            log = _open_log(bars, Path(log_folder) / DEBUG_LOG)
            yield log or bars
        except BaseException as e:
            if log is not None:
                log.failed(e)
            raise
        finally:
            if log is not None:
                log.close()


def _open_log(bars: Reporter, path: Path):
    from curate.progress import LogReporter

    try:
        return LogReporter(bars, path, command_line())
    except OSError as e:  # the command itself reports an unwritable folder
        bars.note(f"no debug log: cannot write {path} ({e.strerror or e})")
        return None


def print_json(obj) -> None:
    import json

    click.echo(json.dumps(obj, indent=2, default=str))


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
