"""Engines that run ``curate score``: ``local`` (processes on this machine, in
:mod:`curate.run`) and ``ray`` (Ray Data, in :mod:`curate.engines.ray_engine`); ``curate
dedup`` runs its embedding and search stages on Ray with :mod:`curate.engines.ray_dedup`.

Both write the same parts with the same rows; the engine only decides where the work runs.
Ray is an optional extra: nothing here imports it.
"""
from __future__ import annotations

from importlib.util import find_spec

from ..errors import CurateError

ENGINES = ("local", "ray")
RAY_INSTALL = "pip install 'curate[ray]'"


def check_engine(engine: str, address: str | None = None) -> None:
    """Fail before any work when ``engine`` is unknown or not installed."""
    if engine not in ENGINES:
        raise CurateError(f"unknown engine {engine!r}; valid engines: {', '.join(ENGINES)}")
    if address and engine != "ray":
        raise CurateError("an address is for the ray engine; add --engine ray")
    if engine == "ray" and find_spec("ray") is None:
        raise CurateError(f"the ray engine needs Ray, which is not installed: {RAY_INSTALL}")
