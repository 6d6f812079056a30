"""The commands over mixtures: mix, export, explain, verify, diff."""
from __future__ import annotations


import click

from curate.cli.common import fmt, friendly, local_file, make_console, print_json
from curate.export.writers import SHARD_FORMATS, TRAINERS
from curate.layout import CURRENT, INDEX_JSON, MANIFEST, MANIFEST_JSON, QUERY, RECIPE
from curate.storage.fs import is_url, join


@click.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Mixture folder to write.")
@click.option("--threads", type=click.IntRange(1, 1024), default=None, help="DuckDB threads (default: one per core); the manifest is the same for any number.")
@click.option("--overwrite", is_flag=True, help="Replace an existing mixture in --out.")
@click.option("--memory-limit", default=None, help="Memory the recipe's SQL may use, e.g. 8GB (default: half the machine's).")
@click.option("--timeout", type=click.FloatRange(0), default=6 * 3600, show_default=True,
              help="Seconds the recipe's SQL may run (0: no limit).")
@friendly
def mix(recipe, out, threads, overwrite, memory_limit, timeout):
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

    from curate.mix.build import build_mixture

    local_file(recipe, "RECIPE")
    result = build_mixture(recipe, out, threads=threads, overwrite=overwrite, memory_limit=memory_limit,
                           timeout=timeout or None)
    console = make_console()
    for note in result.get("notes", []):
        console.print(f"note: {note}", highlight=False)
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
                  f"wrote {join(out, MANIFEST)}, {QUERY}, {RECIPE} and {MANIFEST_JSON}")


@click.command()
@click.argument("mix", type=click.Path(file_okay=False))
@click.option("--for", "trainer", type=click.Choice(list(TRAINERS)), default=None,
              help="Write one shard set per source and the file this trainer reads to mix them at the recipe's shares.")
@click.option("--format", "fmt", type=click.Choice(list(SHARD_FORMATS)), default=None,
              help="One shard set for the whole mixture, in manifest order.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder for the shards and index.json.")
@click.option("--shard-rows", type=click.IntRange(1, 100_000_000), default=10_000, show_default=True, help="Samples per shard.")
@click.option("--expand-repeats", is_flag=True, help="With --format: write a sample with repeat = k k times (default: once, with its repeat count). --for always does.")
@click.option("--model-caption", default=None, metavar="COLUMN", help="With --for: a carried column holding a model's caption, exported as caption_model.")
@click.option("--overwrite", is_flag=True, help="Replace an existing export in --out.")
@friendly
def export(mix, trainer, fmt, out, shard_rows, expand_repeats, model_caption, overwrite):
    """Write a mixture's samples as shards for a trainer's data loader, with an index.

    --for TRAINER writes OUT/<source>/ per source of the recipe and the mixing file that
    trainer reads (open_clip_args.txt, energon_blend.yaml, mds_streams.json,
    litdata_weights.json, hf_interleave.json). --format writes one shard set: parquet and
    jsonl load with Hugging Face datasets, webdataset shards are tar files with <key>.txt
    (caption) and <key>.json (provenance) per sample. Tars, MDS and the --for Parquet
    parts copy the image member of every sample scored from a WebDataset shard, byte for
    byte; other samples carry url / image_path / image_id where the inputs had them.

    \b
    Example:
      curate export mixes/v1 --for open_clip --out shards/v1
      curate export mixes/v1 --format webdataset --out shards/v1 --shard-rows 10000
    """
    if (trainer is None) == (fmt is None):
        raise click.UsageError("give one of --for TRAINER or --format FORMAT")
    console = make_console()
    if trainer is not None:
        from curate.export.trainers import export_for

        _print_trainer_export(console, export_for(mix, trainer, out, shard_rows, overwrite, model_caption), out)
        return
    from curate.export.shards import export as run_export

    index = run_export(mix, fmt, out, shard_rows, expand_repeats, overwrite)
    console.print(f"{index['rows']:,} samples in {len(index['shards'])} {fmt} shard(s); wrote {join(out, INDEX_JSON)}")
    if SHARD_FORMATS[fmt].copies_images:
        per = ", ".join(f"{k} {v['images']:,} of {v['rows']:,}" for k, v in index["per_source"].items())
        console.print(f"{index['images_copied']:,} images copied, {index['rows_without_image']:,} rows without an "
                      f"image ({per})", soft_wrap=True)
    console.print(f"load with: {index['load_with']}", soft_wrap=True, markup=False, highlight=False)
    console.print(f"note: {index['images']}", style="yellow", soft_wrap=True)


