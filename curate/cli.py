"""The ``curate`` command line: one verb per command, each a thin call into the library.

Library errors become one-line messages (``Error: ...``, exit 1); every command's help ends
with an example (DESIGN convention 11).
"""
from __future__ import annotations

import functools
import os
import sys
from concurrent.futures.process import BrokenProcessPool
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
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where to score: processes on this machine, or Ray Data (pip install 'curate[ray]').")
@click.option("--address", default=None, help="With --engine ray: a running Ray cluster (e.g. auto, or HOST:6379); default: start a local Ray.")
@friendly
def score(inputs, out, chain, caption_column, id_column, carry, lid_model, workers, batch_rows, overwrite, engine, address):
    """Score captions with a filter chain: every row gets scores, keep and reason.

    INPUTS are Parquet, JSONL or CSV/TSV files, folders or globs. Writes
    OUT/scores/*.parquet and, last, OUT/run.json.

    \b
    Example:
      curate score data/*.parquet --chain filters/english-strict.toml --out runs/en
      curate score /shared/captions/ --out /shared/runs/web --engine ray --address auto
    """
    from .chain import load_chain
    from .run import ScoreOptions
    from .run import score as run_score

    ch = load_chain(chain, lid_model=lid_model)
    opts = ScoreOptions(caption_column, id_column, tuple(carry), workers, batch_rows, overwrite,
                        engine=engine, address=address)
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
    _warn_duplicate_ids(console, result.get("duplicate_sample_ids", 0), id_column)


