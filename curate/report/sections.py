"""The report's sections: each a (title, HTML) pair built from :mod:`curate.report.explore`
queries, with the numbers behind it stored in ``data`` (which becomes ``report.json``)."""
from __future__ import annotations

import html
import json

import polars as pl

from curate.hashing import recorded_fingerprint
from curate.report import explore as ex
from curate.report import plots
from curate.report.page import diff_cells, img, table

Section = tuple[str, str]


def run_sections(run: ex.Run, data: dict) -> list[Section]:
    """The views of one run: facts, cleaning, distributions, languages, what-if, examples, dups."""
    out = [_facts(run, data)]
    out += _cleaning(run, data)
    out.append(_distributions(run, data))
    langs = ex.languages(run)
    data["languages"] = langs.to_dicts()
    out.append(("Language mix", "<div class='plots'>"
                + img(plots.bars(langs["lang"].to_list(), langs["rows"].to_list(), "rows per language", "rows"), "language mix")
                + f"<div class='plot'>{table(langs)}</div></div>"))
    out.append(_what_if(run, data))
    out.append(_examples(run, data))
    rej = ex.rejected_examples(run, per_reason=5)
    data["rejected_examples"] = rej.select("reason", "sample_id", "source", "row", "caption").to_dicts()
    out.append(("Dropped examples per reason", table(rej.select("reason", "caption", "source", "row"), max_rows=200)))
    if run.dedup is not None:
        groups = ex.duplicate_groups(run, top=10, members=6)
        data["duplicate_groups"] = groups.to_dicts()
        out.append(("Largest duplicate groups",
                    table(groups.select("dup_group", "group_size_total", "is_representative", "caption"), max_rows=80)))
    return out


def _facts(run: ex.Run, data: dict) -> Section:
    info = run.info
    inputs = pl.DataFrame([{**{k: f.get(k) for k in ("source", "format", "rows", "bytes")},
                            "fingerprint": ":".join(recorded_fingerprint(f) or ())} for f in info["inputs"]])
    chain = run.chain
    chain_df = pl.DataFrame([
        {"id": s.id, "filter": s.filter.ident, "min": s.min, "max": s.max,
         "allow": ", ".join(s.allow) if s.allow else None, "params": json.dumps(s.filter.p)}
        for s in chain.steps
    ])
    facts = (
        f"<p>curate {html.escape(str(info.get('curate_version')))} · chain <code>{html.escape(chain.name)}</code> · "
        f"{info['rows']:,} rows · {info['kept']:,} kept ({100 * info['kept'] / max(info['rows'], 1):.1f}%) · "
        f"scored at {info['timings']['rows_per_s']:,.0f} rows/s · models: "
        + ", ".join(f"<code>{html.escape(k)}</code> sha256 {v[:12]}…" for k, v in info.get("model_files", {}).items())
        + "</p>"
    )
    reasons = ex.reason_counts(run)
    data["reasons"] = reasons.to_dicts()
    bar = plots.bars(reasons["reason"].to_list(), reasons["rows"].to_list(), "rows per reason", "rows")
    return ("Run facts", f"{facts}<h3>Inputs</h3>{table(inputs, max_rows=20)}"
            + (f"<p>… and {inputs.height - 20:,} more input files</p>" if inputs.height > 20 else "")
            + f"<h3>Chain</h3>{table(chain_df)}<h3>Rows per reason</h3>"
            f"<div class='plots'>{img(bar, 'rows per reason')}<div class='plot'>{table(reasons)}</div></div>")


def _distributions(run: ex.Run, data: dict) -> Section:
    steps = {s.column: s for s in run.chain.steps}
    figs, hist = [], {}
    for col in run.score_columns:
        axis = ex.score_axis(run, col)
        h = ex.histograms(run, col, axis)
        if h.height == 0:
            continue
        hist[col] = {"axis": axis, "bins": h.to_dicts()}
        st = steps.get(col)
        figs.append(img(plots.histogram(h, col, axis, st.min if st else None, st.max if st else None), f"histogram {col}"))
    data["histograms"] = hist
    return ("Score distributions per source",
            "<p>One line per source (files named alike, such as numbered shards, are one source). Axes span "
            "0.5% to 99.5% of the scores; rows beyond are counted in the title. Red lines: the chain's min "
            f"(dashed) and max (dotted).</p><div class='plots'>{''.join(figs)}</div>")


def _what_if(run: ex.Run, data: dict) -> Section:
    figs, wi = [], {}
    for s in run.chain.steps:
        if s.column not in run.score_columns:
            continue
        w = ex.what_if(run, s.id)
        wi[s.id] = w.to_dicts()
        figs.append(img(plots.what_if(w, f"kept as {s.id} moves"), f"what-if {s.id}"))
    data["what_if"] = wi
    return ("What if: rows kept as each threshold moves",
            "<p>The other filters keep their thresholds; every point is counted by the rule "
            f"<code>curate decide</code> applies.</p><div class='plots'>{''.join(figs)}</div>")


