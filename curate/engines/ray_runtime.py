"""Ray itself: importing it (an optional extra), starting or joining a cluster, and the
settings every actor gets. Nothing here imports Ray until it is called."""
from __future__ import annotations

import logging
import os

from curate.errors import CurateError, first_line

RAY_INSTALL = "pip install 'curate[ray]'"
#: every actor: one polars thread (one actor per CPU), and no hub downloads
ACTOR_ENV = {"POLARS_MAX_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401  (the [data] extra: pandas, pyarrow, ...)
    except ImportError as e:
        raise CurateError(f"the ray engine needs Ray Data ({e}): {RAY_INSTALL}") from None
    return ray


def local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def start(ray, address: str | None) -> bool:
    """Connect to ``address`` or start a local Ray; True when this call started it."""
    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, ignore_reinit_error=True, log_to_driver=False,
                  logging_level=logging.WARNING)
    try:
        if address:
            ray.init(address=address, **common)
        else:
            ray.init(address="local", num_cpus=local_cpus(), **common)
    except (ConnectionError, ValueError, RuntimeError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise CurateError(f"cannot start or reach {where}: {first_line(e)}") from None
    return True


def quiet_data(ray) -> None:
    """The caller shows progress (the CLI's bar); Ray Data's own bars would draw over it."""
    ctx = ray.data.DataContext.get_current()
    for flag in ("enable_progress_bars", "print_on_execution_start"):
        if hasattr(ctx, flag):
            setattr(ctx, flag, False)
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
