"""The selected image members of a WebDataset tar in a store, read by byte range.

An export copies image members by the offset and size that ``curate score`` indexed. A tar
on local disk is memory-mapped; a tar in a store (``s3://...``) is not downloaded: each
selected member's header block and data blocks are one byte range, neighbouring ranges
(at most :data:`GAP` bytes apart) are joined into one request of at most :data:`SPAN`
bytes, and the requests are fetched concurrently in rounds of about :data:`ROUND` bytes (a
round ends with the request that passes it).
What is kept is only the members' blocks, packed one after another in tar order, so memory
is the selected images of one shard plus one round of requests.
"""
from __future__ import annotations

import numpy as np

from curate.storage.fs import filesystem, storage_errors

#: Bytes between two members below which one request reads both (and the bytes between).
GAP = 256 << 10
#: The longest single request.
SPAN = 16 << 20
#: Bytes requested at once (concurrently) before the members are copied out: a round takes the
#: requests that begin before this many bytes of requests have been asked for.
ROUND = 64 << 20


def member_blocks(o: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end of each member's blocks in the tar: its header block (512 bytes before
    the data at ``o``) through its data padded to a whole block."""
    o, s = np.asarray(o, np.int64), np.asarray(s, np.int64)
    return o - 512, o + (s + 511) // 512 * 512


def coalesce(starts: np.ndarray, ends: np.ndarray, gap: int | None = None, span: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Requests ``[first, last)`` that cover the ascending, disjoint ranges ``[starts, ends)``:
    a range joins the request before it when it begins within ``gap`` (:data:`GAP`) bytes
    of that request's end and the request stays within ``span`` (:data:`SPAN`) bytes (a
    range longer than ``span`` is a request of its own)."""
    gap, span = GAP if gap is None else gap, SPAN if span is None else span
    starts, ends = np.asarray(starts, np.int64), np.asarray(ends, np.int64)
    if not len(starts):
        return starts, ends
    close = np.concatenate([[False], starts[1:] - ends[:-1] <= gap])
    # joined runs first, then each run cut where it would pass ``span`` (a loop over requests)
    first, last = [], []
    run_start = np.flatnonzero(~close)
    run_end = np.concatenate([run_start[1:], [len(starts)]])
    for a, b in zip(run_start.tolist(), run_end.tolist()):
        i = a
        while i < b:
            limit = starts[i] + span
            j = i + max(1, int(np.searchsorted(ends[i:b], limit, side="right")))
            first.append(starts[i])
            last.append(ends[j - 1])
            i = j
    return np.array(first, np.int64), np.array(last, np.int64)


def read_members(url: str, o: np.ndarray, s: np.ndarray, total: int) -> tuple[np.ndarray, np.ndarray]:
    """The blocks of the members at data offsets ``o`` (ascending, disjoint; sizes ``s``) of
    the object ``url`` of ``total`` bytes, packed in order: ``(buf, at)`` where ``buf[at[i]
    - 512]`` is member i's header block and ``buf[at[i]:at[i] + s[i]]`` its data. Bytes past
    the end of the object read as zeros."""
    starts, ends = member_blocks(o, s)
    ends = np.minimum(ends, total)
    lens = ends - starts
    packed = np.concatenate([[0], np.cumsum((lens + 511) // 512 * 512)]).astype(np.int64)
    buf = np.zeros(int(packed[-1]), np.uint8)
    req_a, req_b = coalesce(starts, ends)
    fs, path = filesystem(url)
    rounds = np.concatenate([[0], np.cumsum(req_b - req_a)]) // ROUND
    for r in np.unique(rounds[:-1]).tolist():  # a loop over rounds of requests
        pick = np.flatnonzero(rounds[:-1] == r)
        a, b = req_a[pick], req_b[pick]
        with storage_errors(url):
            got = fs.cat_ranges([path] * len(a), a.tolist(), b.tolist(), on_error="raise")
        data = np.frombuffer(b"".join(got), np.uint8)
        if len(data) != int((b - a).sum()):
            raise_short(url)
        base = np.concatenate([[0], np.cumsum(b - a)[:-1]]).astype(np.int64)
        # the members inside this round's requests: where each lies in ``data``
        inside = (starts >= a[0]) & (ends <= b[-1])
        req = np.searchsorted(a, starts[inside], side="right") - 1
        at = base[req] + starts[inside] - a[req]
        n = lens[inside]
        buf[spread(packed[:-1][inside], n)] = data[spread(at, n)]
    return buf, packed[:-1] + 512


def spread(dest: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Flat indices ``dest[i] .. dest[i] + lens[i] - 1`` for every i, in order."""
    offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    return np.repeat(np.asarray(dest, np.int64) - offs[:-1], lens) + np.arange(offs[-1], dtype=np.int64)


def raise_short(url: str) -> None:
    from curate.errors import CurateError

    raise CurateError(f"{url}: the store returned fewer bytes than the ranges asked for (the object changed "
                      "while it was read?); export again")
