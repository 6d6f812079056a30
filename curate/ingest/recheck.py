"""An input as it is now, against what a run recorded of it: whether it is unchanged (a local
file's fingerprint, an object's ETag in its store) and one row read back from it.

``curate verify`` and ``curate explain`` use these for local files and URLs alike.
"""
from __future__ import annotations

import os

from curate.errors import CurateError
from curate.hashing import fingerprint_matches
from curate.ingest.formats import FORMATS
from curate.ingest.inputs import inspect_input, resolve_inputs
from curate.ingest.readers import read_batches
from curate.storage import is_url
from curate.storage.listing import list_objects


def unchanged(path: str | os.PathLike, rec: dict) -> bool:
    """True when the input still is the one recorded in ``rec`` (a run's input entry): the
    same ETag (an object in a store) or the same fingerprint (a local file: XXH3-128, or
    blake2b for runs recorded before)."""
    path = os.fspath(path)
    if is_url(path):
        if not rec.get("etag"):
            return False
        (obj,) = list_objects(path)[:1] or [None]
        return obj is not None and obj.etag == rec["etag"] and obj.size == rec.get("bytes", obj.size)
    return fingerprint_matches(path, rec)


def row_now(path: str, row: int, caption: str = "caption", id_column: str | None = None,
            header_columns: tuple[str, ...] | list[str] = ()) -> dict:
    """The caption (and id) at ``row`` of the input as it is now: ``{"caption": ..., "id": ...}``;
    ``{"missing": True}`` past its last row. Parquet reads only the row group that holds the
    row (ranged reads for an object in a store); other formats read up to it."""
    (inp,) = resolve_inputs([path])
    inspect_input(inp, header_columns)
    if caption not in inp.columns:
        raise CurateError(f"{path}: no caption column {caption!r} now")
    fmt = FORMATS[inp.format]
    groups, start = None, 0
    if fmt.row_groups is not None:
        sizes = fmt.row_groups(inp)
        for g, n in enumerate(sizes):
            if row < start + n:
                groups = [g]
                break
            start += n
        else:
            return {"missing": True}
    for batch in read_batches(inp, caption, id_column, [], 100_000, groups):
        if row < start + batch.height:
            got = batch.slice(row - start, 1)
            return {k: got[k][0] for k in got.columns if k in ("caption", "id")}
        start += batch.height
    return {"missing": True}


