"""curate: curate image-caption training data.

The Python API that the CLI and the notebooks share::

    import curate
    run = curate.open_run("runs/web")          # scores as a polars LazyFrame: run.scores
    curate.reason_counts(run)                  # rows per reason
    curate.what_if(run, "specificity")         # rows kept as a threshold moves
    curate.redecide(run, "english-strict")     # other thresholds, nothing written
    curate.rejected_examples(run)              # dropped captions per reason
    curate.duplicate_groups(run)               # largest near-duplicate groups
    df = curate.score(pl.DataFrame({"caption": [...]}))   # score a DataFrame

Import is light on purpose: names load on first use, and heavy libraries (torch,
sentence-transformers, faiss) load only where they are used.
"""
from __future__ import annotations

__version__ = "0.1.0"

_API = {
    "CurateError": "errors",
    "load_chain": "chain",
    "decide": "chain",
    "open_run": "explore",
    "open_mix": "explore",
    "score": "explore",
    "redecide": "explore",
    "reason_counts": "explore",
    "histograms": "explore",
    "languages": "explore",
    "what_if": "explore",
    "rejected_examples": "explore",
    "duplicate_groups": "explore",
    "mix_composition": "explore",
    "score_files": ("run", "score"),
    "decide_run": "run",
    "ScoreOptions": "run",
    "build_report": "report",
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
