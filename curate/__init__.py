"""curate: curate image-caption training data.

The Python API that the CLI and the notebooks share::

    import curate
    run = curate.open_run("runs/web")          # scores as a polars LazyFrame: run.scores
    curate.reason_counts(run)                  # rows per reason
    curate.what_if(run, "specificity")         # rows kept as a threshold moves
    curate.redecide(run, "english-strict")     # other thresholds, nothing written
    curate.rejected_examples(run)              # dropped captions per reason
    curate.examples(run)                       # kept and dropped captions per source
    curate.duplicate_groups(run)               # largest near-duplicate groups
    df = curate.score(pl.DataFrame({"caption": [...]}))   # score a DataFrame

Import is light on purpose: names load on first use, and heavy libraries (torch,
sentence-transformers, faiss) load only where they are used.
"""
from __future__ import annotations

from curate.version import __version__

_API = {
    "CurateError": "errors",
    "load_chain": "scoring.chain",
    "decide": "scoring.decision",
    "open_run": "report.explore",
    "open_mix": "report.explore",
    "score": "report.explore",
    "redecide": "report.explore",
    "reason_counts": "report.explore",
    "histograms": "report.explore",
    "score_axis": "report.explore",
    "examples": "report.explore",
    "mix_examples": "report.explore",
    "languages": "report.explore",
    "what_if": "report.explore",
    "rejected_examples": "report.explore",
    "duplicate_groups": "report.explore",
    "mix_composition": "report.explore",
    "score_files": ("engines", "score"),
    "decide_run": "scoring.decide",
    "ScoreOptions": "scoring.runner",
    "dedup": ("engines", "dedup"),
    "DedupOptions": "dedup.run",
    "build_mixture": "mix.build",
    "export": "export.shards",
    "explain": "audit.explain",
    "verify": "audit.verify",
    "diff": "audit.diff",
    "build_report": "report.html",
    "pinned_run": "layout",
    "pinned_scores_glob": "layout",
    "pinned_groups": "layout",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str):
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'curate' has no attribute {name!r}")
    module, attr = target if isinstance(target, tuple) else (target, name)
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), attr)
    globals()[name] = value
    return value


def __dir__():
    return __all__
