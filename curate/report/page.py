"""The report's HTML pieces: style, tables, embedded images, before/after diffs, and the page
with a section index (a run) or one tab per part (a mixture and each of its runs).

Pure HTML and CSS: no script, nothing fetched, so the file opens anywhere."""
from __future__ import annotations

import difflib
import html
import re

import polars as pl

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d1e0;font-size:13px}
main{max-width:1180px;margin:0 auto;padding:16px 32px 48px}
section{background:#fff;border:1px solid #e3e6ec;border-radius:8px;padding:16px 20px;margin:18px 0;scroll-margin-top:12px}
h2{font-size:18px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}h4{font-size:13px;margin:6px 0;color:#56607a}
table{border-collapse:collapse;font-size:13px;margin:6px 0}td,th{border-bottom:1px solid #eceff3;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f1f3f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plot{flex:1 1 520px}
.pair{display:flex;flex-wrap:wrap;gap:16px}.pair>div{flex:1 1 480px;min-width:0}
img.plot-img{max-width:100%;height:auto;border:1px solid #eceff3;border-radius:4px}
.cap{max-width:640px;overflow-wrap:anywhere}code{background:#f1f3f6;padding:1px 4px;border-radius:3px}
del{background:#fbd3d0;color:#8a1c12}ins{background:#d3f2d8;color:#145a24;text-decoration:underline}
nav.toc{font-size:13px;margin:8px 0 0;line-height:1.9}nav.toc a{color:#2c5aa0;margin-right:14px;text-decoration:none}
.tabs>input{position:absolute;opacity:0}.tabs>label{display:inline-block;padding:8px 16px;margin:12px 4px 0 0;
background:#e3e6ec;border-radius:8px 8px 0 0;cursor:pointer;font-weight:600;font-size:14px}
.tabs>input:checked+label{background:#1d2330;color:#fff}.tabs>.panel{display:none;border-top:3px solid #1d2330}
"""
#: changed white space made visible inside a diff
VISIBLE = {" ": "·", "\n": "⏎", "\t": "→", "\u00a0": "⍽"}


def img(b64: str, alt: str) -> str:
    return f'<div class="plot"><img class="plot-img" alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"></div>'


def _cell(c: str, v, caption_cols, raw_cols) -> str:
    if c in raw_cols:
        return f'<td class="cap">{v}</td>'
    if isinstance(v, float):
        return f'<td class="num">{v:,.4g}</td>'
    if isinstance(v, int) and not isinstance(v, bool):
        return f'<td class="num">{v:,}</td>'
    text = "" if v is None else str(v)
    if c in caption_cols and len(text) > 300:
        text = text[:300] + "…"
    cls = ' class="cap"' if c in caption_cols else ""
    return f"<td{cls}>{html.escape(text)}</td>"


def table(df: pl.DataFrame, max_rows: int = 50, caption_cols: tuple[str, ...] = ("caption",),
          raw_cols: tuple[str, ...] = ()) -> str:
    """A bounded, already aggregated table for display (``raw_cols`` hold HTML already)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in df.columns)
    rows = ["<tr>" + "".join(_cell(c, v, caption_cols, raw_cols) for c, v in zip(df.columns, r)) + "</tr>"
            for r in df.head(max_rows).iter_rows()]
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _shown(text: str, changed: bool) -> str:
    """A changed stretch of text with its white space made visible (a few characters)."""
    return html.escape("".join(VISIBLE.get(ch, ch) for ch in text) if changed else text)


def _context(text: str, first: bool, last: bool, keep: int) -> str:
    """An unchanged stretch cut to ``keep`` characters beside each change ("…" for the rest)."""
    if first and not last and len(text) > keep:
        text = "…" + text[-keep:]
    elif last and not first and len(text) > keep:
        text = text[:keep] + "…"
    elif not first and not last and len(text) > 2 * keep + 1:
        text = text[:keep] + "…" + text[-keep:]
    return html.escape(text)


def diff_pair(before: str, after: str, keep: int = 60) -> tuple[str, str]:
    """``before`` with what cleaning removed in ``<del>``, ``after`` with what it added in
    ``<ins>`` (a character diff; changed white space made visible; unchanged text cut to
    ``keep`` characters beside each change)."""
    a, b = [], []
    ops = difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes()
    for n, (tag, i1, i2, j1, j2) in enumerate(ops):
        if tag == "equal":
            same = _context(before[i1:i2], n == 0, n == len(ops) - 1, keep)
            a.append(same)
            b.append(same)
            continue
        if i2 > i1:
            a.append(f"<del>{_shown(before[i1:i2], True)}</del>")
        if j2 > j1:
            b.append(f"<ins>{_shown(after[j1:j2], True)}</ins>")
    return "".join(a), "".join(b)


def diff_cells(examples: pl.DataFrame, limit: int = 5000) -> str:
    """A transform | before | after table with the differences marked (display only: a few rows)."""
    rows = [(t, *diff_pair((b or "")[:limit], (a or "")[:limit])) for t, b, a in
            examples.select("transform", "caption", "caption_clean").iter_rows()]
    df = pl.DataFrame(rows, schema={"transform": pl.String, "before": pl.String, "after": pl.String}, orient="row")
    return table(df, max_rows=60, raw_cols=("before", "after"))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "part"


def _panel(sections: list[tuple[str, str]], prefix: str) -> str:
    ids = [f"{prefix}-{i}-{_slug(t)}" for i, (t, _) in enumerate(sections)]
    toc = "".join(f'<a href="#{i}">{html.escape(t)}</a>' for i, (t, _) in zip(ids, sections))
    body = "".join(f'<section id="{i}"><h2>{html.escape(t)}</h2>{h}</section>' for i, (t, h) in zip(ids, sections))
    return f'<nav class="toc">{toc}</nav>{body}'


def render(title: str, subtitle: str, parts: list[tuple[str, list[tuple[str, str]]]], report_id: str = "") -> str:
    """The whole page: one part is laid out with an index of its sections; several become tabs.
    ``report_id`` ties the page to the ``report.json`` written with it."""
    if len(parts) == 1:
        main = _panel(parts[0][1], "s")
        css = CSS
    else:
        tabs, rules = [], []
        for i, (name, sections) in enumerate(parts):
            checked = " checked" if i == 0 else ""
            tabs.append(f'<input type="radio" name="tab" id="tab{i}"{checked}><label for="tab{i}">{html.escape(name)}</label>')
            rules.append(f"#tab{i}:checked~#panel{i}")
        panels = "".join(f'<div class="panel" id="panel{i}">{_panel(s, f"p{i}")}</div>' for i, (_, s) in enumerate(parts))
        main = f'<div class="tabs">{"".join(tabs)}{panels}</div>'
        css = CSS + ",".join(rules) + "{display:block}"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<meta name='curate-report-id' content='{html.escape(report_id)}'><style>{css}</style></head><body><header><h1>{html.escape(title)}</h1>"
            f"<p>{html.escape(subtitle)}</p></header><main>{main}</main></body></html>")
