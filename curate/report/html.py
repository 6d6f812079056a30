"""``curate report``: one self-contained HTML file (plots embedded, no network) + report.json.

The numbers come from :mod:`curate.report.explore`; the plots are drawn with matplotlib and
embedded as base64 PNG. ``report.json`` holds the numbers behind every plot and table.

The two files always come from one report: they are written aside and switch together
(``report.html`` and ``report.json`` are links into a hidden version folder,
:class:`curate.layout.Snapshot`), under a lock on ``--out``, so a second report to the
same file while one runs gets a one-line error.
"""
from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from pathlib import Path

import polars as pl

from curate.atomic import write_json, write_text
from curate.errors import CurateError
from curate.layout import RUN_JSON, SCORES, Snapshot, lock_output
from curate.report import explore as ex
from curate.version import __version__

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d1e0;font-size:13px}
main{max-width:1180px;margin:0 auto;padding:16px 32px 48px}
section{background:#fff;border:1px solid #e3e6ec;border-radius:8px;padding:16px 20px;margin:18px 0}
h2{font-size:18px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border-bottom:1px solid #eceff3;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f1f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{flex:1 1 520px}
img.plot-img{max-width:100%;height:auto;border:1px solid #eceff3;border-radius:4px}
.cap{max-width:640px;overflow-wrap:anywhere}code{background:#f1f3f6;padding:1px 4px;border-radius:3px}
"""


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _img(b64: str, alt: str) -> str:
    return f'<div class="plot"><img class="plot-img" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"></div>'


def _table(df: pl.DataFrame, max_rows: int = 50, caption_cols: tuple[str, ...] = ("caption",)) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = []
    for r in df.head(max_rows).iter_rows():  # a bounded, already-aggregated table for display
        cells = []
        for c, v in zip(df.columns, r):
            if isinstance(v, float):
                cells.append(f'<td class="num">{v:,.4g}</td>')
            elif isinstance(v, int) and not isinstance(v, bool):
                cells.append(f'<td class="num">{v:,}</td>')
            else:
                text = "" if v is None else str(v)
                if c in caption_cols and len(text) > 300:
                    text = text[:300] + "…"
                cls = ' class="cap"' if c in caption_cols else ""
                cells.append(f"<td{cls}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hist_plot(df: pl.DataFrame, column: str, by: str, lo, hi) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, 3.2))
    for name in df[by].unique().sort().to_list():
        sub = df.filter(pl.col(by) == name)
        total = max(int(sub["rows"].sum()), 1)
        centers = ((sub["bin_lo"] + sub["bin_hi"]) / 2).to_list()
        ax.plot(centers, (sub["rows"] / total).to_list(), drawstyle="steps-mid", label=Path(str(name)).name[:40])
    for v, style in ((lo, "--"), (hi, ":")):
        if v is not None:
            ax.axvline(v, color="#c0392b", linestyle=style, linewidth=1.2)
    ax.set_title(column)
    ax.set_ylabel("share of rows")
    if df[by].n_unique() <= 8:
        ax.legend(fontsize=7)
    return _png(fig)


def _bar_plot(labels: list[str], values: list[float], title: str, xlabel: str = "") -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, max(2.2, 0.28 * len(labels) + 0.8)))
    ax.barh(labels[::-1], values[::-1], color="#3b6fb6")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _png(fig)


def _line_plot(df: pl.DataFrame, title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, 3.2))
    ax.plot(df["threshold"].to_list(), df["kept_share"].to_list(), marker="o", markersize=3)
    cur = df["current"][0] if df.height else None
    if cur is not None:
        ax.axvline(cur, color="#c0392b", linestyle="--", linewidth=1.2, label=f"current {df['bound'][0]} = {cur:g}")
        ax.legend(fontsize=8)
    ax.set_xlabel(f"{df['bound'][0] if df.height else ''} threshold")
    ax.set_ylabel("share of rows kept")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    return _png(fig)


def run_sections(run: ex.Run, data: dict, title_prefix: str = "") -> list[str]:
    """The views of one run: facts, reasons, histograms, languages, what-if, rejects, dups."""
    info = run.info
    out: list[str] = []
    inputs = pl.DataFrame([{k: f.get(k) for k in ("source", "format", "rows", "bytes", "blake2b")} for f in info["inputs"]])
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
    out.append(
        f"<section><h2>{title_prefix}Run facts</h2>{facts}<h3>Inputs</h3>{_table(inputs)}"
        f"<h3>Chain</h3>{_table(chain_df)}<h3>Rows per reason</h3>"
        f"<div class='plots'>{_img(_bar_plot(reasons['reason'].to_list(), reasons['rows'].to_list(), 'rows per reason', 'rows'), 'rows per reason')}"
        f"<div class='plot'>{_table(reasons)}</div></div></section>"
    )
    out += _cleaning_section(run, data, title_prefix)
    # histograms per source
    steps = {s.column: s for s in chain.steps}
    plots, hist_data = [], {}
    for col in run.score_columns:
        h = ex.histograms(run, col)
        if h.height == 0:
            continue
        hist_data[col] = h.to_dicts()
        st = steps.get(col)
        plots.append(_img(_hist_plot(h, col, "source", st.min if st else None, st.max if st else None), f"histogram {col}"))
    data["histograms"] = hist_data
    out.append(f"<section><h2>{title_prefix}Score distributions per source</h2>"
               "<p>Red lines: the chain's min (dashed) and max (dotted).</p>"
               f"<div class='plots'>{''.join(plots)}</div></section>")
    # languages
    langs = ex.languages(run)
    data["languages"] = langs.to_dicts()
    out.append(f"<section><h2>{title_prefix}Language mix</h2><div class='plots'>"
               f"{_img(_bar_plot(langs['lang'].to_list(), langs['rows'].to_list(), 'rows per language', 'rows'), 'language mix')}"
               f"<div class='plot'>{_table(langs)}</div></div></section>")
    # what-if
    plots, wi = [], {}
    for s in chain.steps:
        if s.column not in run.score_columns:
            continue
        w = ex.what_if(run, s.id)
        wi[s.id] = w.to_dicts()
        plots.append(_img(_line_plot(w, f"kept as {s.id} moves"), f"what-if {s.id}"))
    data["what_if"] = wi
    out.append(f"<section><h2>{title_prefix}What if: rows kept as each threshold moves</h2>"
               "<p>The other filters keep their thresholds.</p>"
               f"<div class='plots'>{''.join(plots)}</div></section>")
    rej = ex.rejected_examples(run, per_reason=5)
    data["rejected_examples"] = rej.select("reason", "sample_id", "source", "row", "caption").to_dicts()
    out.append(f"<section><h2>{title_prefix}Rejected examples per reason</h2>"
               f"{_table(rej.select('reason', 'caption', 'source', 'row'), max_rows=200)}</section>")
    if run.dedup is not None:
        groups = ex.duplicate_groups(run, top=10, members=6)
        data["duplicate_groups"] = groups.to_dicts()
        out.append(f"<section><h2>{title_prefix}Largest duplicate groups</h2>"
                   f"{_table(groups.select('dup_group', 'group_size_total', 'is_representative', 'caption'), max_rows=80)}</section>")
    return out


def _cleaning_section(run: ex.Run, data: dict, title_prefix: str, per_op: int = 3) -> list[str]:
    """Rows changed per transform with before/after examples, and the model-caption signals
    (run.json's ``cleaning`` and ``model_signals``; absent for runs scored before cleaning)."""
    info = run.info
    if "cleaning" not in info:
        return []
    per = info["cleaning"]["per_transform"]
    names = [t.name for t in run.chain.clean] or sorted(per)
    counts = pl.DataFrame({"transform": names, "rows changed": [per.get(n, 0) for n in names]},
                          schema={"transform": pl.String, "rows changed": pl.Int64})
    ex_rows = []
    for n in names:
        if per.get(n):
            got = (run.scores.filter(pl.col("clean_ops").list.contains(n)).select("caption", "caption_clean")
                   .head(per_op).collect())
            ex_rows += [{"transform": n, "before": b, "after": a} for b, a in got.iter_rows()]
    examples = pl.DataFrame(ex_rows, schema={"transform": pl.String, "before": pl.String, "after": pl.String})
    sig = info["model_signals"]
    openings = pl.DataFrame(sig["openings"], schema={"words": pl.String, "rows": pl.Int64, "share": pl.Float64})
    data["cleaning"] = {**info["cleaning"], "examples": examples.to_dicts()}
    data["model_signals"] = sig
    warn = ("<p><b>Template:</b> the most common opening starts "
            f"{100 * sig['openings'][0]['share']:.0f}% of captions; the <code>synthetic</code> chain's "
            "<code>preamble</code> transform removes model openers.</p>" if sig.get("template") else "")
    return [
        f"<section><h2>{title_prefix}Cleaning</h2><p>{info['cleaning']['rows_changed']:,} rows changed; the filters "
        "scored <code>caption_clean</code>, <code>caption</code> is kept as read.</p>"
        f"{_table(counts)}<h3>Before and after</h3>{_table(examples, max_rows=60, caption_cols=('before', 'after'))}"
        f"<h3>Model-caption signals</h3><p>cut off mid-sentence {100 * sig['truncated']:.1f}% · hedging "
        f"{100 * sig['hedging']:.1f}% · markdown left {100 * sig['markdown']:.1f}%</p>{warn}"
        f"<h3>Most common openings (first words of caption_clean)</h3>{_table(openings)}</section>"
    ]


def mix_sections(mix: ex.Mix, data: dict) -> list[str]:
    comp = ex.mix_composition(mix)
    data["composition"] = comp.to_dicts()
    info = mix.info
    src = "run" if "run" in comp.columns else "source"
    per_src = comp.group_by(src).agg(pl.col("rows").sum()).sort(src)
    plots = [_img(_bar_plot(per_src[src].cast(pl.String).to_list(), per_src["rows"].to_list(), "selected rows per source", "rows"), "mixture by source")]
    if "quality_bucket" in comp.columns:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(6.2, 3.2))
        names = comp[src].unique().sort().to_list()
        nb = int(comp["quality_bucket"].max()) + 1
        bottom = [0] * nb
        for name in names:
            sub = comp.filter(pl.col(src) == name).sort("quality_bucket")
            vals = [0] * nb
            for b, r in zip(sub["quality_bucket"].to_list(), sub["rows"].to_list()):
                vals[b] = r
            ax.bar(range(nb), vals, bottom=bottom, label=str(name))
            bottom = [x + y for x, y in zip(bottom, vals)]
        ax.set_xlabel("quality bucket (quantiles of the mixture's quality, low to high)")
        ax.set_ylabel("rows")
        ax.set_title("composition by quality bucket")
        ax.legend(fontsize=7)
        plots.append(_img(_png(fig), "mixture by quality bucket"))
    facts = {
        "mixture": info.get("mixture"), "name": info.get("name"), "rows": (info.get("counts") or {}).get("rows"),
        "recipe_sha256": info.get("recipe_sha256"), "curate_version": info.get("curate_version"),
    }
    facts_df = pl.DataFrame({"fact": list(facts), "value": [str(v) for v in facts.values()]})
    return [f"<section><h2>Mixture</h2>{_table(facts_df)}"
            f"<div class='plots'>{''.join(plots)}</div>{_table(comp)}</section>"]


def _mix_runs(mix: ex.Mix) -> list[tuple[str, Path]]:
    out = []
    for s in mix.info.get("inputs", []) or []:
        p = s.get("run")
        name = s.get("name", p)
        if p:
            pp = Path(p)
            if not pp.is_absolute():
                pp = (mix.path / pp) if (mix.path / pp / RUN_JSON).is_file() else pp
            if (pp / RUN_JSON).is_file():
                out.append((str(name), pp))
    return out


def build_report(target: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write the HTML report of a run or a mixture to ``out`` and its numbers beside it
    (``report.html`` -> ``report.json``), both switched in together."""
    out = Path(os.path.abspath(out))
    json_path = out.with_suffix(".json")  # report.html -> report.json
    if json_path == out or not out.name:
        raise CurateError(f"--out {out}: give an HTML file name (its numbers go beside it as .json)")
    if out.is_dir():
        raise CurateError(f"--out {out} is a folder; give an HTML file name such as {out / 'report.html'}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CurateError(f"cannot write to {out.parent}: {e.strerror or e}") from None
    with lock_output(out):
        doc, data, kind, n = _render(Path(target))
        snap = Snapshot(out.parent, (out.name, json_path.name), prefix=f".{out.name}")
        version = snap.stage()
        try:
            write_json(data, version / json_path.name)
            write_text(doc, version / out.name)
        except BaseException:
            snap.drop_others()
            raise
        snap.commit(version)
    return {"html": str(out), "json": str(json_path), "sections": n, "kind": kind}


def _render(target: Path) -> tuple[str, dict, str, int]:
    """(HTML, numbers, "run" or "mixture", sections) of a run or mixture's report."""
    data: dict = {"curate_version": __version__, "target": str(target),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "report_id": f"{time.time_ns():x}-{os.getpid()}"}  # the HTML carries it too
    if (target / "manifest.json").is_file():
        mix = ex.open_mix(target)
        kind = "mixture"
        sections = mix_sections(mix, data)
        data["runs"] = {}
        for name, path in _mix_runs(mix):
            data["runs"][name] = {}
            sections += run_sections(ex.open_run(path), data["runs"][name], title_prefix=f"{name}: ")
    elif (target / RUN_JSON).is_file() or (target / SCORES).exists():
        kind = "run"
        sections = run_sections(ex.open_run(target), data)
    else:
        raise CurateError(f"{target}: not a run (run.json) or a mixture (manifest.json)")
    title = f"curate report: {kind} {target.name}"
    doc = (
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<meta name='curate-report-id' content='{data['report_id']}'><style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1>"
        f"<p>{html.escape(str(target))} · generated {data['created']} · curate {__version__}</p></header>"
        f"<main>{''.join(sections)}</main></body></html>"
    )
    return doc, data, kind, len(sections)
