"""The C allocator's share of a long job's memory (glibc ``malloc``; a no-op elsewhere).

glibc serves a large request (an array of a few MB) with its own ``mmap`` and returns it to
the system when freed, but then raises the size from which it does so, up to 32 MB: later
arrays of that size come from the heap, and a heap freed in the middle stays resident. A job
that allocates and frees batch-sized arrays many times (the out-of-core dedup search) then
holds hundreds of MB it no longer uses. :func:`bound_allocator` pins the threshold, so that
every array above it is mapped and unmapped on its own; :func:`release` hands back what the
heap holds free between stages. Neither changes any result.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

#: mallopt parameter (glibc malloc.h)
M_MMAP_THRESHOLD = -3
#: arrays from this size are mapped on their own (glibc's initial default)
MMAP_THRESHOLD = 128 * 1024


@lru_cache(maxsize=1)
def libc():
    """The C library (ctypes), or None where it is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.mallopt  # noqa: B018 - glibc only
        lib.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return lib


def bound_allocator() -> bool:
    """Pin glibc's mmap threshold at :data:`MMAP_THRESHOLD` for this process; False where
    there is no glibc."""
    lib = libc()
    return bool(lib and lib.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))


#: prctl option: the signal a process gets when its parent dies
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Have this (child) process killed when its parent dies (Linux ``prctl``; a no-op
    elsewhere), so that no orphan goes on computing."""
    import signal

    lib = libc()
    if lib is not None and hasattr(lib, "prctl"):
        lib.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def how_it_ended(code: int | None) -> str:
    """A child process's exit code in words: ``was killed by signal SIGKILL``, ``exited
    with status 1``."""
    import signal

    if code is not None and code < 0:
        return f"was killed by signal {signal.Signals(-code).name}"
    return f"exited with status {code}"


def release() -> None:
    """Return the free memory of every malloc arena to the system (``malloc_trim(0)``)."""
    lib = libc()
    if lib is not None:
        lib.malloc_trim(0)