def _print_trainer_export(console, index: dict, out) -> None:
    from rich.table import Table

    t = Table(title=f"curate export --for {index['for']}: {index['mixture']}", header_style="bold")
    for col in ("source", "rows", "exported", "images copied", "left out", "share"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for s in index["sources"]:
        t.add_row(s["name"], f"{s['rows']:,}", f"{s['exported']:,}", f"{s.get('images_copied', 0):,}",
                  f"{s['left_out']:,}", f"{s['share']:.4f}")
    console.print(t)
    if index["for"] in ("open_clip", "energon") and index["left_out"]:
        console.print(f"left out: {index['left_out']:,} rows without an image "
                      f"({'open_clip trains on image-text pairs' if index['for'] == 'open_clip' else 'sources with images take image-bearing rows'})",
                      style="yellow", soft_wrap=True)
    where = (f"{index['mix_file']} of the version {join(out, CURRENT)} names" if is_url(out)
             else join(out, index["mix_file"]))
    console.print(f"{index['rows']:,} samples, {index['images_copied']:,} images copied; mix with {where}",
                  soft_wrap=True)
    console.print(f"load with: {index['load_with']}", soft_wrap=True, markup=False, highlight=False)


@click.command()
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

    from curate.audit.explain import explain as run_explain
    from curate.cli.balance_commands import balance_lines

    e = run_explain(sample_id, mix=mix_dir, run=run_dir)
    if as_json:
        print_json(e)
        return
    console = make_console()
    for note in e.get("notes", []):
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    o = e["origin"]
    console.print(f"[bold]sample {e['sample_id']}[/bold]  run {e['run']['folder']}"
                  + (f" (source {e['run']['source_name']!r})" if e["run"]["source_name"] else ""))
    console.print(f"from {o['source']} row {o['row']}" + (f"  ({o['file']})" if o["file"] and o["file"] != o["source"] else ""))
    now = o.get("now") or {}
    if now and not now.get("same"):
        console.print("the input now holds at that row: " + (now.get("error") or ("no row" if now.get("missing")
                      else repr(now.get("caption")))), markup=False, highlight=False)
    console.print("caption: ", end="")
    console.print(repr(e["caption"]), markup=False, highlight=False)
    if e.get("caption_clean") != e["caption"]:
        console.print(f"cleaned ({', '.join(e.get('clean_ops') or [])}): {e.get('caption_clean')!r}", markup=False, highlight=False)
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
        t.add_row(f"{s['filter']} ({s['name']})", fmt(s["score"]), fmt(s["min"]), fmt(s["max"]),
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
                      + f", nearest {dd.get('nearest_id')} (cosine {fmt(dd.get('nearest_cosine'))})")
    mx = e.get("mix")
    if mx:
        console.print(f"mixture {e['mixture']['id']}: quality {fmt(mx.get('quality'))} ({mx.get('quality_expression')}), "
                      f"sampling weight {fmt(mx.get('sampling_weight'))}, key {fmt(mx.get('sample_key'))}",
                      markup=False, highlight=False)
        for line in balance_lines(mx.get("balance")):
            console.print(line, markup=False, highlight=False)
        if mx.get("selected"):
            console.print(f"[green]selected[/green], repeat {mx['repeat']} (source {mx['source']!r}: "
                          f"quota {mx['quota']:,}, key cutoff {fmt(mx['key_cutoff'])})")
        else:
            console.print("[yellow]not selected[/yellow]: ", end="")
            console.print(mx.get("why", ""), markup=False, highlight=False)


#: --memory-limit of verify and diff
MEMORY_HELP = ("Memory to stay near, e.g. 4GB (default: half the machine's); DuckDB gets 60% of it "
               "and spills the rest to a temporary folder.")


@click.command()
@click.argument("mix", type=click.Path(file_okay=False))
@click.option("--full", is_flag=True, help="Compare every selected row even in files whose fingerprint is unchanged.")
@click.option("--memory-limit", default=None, help=MEMORY_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def verify(mix, full, memory_limit, as_json):
    """Check a mixture against its sources: re-read the input files and compare every
    selected caption's content hash (and, from WebDataset shards, every selected image's
    member, place and content hash). Exit 0 when intact, 1 with a list of what changed.

    \b
    Example:
      curate verify mixes/v1
      curate verify mixes/v1 --full --memory-limit 4GB
    """
    from curate.audit.verify import verify as run_verify

    v = run_verify(mix, full=full, memory_limit=memory_limit)
    if as_json:
        print_json(v)
    else:
        console = make_console()
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


@click.command()
@click.argument("mix_a", type=click.Path(file_okay=False))
@click.argument("mix_b", type=click.Path(file_okay=False))
@click.option("--limit", type=click.IntRange(0, 100_000), default=10, show_default=True, help="Example sample ids to list.")
@click.option("--memory-limit", default=None, help=MEMORY_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@friendly
def diff(mix_a, mix_b, limit, memory_limit, as_json):
    """Compare two mixtures: samples added and removed, per source and per reason.

    \b
    Example:
      curate diff mixes/v1 mixes/v2
      curate diff mixes/v1 mixes/v2 --memory-limit 4GB
    """
    from rich.table import Table

    from curate.audit.diff import diff as run_diff

    d = run_diff(mix_a, mix_b, limit=limit, memory_limit=memory_limit)
    if as_json:
        print_json(d)
        return
    console = make_console()
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
