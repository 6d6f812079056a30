"""The ``curate`` command line: one verb per command, each a thin call into the library.

Library errors become one-line messages (``Error: ...``, exit 1); every command's help ends
with an example (DESIGN convention 11).
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import click

from .errors import CurateError

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


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
        except PermissionError as e:
            raise click.ClickException(f"permission denied: {e.filename or e}") from None
        except OSError as e:
            raise click.ClickException(f"{e.strerror or e}: {e.filename or ''}".rstrip(": ")) from None

    return wrapper


def _console():
    from rich.console import Console

    return Console(stderr=False)


def _progress(console, description: str):
    """A rich progress bar with rows/s, or None when stdout is not a terminal."""
    if not console.is_terminal:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(), console=console, transient=True,
    )


def _summary_table(console, run: dict, title: str) -> None:
    from rich.table import Table

    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("")
    t.add_column("rows", justify="right")
    t.add_column("share", justify="right")
    total = max(run["rows"], 1)
    t.add_row("rows in", f"{run['rows']:,}", "100.0%")
    t.add_row("kept", f"{run['kept']:,}", f"{100 * run['kept'] / total:.1f}%", style="green")
    for reason, n in run["dropped"].items():
        t.add_row(f"dropped: {reason}", f"{n:,}", f"{100 * n / total:.1f}%")
    console.print(t)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="curate")
def cli():
    """Curate image-caption training data: score, deduplicate, decide, mix.

    \b
    Example:
      curate score captions.parquet --out runs/web
    """


@cli.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run folder to write.")
@click.option("--chain", "-c", default=None, help="Chain file, or a name in filters/ (default: default).")
@click.option("--caption-column", default="caption", show_default=True, help="Column that holds the caption.")
@click.option("--id-column", default=None, help="Column with a unique id per row (else ids derive from file and row).")
@click.option("--carry", multiple=True, help="Extra input column to keep in the outputs (repeatable).")
@click.option("--lid-model", default=None, type=click.Path(dir_okay=False), help="fastText LID model (default: bundled lid.176.ftz).")
@click.option("--workers", "-j", type=click.IntRange(1, 256), default=None, help="Worker processes (default: one per core for large inputs).")
@click.option("--batch-rows", type=click.IntRange(1000, 10_000_000), default=100_000, show_default=True, help="Rows per batch and per output part.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")
@friendly
def score(inputs, out, chain, caption_column, id_column, carry, lid_model, workers, batch_rows, overwrite):
    """Score captions with a filter chain: every row gets scores, keep and reason.

    INPUTS are Parquet, JSONL or CSV/TSV files, folders or globs. Writes
    OUT/scores/*.parquet and, last, OUT/run.json.

    \b
    Example:
      curate score data/*.parquet --chain filters/english-strict.toml --out runs/en
    """
    from .chain import load_chain
    from .run import ScoreOptions
    from .run import score as run_score

    ch = load_chain(chain, lid_model=lid_model)
    opts = ScoreOptions(caption_column, id_column, tuple(carry), workers, batch_rows, overwrite)
    console = _console()
    bar = _progress(console, "scoring")
    if bar is None:
        result = run_score(list(inputs), out, ch, opts)
    else:
        import time

        with bar:
            task = bar.add_task("scoring", total=None, rate="")
            t0 = time.perf_counter()
            done = [0]

            def advance(n: int) -> None:
                done[0] += n
                rate = done[0] / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=n, rate=f"{rate:,.0f} rows/s")

            result = run_score(list(inputs), out, ch, opts, progress=advance,
                               total_cb=lambda t: bar.update(task, total=t))
    _summary_table(console, result, f"curate score: chain {ch.name}")
    console.print(
        f"{result['rows']:,} rows in {result['timings']['score_s']:.1f} s "
        f"({result['timings']['rows_per_s']:,.0f} rows/s); wrote {Path(out) / 'scores'} and {Path(out) / 'run.json'}"
    )


@cli.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--chain", "-c", default=None, help="Chain whose thresholds to apply (default: default).")
@friendly
def decide(run, chain):
    """Re-apply a chain's thresholds to a run's stored scores, without re-scoring.

    Rewrites keep and reason in RUN/scores and records the decision in RUN/run.json.
    The chain may change min, max, allow, deny and the order of filters; changing a
    filter's params needs a new `curate score`.

    \b
    Example:
      curate decide runs/web --chain filters/english-strict.toml
    """
    from .chain import load_chain
    from .run import decide_run

    result = decide_run(run, load_chain(chain))
    console = _console()
    _summary_table(console, result, f"curate decide: chain {result['decisions'][-1]['chain']}")
    console.print(f"decided {result['rows']:,} rows in {result['decisions'][-1]['seconds']:.2f} s")


@cli.command()
@click.option("--out", "-o", default="demo-out", show_default=True, type=click.Path(file_okay=False), help="Folder for the demo's outputs.")
@click.option("--rows", default=2000, show_default=True, type=click.IntRange(100, 1_000_000), help="Captions in the built-in sample.")
@friendly
def demo(out, rows):
    """Generate the built-in sample and run the default chain on it.

    \b
    Example:
      curate demo --out demo-out
    """
    from .demo import run_demo

    run_demo(out, rows, console=_console())


def main() -> None:
    try:
        cli(standalone_mode=True)
    except BrokenPipeError:  # e.g. `curate ... | head`
        sys.exit(0)


if __name__ == "__main__":
    main()
