"""The commands that make and change runs: score, decide, dedup, demo, report."""
from __future__ import annotations

import click

from curate.cli.common import friendly, local_file, make_console, reporting
from curate.engines import ENGINES
from curate.errors import CurateError
from curate.layout import DEDUP, RUN_JSON, SCORES
from curate.storage.fs import is_url, join
from curate.report.terminal import summary_table

ENGINE_HELP = "; ".join(f"{name}: {e.description}" for name, e in ENGINES.items())


@click.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run folder to write.")
@click.option("--chain", "-c", default=None, help="Chain file, or the name of a packaged chain (default, default-dedup, english-strict, multilingual; default: default).")
@click.option("--caption-column", default="caption", show_default=True, help="Column that holds the caption.")
@click.option("--id-column", default=None, help="Column with a unique id per row (else ids derive from file and row).")
@click.option("--carry", multiple=True, help="Extra input column to keep in the outputs (repeatable).")
@click.option("--carry-all", is_flag=True, help="Keep every input column in the outputs (numbers stay numbers; bytes and names the outputs use are left out).")
@click.option("--columns", default=None, help="Names of the columns of CSV/TSV files without a header row, in order (e.g. caption,url).")
@click.option("--lid-model", default=None, type=click.Path(dir_okay=False), help="fastText LID model (default: bundled lid.176.ftz).")
@click.option("--workers", "-j", type=click.IntRange(1, 256), default=None, help="Worker processes (default: one per core for large inputs).")
@click.option("--batch-rows", type=click.IntRange(1000, 10_000_000), default=100_000, show_default=True, help="Rows per batch and per output part.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run in --out.")
@click.option("--engine", type=click.Choice(list(ENGINES)), default="local", show_default=True,
              help=f"Where to score: {ENGINE_HELP}.")
@click.option("--address", default=None, help="With --engine ray: a running Ray cluster (e.g. auto, or HOST:6379); default: start a local Ray.")
@friendly
def score(inputs, out, chain, caption_column, id_column, carry, carry_all, columns, lid_model, workers, batch_rows,
          overwrite, engine, address):
    """Score captions with a filter chain: every row gets scores, keep and reason.

    INPUTS are Parquet, JSONL or CSV/TSV files (also .gz, .zst, .bz2), WebDataset .tar
    shards, Arrow/Feather files or Hugging Face save_to_disk folders; files, folders or
    globs. Writes OUT/scores/*.parquet and, last, OUT/run.json.

    \b
    Example:
      curate score data/*.parquet --chain filters/english-strict.toml --out runs/en
      curate score cc3m.tsv.gz --columns caption,url --out runs/cc3m
      curate score shards/ --out runs/laion --carry-all
      curate score /shared/captions/ --out /shared/runs/web --engine ray --address auto
    """
    from curate.engines import score as run_score
    from curate.scoring.chain import load_chain
    from curate.scoring.runner import ScoreOptions

    local_file(chain, "--chain")
    local_file(lid_model, "--lid-model")
    ch = load_chain(chain, lid_model=lid_model)
    names = tuple(c.strip() for c in columns.split(",")) if columns else ()
    opts = ScoreOptions(caption_column, id_column, tuple(carry), workers, batch_rows, overwrite,
                        engine=engine, address=address, columns=names, carry_all=carry_all)
    console = make_console()
    with reporting(console, None if is_url(out) else out) as reporter:
        result = run_score(list(inputs), out, ch, opts, reporter)
    if result.get("read"):
        console.print(result["read"], highlight=False, soft_wrap=True, markup=False)
    summary_table(console, result, f"curate score: chain {ch.name}")
    console.print(
        f"{result['rows']:,} rows in {result['timings']['score_s']:.1f} s "
        f"({result['timings']['rows_per_s']:,.0f} rows/s); wrote {join(out, SCORES)} and {join(out, RUN_JSON)}"
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


@click.command()
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
    from curate.scoring.chain import load_chain
    from curate.scoring.decide import decide_run

    local_file(chain, "--chain")
    result = decide_run(run, load_chain(chain))
    console = make_console()
    summary_table(console, result, f"curate decide: chain {result['decisions'][-1]['chain']}")
    console.print(f"decided {result['rows']:,} rows in {result['decisions'][-1]['seconds']:.2f} s")


@click.command()
@click.option("--out", "-o", default="demo-out", show_default=True, type=click.Path(file_okay=False), help="Folder for the demo's outputs.")
@click.option("--rows", default=2000, show_default=True, type=click.IntRange(100, 1_000_000), help="Captions in the built-in sample.")
@friendly
def demo(out, rows):
    """Generate the built-in sample and run the default chain on it.

    \b
    Example:
      curate demo --out demo-out
    """
    from curate.demo import run_demo

    if is_url(out):
        raise CurateError(f"--out {out}: the demo writes a local folder (its sample inputs, runs, mixture, export "
                          "and report); give a local path")
    run_demo(out, rows, console=make_console())


@click.command()
@click.argument("target")
@click.option("--out", "-o", default="report.html", show_default=True, type=click.Path(dir_okay=False), help="HTML file to write (a path or a URL on a store); its numbers go to the same name with .json; a missing folder is created.")
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
    from curate.report.html import build_report

    result = build_report(target, out)
    made = f" (created the folder {result['created']})" if result.get("created") else ""
    make_console().print(f"wrote {result['html']} ({result['sections']} sections) and {result['json']}{made}",
                         soft_wrap=True, markup=False, highlight=False)


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False), metavar="RUN [RUN ...]")
@click.option("--preset", type=click.Choice(["copies", "paraphrase"]), default="copies", show_default=True,
              help="copies: near-verbatim and templated copies (static embedder, min(cosine, word Jaccard) > 0.75); "
                   "paraphrase: same meaning in other words (minilm, cosine > 0.8).")
