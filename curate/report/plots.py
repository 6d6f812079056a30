"""The report's plots, drawn with matplotlib and returned as base64 PNG (no network, no files)."""
from __future__ import annotations

import base64
import io

import polars as pl

#: one colour per source, in order (matplotlib's tab10, which reads well on white)
COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf"]
WIDE = (6.2, 3.2)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    _plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def histogram(df: pl.DataFrame, column: str, axis: dict, lo_line, hi_line) -> str:
    """One step line per source (share of its rows per bin) on the clipped axis, the chain's
    thresholds as red lines, and the rows outside the axis in the title."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=WIDE)
    import numpy as np

    names = df["source"].unique().sort().to_list()
    edges = np.linspace(axis["lo"], axis["hi"], axis["bins"] + 1)
    width = (axis["hi"] - axis["lo"]) / axis["bins"]
    for i, name in enumerate(names):
        sub = df.filter(pl.col("source") == name)
        share = np.zeros(axis["bins"])  # every bin, the empty ones too
        at = np.clip(np.rint((sub["bin_lo"].to_numpy() - axis["lo"]) / width).astype(np.int64), 0, axis["bins"] - 1)
        share[at] = sub["rows"].to_numpy() / max(int(sub["rows"].sum()), 1)
        ax.stairs(share, edges, color=COLOURS[i % len(COLOURS)], label=str(name)[:40], linewidth=1.4)
    for v, style in ((lo_line, "--"), (hi_line, ":")):
        if v is not None and axis["lo"] <= v <= axis["hi"]:
            ax.axvline(v, color="#c0392b", linestyle=style, linewidth=1.2)
    ax.set_xlim(axis["lo"], axis["hi"])
    out = [f"{axis[k]:,} {k}" for k in ("below", "above") if axis[k]]
    ax.set_title(column + (f"  ({', '.join(out)} the axis)" if out else ""), fontsize=10)
    ax.set_ylabel("share of the source's rows")
    if 1 < len(names) <= 10:
        ax.legend(fontsize=7)
    return png(fig)


def bars(labels: list[str], values: list[float], title: str, xlabel: str = "") -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.2, max(2.2, 0.28 * len(labels) + 0.8)))
    ax.barh(labels[::-1], values[::-1], color="#3b6fb6")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return png(fig)


def what_if(df: pl.DataFrame, title: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=WIDE)
    ax.plot(df["threshold"].to_list(), df["kept_share"].to_list(), marker="o", markersize=3, drawstyle="steps-post")
    cur = df["current"][0] if df.height else None
    if cur is not None and df["threshold"].min() <= cur <= df["threshold"].max():
        ax.axvline(cur, color="#c0392b", linestyle="--", linewidth=1.2, label=f"current {df['bound'][0]} = {cur:g}")
        ax.legend(fontsize=8)
    ax.set_xlabel(f"{df['bound'][0] if df.height else ''} threshold (0.5% to 99.5% of the scores)")
    ax.set_ylabel("share of rows kept")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    return png(fig)


def quality_buckets(comp: pl.DataFrame, src: str) -> str:
    """Selected rows per quality bucket, stacked by source."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=WIDE)
    nb = int(comp["quality_bucket"].max()) + 1
    wide = (comp.pivot(on=src, index="quality_bucket", values="rows", aggregate_function="sum")
            .join(pl.DataFrame({"quality_bucket": list(range(nb))}, schema={"quality_bucket": comp["quality_bucket"].dtype}),
                  on="quality_bucket", how="right").sort("quality_bucket").fill_null(0))
    bottom = [0] * nb
    for i, name in enumerate(c for c in wide.columns if c != "quality_bucket"):
        vals = wide[name].to_list()
        ax.bar(range(nb), vals, bottom=bottom, label=str(name), color=COLOURS[i % len(COLOURS)])
        bottom = [x + y for x, y in zip(bottom, vals)]
    ax.set_xlabel("quality bucket (quantiles of the mixture's quality, low to high)")
    ax.set_ylabel("rows")
    ax.set_title("composition by quality bucket")
    ax.legend(fontsize=7)
    return png(fig)