def _warn_duplicate_ids(console, n: int, id_column: str | None) -> None:
    """One warning line when rows share a sample_id (the run is kept)."""
    if not n:
        return
    from rich.markup import escape

    cause = f"duplicate values in --id-column {id_column!r}" if id_column else "the same rows read twice?"
    console.print(
        f"[yellow]warning:[/yellow] {n:,} row{'s repeat' if n != 1 else ' repeats'} another row's sample_id "
        f"({escape(cause)}); `curate explain` shows only one row per sample_id",
        highlight=False, soft_wrap=True,
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


@cli.command()
@click.argument("target", type=click.Path(exists=True, file_okay=False))
@click.option("--out", "-o", default="report.html", show_default=True, type=click.Path(dir_okay=False), help="HTML file to write; its numbers go to the same name with .json.")
@friendly
def report(target, out):
    """Write a self-contained HTML report of a run or a mixture (plots embedded).

    Shows the run's facts (inputs, chain, versions, rows per reason), score histograms per
    source, the language mix, what-if curves for every threshold, rejected examples per
    reason, the largest duplicate groups and, for a mixture, its composition by source and
    quality bucket. The numbers behind the plots go to report.json beside report.html.

    \b
    Example:
      curate report runs/web --out runs/web/report.html
    """
    from .report import build_report

    result = build_report(target, out)
    _console().print(f"wrote {result['html']} ({result['sections']} sections) and {result['json']}")


@cli.command()
@click.argument("run", type=click.Path(file_okay=False))
@click.option("--preset", type=click.Choice(["copies", "paraphrase"]), default="copies", show_default=True,
              help="copies: near-verbatim and templated copies (static embedder, min(cosine, word Jaccard) > 0.75); "
                   "paraphrase: same meaning in other words (minilm, cosine > 0.8).")
@click.option("--embedder", "-e", default=None, help="static, minilm or a sentence-transformers model folder (default: the preset's).")
@click.option("--threshold", "-t", type=click.FloatRange(0.5, 1.0, max_open=True), default=None, help="Duplicate when similarity to a better-ranked caption is above this (default: the preset's).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where the embedder runs.")
@click.option("--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Neighbours per caption in the kNN table.")
@click.option("--order", default=None, help='Quality order for choosing representatives (default: "keep desc, score__specificity desc"; sample_id breaks ties).')
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where embedding and neighbour search run: this process, or Ray (an actor pool embeds, tasks search the k-means partitions).")
@click.option("--address", default=None, help="With --engine ray: a running Ray cluster (e.g. auto, or HOST:6379); default: start a local Ray.")
@friendly
def dedup(run, preset, embedder, threshold, device, k, order, engine, address):
    """Find near-duplicate groups in a scored run and score each row against better ones.

    Writes RUN/dedup/groups.parquet (dup_group, group_size, is_representative, nearest_id,
    nearest_cosine, score__neardup), the kNN table RUN/dedup/neighbors/ and, last,
    RUN/dedup/dedup.json. Embeddings are cached in RUN/dedup/embeddings, so a new
    threshold re-decides without re-embedding. A chain with a neardup filter applies it.

    \b
    Example:
      curate dedup runs/web
      curate dedup runs/web --preset paraphrase --device cuda
      curate dedup /shared/runs/web --engine ray --address auto --device cuda
    """
    from .dedup import DedupOptions, RichReporter
    from .dedup import dedup as run_dedup

    console = _console()
    with RichReporter(console) as reporter:
        info = run_dedup(run, DedupOptions(embedder, threshold, device, k, preset, order, engine, address), reporter)
    c, t = info["counts"], info["timings"]
    console.print(
        f"{c['rows']:,} rows, {c['texts']:,} distinct texts: {c['duplicate_rows']:,} duplicates "
        f"({c['exact']:,} exact, {c['near']:,} near) in {c['groups_with_duplicates']:,} groups "
        f"(largest {c['largest_group']:,}); {c['kept']:,} representatives and singletons"
    )
    nb = "reused" if info["neighbors"]["reused"] else f"{info['index']['type'].split(' (')[0]}, k={info['k']}"
    console.print(
        f"{info['preset']}: {info['rule']} > {info['threshold']}, {info['embedder']['embedder']}, "
        f"neighbours {nb}; {t['total_s']:.1f} s; wrote {Path(run) / 'dedup'}\n"
        f"apply with `curate decide` and a chain whose last filter is: "
        f"[[filter]] name = \"neardup\" max = {info['threshold']}", markup=False, highlight=False,
    )


def _print_json(obj) -> None:
    import json

    click.echo(json.dumps(obj, indent=2, default=str))


@cli.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Mixture folder to write.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="DuckDB threads (default: one per core); the manifest is the same for any number.")
@click.option("--overwrite", is_flag=True, help="Replace an existing mixture in --out.")
@friendly
def mix(recipe, out, threads, overwrite):
    """Assemble a training mixture from scored runs: one DuckDB query from a recipe.

    RECIPE is a mixture TOML file (see mixtures/example.toml). Writes
    OUT/manifest.parquet, OUT/query.sql, OUT/recipe.toml and, last, OUT/manifest.json.
    Run OUT/recipe.toml again to reproduce the same manifest.

    \b
    Example:
      curate mix mixtures/example.toml --out mixes/v1
      curate mix mixes/v1/recipe.toml --out mixes/v1-again
    """
    from rich.table import Table

    from .mix import build_mixture

    result = build_mixture(recipe, out, threads=threads, overwrite=overwrite)
    console = _console()
    t = Table(title=f"curate mix: {result['name']} ({result['mixture']})", header_style="bold")
    for col in ("source", "eligible", "quota", "rows", "samples", "repeated", "share", "quality pool -> mix"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for name, s in result["counts"]["per_source"].items():
        q_in, q_out = s.get("eligible_quality_mean"), s.get("quality_mean")
        quality = f"{q_in:.3g} -> {q_out:.3g}" if q_in is not None and q_out is not None else ""
        t.add_row(name, f"{s['eligible']:,}", f"{s['quota']:,}", f"{s['rows']:,}", f"{s['samples']:,}",
                  f"{s['repeated_samples']:,}", f"{100 * s['share']:.1f}%", quality)
    console.print(t)
    c = result["counts"]
    console.print(f"{c['rows']:,} rows ({c['samples']:,} samples) in {result['timings']['total_s']:.1f} s; "
                  f"wrote {Path(out) / 'manifest.parquet'}, query.sql, recipe.toml and manifest.json")


@cli.command()
@click.argument("mix", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["parquet", "jsonl", "webdataset"]), required=True, help="Shard format.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the shards and index.json.")
@click.option("--shard-rows", type=click.IntRange(1, 100_000_000), default=10_000, show_default=True, help="Samples per shard.")
@click.option("--expand-repeats", is_flag=True, help="Write a sample with repeat = k k times (default: once, with its repeat count).")
@click.option("--overwrite", is_flag=True, help="Replace an existing export in --out.")
@friendly
def export(mix, fmt, out, shard_rows, expand_repeats, overwrite):
    """Write a mixture's samples as shards for a data loader, with an index.

    parquet and jsonl shards load with Hugging Face datasets; webdataset shards are tar
    files with <key>.txt (caption) and <key>.json (provenance) per sample. Images are not
    included: the shards carry url / image_path where the inputs had them.

    \b
    Example:
      curate export mixes/v1 --format webdataset --out shards/v1 --shard-rows 10000
    """
    from .export import IMAGES_NOTE
    from .export import export as run_export

    index = run_export(mix, fmt, out, shard_rows, expand_repeats, overwrite)
    console = _console()
    console.print(f"{index['rows']:,} samples in {len(index['shards'])} {fmt} shard(s); wrote {Path(out) / 'index.json'}")
    console.print(f"load with: {index['load_with']}", soft_wrap=True)
    console.print(f"note: {IMAGES_NOTE}", style="yellow")


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