def _examples(run: ex.Run, data: dict) -> Section:
    ex_df = ex.examples(run)
    data["examples"] = ex_df.to_dicts()
    parts = []
    for src in ex_df["source"].unique(maintain_order=True).to_list():
        sub = ex_df.filter(pl.col("source") == src)
        kept = sub.filter(pl.col("keep")).select("caption")
        dropped = sub.filter(~pl.col("keep")).select("reason", "caption")
        parts.append(f"<h3>{html.escape(str(src))}</h3><div class='pair'><div><h4>kept</h4>{table(kept)}</div>"
                     f"<div><h4>dropped</h4>{table(dropped)}</div></div>")
    return ("Kept and dropped examples per source", "".join(parts))


def _cleaning(run: ex.Run, data: dict, per_op: int = 3) -> list[Section]:
    """Rows changed per transform with before/after examples (what was removed struck out,
    what was added underlined), and the model-caption signals (run.json's ``cleaning`` and
    ``model_signals``; absent for runs scored before cleaning)."""
    info = run.info
    if "cleaning" not in info:
        return []
    per = info["cleaning"]["per_transform"]
    names = [t.name for t in run.chain.clean] or sorted(per)
    counts = pl.DataFrame({"transform": names, "rows changed": [per.get(n, 0) for n in names]},
                          schema={"transform": pl.String, "rows changed": pl.Int64})
    frames = [run.scores.filter(pl.col("clean_ops").list.contains(n)).with_columns(ex.sample_key().alias("_k"))
              .sort("_k").head(per_op).select(pl.lit(n).alias("transform"), "caption", "caption_clean")
              for n in names if per.get(n)]
    examples = (pl.concat(frames).collect() if frames else
                pl.DataFrame(schema={"transform": pl.String, "caption": pl.String, "caption_clean": pl.String}))
    data["cleaning"] = {**info["cleaning"], "examples": examples.rename({"caption": "before", "caption_clean": "after"}).to_dicts()}
    sig = info["model_signals"]
    data["model_signals"] = sig
    openings = pl.DataFrame(sig["openings"], schema={"words": pl.String, "rows": pl.Int64, "share": pl.Float64})
    warn = ("<p><b>Template:</b> the most common opening starts "
            f"{100 * sig['openings'][0]['share']:.0f}% of captions; the <code>synthetic</code> chain's "
            "<code>preamble</code> transform removes model openers.</p>" if sig.get("template") else "")
    return [("Cleaning",
             f"<p>{info['cleaning']['rows_changed']:,} rows changed; the filters scored <code>caption_clean</code>, "
             f"<code>caption</code> is kept as read.</p>{table(counts)}"
             "<h3>Before and after</h3><p>Removed text is <del>struck out</del>, added text <ins>underlined</ins>; "
             "changed white space shows as · (space), ⏎ (line break), → (tab).</p>"
             + (diff_cells(examples) if examples.height else "<p>No caption needed repair.</p>")
             + f"<h3>Model-caption signals</h3><p>cut off mid-sentence {100 * sig['truncated']:.1f}% · hedging "
             f"{100 * sig['hedging']:.1f}% · markdown left {100 * sig['markdown']:.1f}%</p>{warn}"
             f"<h3>Most common openings (first words of caption_clean)</h3>{table(openings)}")]


def mix_sections(mix: ex.Mix, data: dict) -> list[Section]:
    comp = ex.mix_composition(mix)
    data["composition"] = comp.to_dicts()
    info = mix.info
    src = "run" if "run" in comp.columns else "source"
    per_src = comp.group_by(src).agg(pl.col("rows").sum()).sort(src)
    figs = [img(plots.bars(per_src[src].cast(pl.String).to_list(), per_src["rows"].to_list(),
                           "selected rows per source", "rows"), "mixture by source")]
    if "quality_bucket" in comp.columns:
        figs.append(img(plots.quality_buckets(comp, src), "mixture by quality bucket"))
    facts = {
        "mixture": info.get("mixture"), "name": info.get("name"), "rows": (info.get("counts") or {}).get("rows"),
        "recipe_sha256": info.get("recipe_sha256"), "curate_version": info.get("curate_version"),
    }
    facts_df = pl.DataFrame({"fact": list(facts), "value": [str(v) for v in facts.values()]})
    picked = ex.mix_examples(mix)
    data["selected_examples"] = picked.to_dicts()
    return [("Mixture", table(facts_df)),
            ("Composition", f"<div class='plots'>{''.join(figs)}</div>{table(comp)}"),
            ("Selected examples per source", table(picked, caption_cols=("caption", "caption_clean")))]
