"""The commands of balanced mixtures: concepts (match entries), balance (report)."""
from __future__ import annotations

import click

from curate.cli.common import fmt, friendly, local_file, print_json


@click.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--vocabulary", "-v", default=None, type=click.Path(dir_okay=False),
              help="Entries to match: a .txt file (one a line) or a .json file (a list, or language -> list with \"*\" for the rest). Default: built from the runs' captions.")
@click.option("--min-df", type=click.IntRange(1, None), default=5, show_default=True, help="Default vocabulary: rows an entry must occur in.")
@click.option("--max-df", type=click.FloatRange(0, 1), default=0.5, show_default=True, help="Default vocabulary: largest share of rows an entry may occur in.")
@click.option("--max-entries", type=click.IntRange(1, None), default=50_000, show_default=True, help="Default vocabulary: most entries (by document frequency).")
@click.option("--json", "as_json", is_flag=True, help="Print each run's concepts.json (without the vocabulary).")
@friendly
def concepts(runs, vocabulary, min_df, max_df, max_entries, as_json):
    """Match every caption of RUNS against concept entries (MetaCLIP's substring rule).

    Writes RUN/concepts/concepts.parquet (sample_id, source, row, concepts, concept_vocab,
    template) and concepts.json for each run; one vocabulary serves all RUNS. A recipe's
    [balance] per_concept = T then keeps rows by MetaCLIP's rule.

    \b
    Example:
      curate concepts runs/web runs/human
      curate concepts runs/multi --vocabulary vocab.json
    """
    from curate.mix.concepts import concepts as run_concepts

    local_file(vocabulary, "--vocabulary")

    results = run_concepts(list(runs), vocabulary, min_df, max_df, max_entries)
    if as_json:
        print_json([{k: v for k, v in r.items() if k != "vocabulary"} for r in results])
        return
    for run, r in zip(runs, results):
        top = ", ".join(f"{e['entry']} ({e['rows']:,})" for e in r["top_entries"][:8])
        click.echo(f"{run}: {r['rows_matched']:,} of {r['rows_annotated']:,} rows match an entry; "
                   f"{r['entries_matched']:,} entries matched of {sum(r['vocabulary_source']['entries'].values()):,}; "
                   f"{fmt(r['timings']['rows_per_s'])} rows/s")
        click.echo(f"  commonest: {top}")
        pick = r["tail_shares"]["per_concept_for"]
        if pick:
            click.echo("  per_concept for a tail share (matches on entries with fewer rows) of "
                       + ", ".join(f"{float(p):.0%}: {t:,}" for p, t in pick.items()))


@click.command()
@click.argument("targets", nargs=-1, required=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the tables as JSON.")
@friendly
def balance(targets, as_json):
    """Report the balance of mixtures or runs: concept head/tail curves, openings, distinct-n.

    For a mixture with [balance] per_concept, each source's concept counts at ranks 1, 2,
    5, 10, ... before and after balancing, and the share of matches on tail entries; for
    every mixture or run, the 20 commonest openings per source with distinct-1/2.

    \b
    Example:
      curate balance mixes/balanced
      curate balance runs/long --json
    """
    from curate.report.balance import concept_curves, openings, readable

    out = {}
    for t in targets:
        is_mix = readable(t)[1]
        out[t] = {"concepts": concept_curves(t) if is_mix else {}, "openings": openings(t)}
    if as_json:
        print_json(out)
        return
    for t, d in out.items():
        click.echo(f"== {t}")
        c = d["concepts"]
        if c:
            click.echo(f"concepts (per_concept = {c['per_concept']:,}; {c['tail_entries']:,} of {c['entries']:,} "
                       "entries are tail entries)")
            for name, s in c["sources"].items():
                for side in ("before", "after"):
                    v = s[side]
                    if v:
                        curve = " ".join(f"{p['rank']}:{p['count']}" for p in v["curve"])
                        click.echo(f"  {name:>12} {side:>6}: {v['entries']:,} entries, tail share "
                                   f"{fmt(v['tail_share'])}; rank:count {curve}")
        for src, o in d["openings"].items():
            click.echo(f"  {src}: {o['rows']:,} rows, {o['distinct_openings']:,} distinct openings, "
                       f"distinct-1 {fmt(o.get('distinct_1'))}, distinct-2 {fmt(o.get('distinct_2'))}")
            for x in o["openings"]:
                click.echo(f"      {x['rows']:>8,}  {x['share']:6.1%}  {x['opening']}")


def balance_lines(b: dict | None) -> list[str]:
    """What `curate explain` prints of a row's [balance] facts."""
    if not b:
        return []
    out = []
    if "length" in b:
        out.append(f"length: {b['length']['words']} words, bin {b['length']['bin'] or '(none)'}")
    if "opening" in b:
        out.append(f"opening: {b['opening']['opening']!r} (at most {b['opening']['max_per_opening']:,} per opening)")
    c = b.get("concepts")
    if c:
        shown = ", ".join(f"{x['entry']!r} ({fmt(x['entry_count'])} rows, p {fmt(x['p'])}, u {fmt(x['u'])}"
                          f"{', draws' if x['draws'] else ''})" for x in c["entries"][:12])
        out.append(f"concepts (per_concept {c['per_concept']:,}, vocabulary {c['vocabulary']!r}): {shown or 'none'}")
        if c.get("drawn_by"):
            out.append(f"drawn by concept {c['drawn_by']!r}")
    return out