@cli.command()
@click.argument("sample_id")
@click.option("--mix", "-m", "mix_dir", type=click.Path(file_okay=False), default=None, help="Mixture folder: was the sample selected, and why (not)?")
@click.option("--run", "-r", "run_dir", type=click.Path(file_okay=False), default=None, help="Run folder that holds the sample.")
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
@friendly
def explain(sample_id, mix_dir, run_dir, as_json):
    """Explain one sample: source row, caption, every score vs its threshold, the decision,
    its duplicate group, and whether and with what weight it entered a mixture.

    \b
    Example:
      curate explain 1703311715173341 --mix mixes/v1
      curate explain 1703311715173341 --run runs/web --json
    """
    from rich.table import Table

    from .audit import explain as run_explain

    e = run_explain(sample_id, mix=mix_dir, run=run_dir)
    if as_json:
        _print_json(e)
        return
    console = _console()
    o = e["origin"]
    console.print(f"[bold]sample {e['sample_id']}[/bold]  run {e['run']['folder']}"
                  + (f" (source {e['run']['source_name']!r})" if e["run"]["source_name"] else ""))
    console.print(f"from {o['source']} row {o['row']}" + (f"  ({o['file']})" if o["file"] and o["file"] != o["source"] else ""))
    console.print("caption: ", end="")
    console.print(repr(e["caption"]), markup=False, highlight=False)
    for k, v in e["carried"].items():
        console.print(f"{k}: {v}", markup=False, highlight=False)
    t = Table(header_style="bold")
    for col in ("filter", "score", "min", "max", "result"):
        t.add_column(col, justify="left" if col == "filter" else "right")
    for s in e["scores"]:
        res = "pass" if s["pass"] else "FAIL"
        extra = f" ({s['junk_kind']})" if s.get("junk_kind") else ""
        if s.get("label"):
            extra += f" {next(iter(s['label'].items()))}"
        t.add_row(f"{s['filter']} ({s['name']})", _fmt(s["score"]), _fmt(s["min"]), _fmt(s["max"]),
                  res + extra, style=None if s["pass"] else "red")
    console.print(t)
    d = e["decision"]
    console.print("decision: " + ("[green]keep[/green]" if d["keep"] else f"[red]drop[/red] (reason: {d['reason']})"))
    dd = e["dedup"]
    if dd is None:
        console.print("near-duplicates: no dedup groups for this run (curate dedup RUN)")
    elif dd.get("in_groups_file") is False:
        console.print("near-duplicates: not in the run's groups file")
    else:
        console.print(f"near-duplicates: group {dd.get('dup_group')} of {dd.get('group_size')}, "
                      f"representative {dd.get('representative')}"
                      + (" (this sample)" if dd.get("is_representative") else "")
                      + f", nearest {dd.get('nearest_id')} (cosine {_fmt(dd.get('nearest_cosine'))})")
    mx = e.get("mix")
    if mx:
        console.print(f"mixture {e['mixture']['id']}: quality {_fmt(mx.get('quality'))} ({mx.get('quality_expression')}), "
                      f"sampling weight {_fmt(mx.get('sampling_weight'))}, key {_fmt(mx.get('sample_key'))}",
                      markup=False, highlight=False)
        if mx.get("selected"):
            console.print(f"[green]selected[/green], repeat {mx['repeat']} (source {mx['source']!r}: "
                          f"quota {mx['quota']:,}, key cutoff {_fmt(mx['key_cutoff'])})")
        else:
            console.print("[yellow]not selected[/yellow]: ", end="")
            console.print(mx.get("why", ""), markup=False, highlight=False)