@click.option("--embedder", "-e", default=None, help="static, minilm or a sentence-transformers model folder (default: the preset's).")
@click.option("--threshold", "-t", type=click.FloatRange(0.5, 1.0, max_open=True), default=None, help="Duplicate when similarity to a better-ranked caption is above this (default: the preset's).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where the embedder runs.")
@click.option("--k", "k", type=click.IntRange(1, 1000), default=10, show_default=True, help="Neighbours per caption in the kNN table.")
@click.option("--order", default=None, help='Quality order for choosing representatives (default: "keep desc, score__specificity desc"; sample_id breaks ties).')
@click.option("--engine", type=click.Choice(list(ENGINES)), default="local", show_default=True,
              help=f"Where embedding and neighbour search run: {ENGINE_HELP}.")
@click.option("--address", default=None, help="With --engine ray: a running Ray cluster (e.g. auto, or HOST:6379); default: start a local Ray.")
@click.option("--prefer", multiple=True, metavar="RUN",
              help="With several runs: this run's rows represent their groups first (repeat: most preferred first), e.g. human captions over web alt-text.")
@click.option("--cache", default=None, type=click.Path(file_okay=False),
              help="Folder for the embeddings and the kNN table (default: RUN/dedup for one run, $CURATE_CACHE/dedup for several); texts embedded once are reused by every set that uses it.")
@click.option("--memory", type=click.Choice(["auto", "in", "out"]), default="auto", show_default=True,
              help="out: out of core (float16 shards on disk, partitions searched batch by batch, the kNN table streamed; "
                   "memory does not grow with the vectors); in: all in memory (fastest for small runs); auto: out from 200k distinct texts.")
@friendly
def dedup(runs, preset, embedder, threshold, device, k, order, engine, address, prefer, cache, memory):
    """Find near-duplicate groups in scored runs and score each row against better ones.

    Several runs are deduplicated together, in one group space: a caption in two runs is one
    group, represented by its best row across them. Writes, for each run,
    RUN/dedup/groups.parquet (dup_group, group_size, is_representative, nearest_id,
    nearest_cosine, score__neardup) and, last, RUN/dedup/dedup.json (naming the whole set).
    Embeddings and the kNN table are cached by content (see --cache), so a new threshold
    re-decides without re-embedding and a run added later embeds only its new texts. A chain
    with a neardup filter applies the decision.

    \b
    Example:
      curate dedup runs/web
      curate dedup runs/coco runs/web --prefer runs/coco --cache runs/.dedup-cache
      curate dedup runs/web --preset paraphrase --device cuda
      curate dedup /shared/runs/web --engine ray --address auto --device cuda
    """
    from curate.dedup.run import DedupOptions
    from curate.engines import dedup as run_dedup

    console = make_console()
    opts = DedupOptions(embedder, threshold, device, k, preset, order, engine, address, list(prefer), cache, memory)
    with reporting(console, runs[0]) as reporter:
        info = run_dedup(list(runs), opts, reporter)
    c, t = info["set_counts"], info["timings"]
    console.print(
        f"{c['rows']:,} rows, {c['texts']:,} distinct texts: {c['duplicate_rows']:,} duplicates "
        f"({c['exact']:,} exact, {c['near']:,} near) in {c['groups_with_duplicates']:,} groups "
        f"(largest {c['largest_group']:,}); {c['kept']:,} representatives and singletons"
    )
    if len(runs) > 1:
        for run, rc in info["per_run"].items():
            console.print(f"  {run}: {rc['rows']:,} rows, {rc['duplicate_rows']:,} duplicates, {rc['kept']:,} kept; "
                          f"{rc['represented_by_other_runs']:,} in groups another run represents",
                          markup=False, highlight=False)
    nb = "reused" if info["neighbors"]["reused"] else f"{info['index']['type'].split(' (')[0]}, k={info['k']}"
    wrote = ", ".join(join(r, DEDUP) for r in runs)
    console.print(
        f"{info['preset']}: {info['rule']} > {info['threshold']}, {info['embedder']['embedder']}, "
        f"neighbours {nb}; {t['total_s']:.1f} s; wrote {wrote}\n"
        f"apply with `curate decide` and a chain whose last filter is: "
        f"[[filter]] name = \"neardup\" max = {info['threshold']}", markup=False, highlight=False,
    )


@click.command("index")
@click.argument("run")
@friendly
def index(run):
    """Write a run's index by sample id (RUN/by-id), so that `curate explain` finds a
    sample by reading a few small pieces instead of every part. score and decide write it;
    this command writes it for a run made without one, or again.

    \b
    Example:
      curate index runs/web
      curate index s3://bucket/runs/web
    """
    from curate.layout import BY_ID
    from curate.scoring.byid import index_run

    info = index_run(run)
    make_console().print(f"indexed {info['rows']:,} rows of {len(info['parts']):,} parts in "
                         f"{1 << info['bits']:,} bucket(s); wrote {join(run, BY_ID)}", markup=False, highlight=False)
