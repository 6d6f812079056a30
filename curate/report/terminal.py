"""What the commands print on a terminal: summary tables (rich)."""
from __future__ import annotations


def summary_table(console, run: dict, title: str) -> None:
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