@cli.command()
@click.argument("mix", type=click.Path(file_okay=False))
@click.option("--full", is_flag=True, help="Compare every selected row even in files whose fingerprint is unchanged.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def verify(mix, full, as_json):
    """Check a mixture against its sources: re-read the input files and compare every
    selected caption's content hash. Exit 0 when intact, 1 with a list of what changed.

    \b
    Example:
      curate verify mixes/v1
      curate verify mixes/v1 --full
    """
    from .audit import verify as run_verify

    v = run_verify(mix, full=full)
    if as_json:
        _print_json(v)
    else:
        console = _console()
        for f in v["files"]:
            console.print(f"{f['status']:>22}  {f['rows']:>9,} rows  {f['run']}: {f['source']}", markup=False, highlight=False)
        for c in v["changes"]:
            where = f" row {c['row']} (sample {c['sample_id']})" if "row" in c else ""
            console.print(f"CHANGED {c['run']}: {c['source']}{where}: {c['problem']}", style="red", markup=False, highlight=False)
        if v["changed"] > len(v["changes"]):
            console.print(f"... and {v['changed'] - len(v['changes']):,} more")
        console.print(f"{v['mixture']}: {v['checked_rows']:,} selected rows checked; "
                      + ("intact" if v["ok"] else f"{v['changed']:,} change(s)"))
    if not v["ok"]:
        click.get_current_context().exit(1)


@cli.command()
@click.argument("mix_a", type=click.Path(file_okay=False))
@click.argument("mix_b", type=click.Path(file_okay=False))
@click.option("--limit", type=click.IntRange(0, 100_000), default=10, show_default=True, help="Example sample ids to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def diff(mix_a, mix_b, limit, as_json):
    """Compare two mixtures: samples added and removed, per source and per reason.

    \b
    Example:
      curate diff mixes/v1 mixes/v2
    """
    from rich.table import Table

    from .audit import diff as run_diff

    d = run_diff(mix_a, mix_b, limit=limit)
    if as_json:
        _print_json(d)
        return
    console = _console()
    console.print(f"A {d['a']['mixture']} ({d['a']['samples']:,} samples) -> B {d['b']['mixture']} "
                  f"({d['b']['samples']:,} samples)" + ("  [same content]" if d["same"] else ""))
    t = Table(header_style="bold")
    for col in ("source", "in both", "removed", "added"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for name, s in d["per_source"].items():
        t.add_row(name, f"{s['kept']:,}", f"{s['removed']:,}", f"{s['added']:,}")
    console.print(t)
    for title, reasons in (("removed (why not in B)", d["removed_by_reason"]), ("added (why not in A)", d["added_by_reason"])):
        if reasons:
            console.print(f"[bold]{title}[/bold]")
            for why, per in reasons.items():
                console.print(f"  {sum(per.values()):>9,}  {why}  ({', '.join(f'{k}: {v:,}' for k, v in per.items())})",
                              markup=False, highlight=False)
    if d["repeat_changed"] or d["caption_changed"]:
        console.print(f"in both but changed: {d['repeat_changed']:,} repeat count(s), {d['caption_changed']:,} caption(s)")
    for ex in d["removed_examples"][:limit]:
        console.print(f"  e.g. removed {ex['example_sample_id']} ({ex['run']}: {ex['why']})", markup=False, highlight=False)
    for ex in d["added_examples"][:limit]:
        console.print(f"  e.g. added {ex['example_sample_id']} ({ex['run']}: {ex['why']})", markup=False, highlight=False)


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
