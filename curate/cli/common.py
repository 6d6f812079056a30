"""What every command shares: library errors as one line, the console, progress bars."""
from __future__ import annotations

import functools
from concurrent.futures.process import BrokenProcessPool

import click

from curate.errors import CurateError


def friendly(fn):
    """Turn library errors (and a few system ones) into one-line messages."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
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
        except PermissionError as e:
            raise click.ClickException(f"permission denied: {e.filename or e}") from None
        except OSError as e:
            raise click.ClickException(f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")) from None

    return wrapper


def make_console():
    from rich.console import Console

    return Console(stderr=False)


def progress(console, description: str):
    """A rich progress bar with rows/s, or None when stdout is not a terminal."""
    if not console.is_terminal:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), console=console, transient=True,
    )


def print_json(obj) -> None:
    import json

    click.echo(json.dumps(obj, indent=2, default=str))


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
