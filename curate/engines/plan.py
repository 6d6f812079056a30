"""The work plan: a stage cuts its work into units, an engine only runs them.

A stage plans its units itself, from its inputs, before any engine is involved:

* ``curate dedup``: blocks of vectors to assign to k-means partitions
  (:func:`curate.dedup.index.partition`), parts of the neighbour table and ranges of texts
  (:mod:`curate.dedup.ranges`: split, best neighbour, rounds of pointer jumping);
* ``curate score``: input parts (:func:`curate.scoring.units.plan_units`; a unit is a run
  of row groups whose first row is known from the footer), which the Ray engine hands to
  Ray Data actors that load the chain's models once.

and calls ``run_map(fn, units, shared)``: ``fn(unit, shared)`` for every unit, the results
in the order of the units. ``fn`` is a module-level function (it travels by name), ``shared``
a read-only object that every unit needs (sent once), and a unit talks to the others only
through files, so a unit can run anywhere and run again. An engine is therefore a map and a
session that opens and closes it:

* **local**: :func:`local_map`, the units in turn in this process (the stages' default);
* **Ray**: :func:`ray_map`, one task per unit (``shared`` put in the object store once),
  inside :func:`ray_session`, which starts or joins the cluster once for the whole command.

Another engine (Dask, Spark) is the same two functions: for Dask,
``client.gather(client.map(fn, units, shared=client.scatter(shared, broadcast=True)))`` and a
session that opens a ``Client``; for Spark, ``sc.parallelize(units, len(units)).map(lambda u:
fn(u, bc.value)).collect()`` with ``bc = sc.broadcast(shared)``: about 25 lines and one entry
in :data:`curate.engines.ENGINES`.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator

from curate.dedup.ranges import RunMap, local_map
from curate.engines.ray_runtime import import_ray, quiet_data
from curate.engines.ray_runtime import start as start_ray
from curate.errors import CurateError, first_line

__all__ = ["RunMap", "local_map", "local_session", "ray_map", "ray_session"]

#: attempts of a Ray task whose worker died (a task that raised is not retried)
RAY_RETRIES = 3


def ray_map(fn: Callable, units: list, shared=None) -> list:
    """One Ray task (one CPU) per unit; a worker that dies is replaced and its task rerun."""
    if not units:
        return []
    ray = import_ray()
    task = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(fn)
    ref = ray.put(shared)
    try:
        return ray.get([task.remote(u, ref) for u in units])
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None) or e
        raise CurateError(f"a {fn.__name__} task failed: {first_line(cause)}") from None


def local_session(address: str | None = None):
    """The local engine needs nothing opened: the stages run their own code."""
    return nullcontext(None)


@contextmanager
def ray_session(address: str | None = None) -> Iterator[RunMap]:
    """Start (or join, with ``address``) Ray for one command; yields :func:`ray_map`."""
    ray = import_ray()
    started = start_ray(ray, address)
    try:
        quiet_data(ray)
        yield ray_map
    finally:
        if started:
            ray.shutdown()
