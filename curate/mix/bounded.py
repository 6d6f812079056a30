"""The mixture query in a child process, under a memory limit and a time limit.

Recipe SQL is user code: one expression (``len(range(300000000))``, ``repeat('x', 1e9)``)
can allocate gigabytes inside a single DuckDB function call, where neither DuckDB's own
``memory_limit`` (it bounds the buffer pool, not a function's result) nor an interrupt
(checked between vectors, not inside one) reaches it. So the mix runs in a spawned child:
the parent reads the child's resident memory (``/proc/PID/statm``) every few milliseconds
and kills it past the limit, or when the time is up, and says in one line which step
(which source's expressions) was running. DuckDB inside the child gets a ``memory_limit``
below the kill line, so an ordinary large query spills to disk instead of being killed.

The child dies with its parent (``PR_SET_PDEATHSIG``). Without ``/proc`` (not Linux) only
the time limit holds.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from typing import Any, Callable

from curate.errors import CurateError, error_line
from curate.memory import die_with_parent, how_it_ended
#: how often the parent looks at the child's memory, in seconds
POLL_S = 0.02
#: DuckDB's memory_limit inside the child, as a share of the kill line
DUCKDB_SHARE = 0.6


def parse_size(text: str | int) -> int:
    """``"4GB"``, ``"512MB"``, ``"2GiB"`` or a number of bytes, as bytes."""
    if isinstance(text, int):
        return text
    s = str(text).strip().upper().replace(" ", "")
    units = {"TIB": 1 << 40, "GIB": 1 << 30, "MIB": 1 << 20, "KIB": 1 << 10,
             "TB": 10**12, "GB": 10**9, "MB": 10**6, "KB": 10**3, "B": 1}
    for unit, mult in units.items():
        if s.endswith(unit):
            try:
                return int(float(s[: -len(unit)]) * mult)
            except ValueError:
                break
    try:
        return int(s)
    except ValueError:
        raise CurateError(f"memory limit {text!r}: give a size such as 4GB or 512MB") from None


def default_memory() -> int:
    """Half the machine's memory (at least 1 GB)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    return max(total // 2, 1 << 30)


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _child(fn: Callable, args: tuple, conn) -> None:
    die_with_parent()
    try:
        result = fn(*args, lambda what: conn.send(("step", what)))
        conn.send(("done", result))
    except Exception as e:  # noqa: BLE001 - reported in one line by the parent
        conn.send(("error", error_line(e)))
    finally:
        conn.close()


def run_bounded(fn: Callable[..., Any], args: tuple, memory: int, seconds: float | None) -> Any:
    """``fn(*args, step)`` in a spawned child; its result, or a one-line CurateError.

    ``fn`` calls ``step(text)`` as it goes (``"source 'web': eligible 'keep' ..."``), so
    that a limit's error names what was running. ``seconds``: None or 0 for no time limit."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(fn, args, child), daemon=True)
    t0 = time.monotonic()
    proc.start()
    child.close()
    step, outcome, peak = "starting", None, 0
    try:
        while outcome is None:
            if parent.poll(POLL_S):
                try:
                    kind, value = parent.recv()
                except EOFError:
                    break
                if kind == "step":
                    step = value
                else:
                    outcome = (kind, value)
                continue
            if not proc.is_alive():
                break
            peak = max(peak, _rss(proc.pid))
            if peak > memory:
                proc.kill()
                raise CurateError(f"{step}: needed more than the mix's memory limit ({memory / 2**30:.1f} GiB, "
                                  "--memory-limit); simplify the expression or raise the limit")
            if seconds and time.monotonic() - t0 > seconds:
                proc.kill()
                raise CurateError(f"{step}: ran past the mix's time limit ({seconds:g} s, --timeout); "
                                  "simplify the expression or raise the limit")
        proc.join()
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join()
        parent.close()
    if outcome is None:
        raise CurateError(f"{step}: the mix's process {how_it_ended(proc.exitcode)} before it finished")
    if outcome[0] == "error":
        raise CurateError(outcome[1])
    return outcome[1]
