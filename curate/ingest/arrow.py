"""Arrow IPC inputs: Feather (v2) and ``.arrow`` files, and Hugging Face ``save_to_disk`` folders.

A ``datasets`` folder written by ``Dataset.save_to_disk`` (or ``DatasetDict.save_to_disk``,
one subfolder a split) holds its rows in ``data-0000N-of-0000M.arrow`` files, Arrow IPC
*streams*; Feather v2 files are Arrow IPC *files*. Both are read record batch by record
batch (the file form memory-mapped), so memory does not grow with the file.
"""
from __future__ import annotations

from typing import Iterator

import pyarrow as pa

from curate.errors import CurateError, first_line
from curate.storage import is_url
from curate.storage.listing import open_object

ARROW_EXTS = (".arrow", ".feather", ".ipc")


def _open(path: str):
    """(schema, record batch iterator) of an IPC file or stream."""
    try:
        source = open_object(path) if is_url(path) else pa.memory_map(path)
    except OSError as e:
        raise CurateError(f"{path}: cannot read the file ({first_line(e)})") from None
    try:
        reader = pa.ipc.open_file(source)
        return reader.schema, (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:
        source.seek(0)
    try:
        reader = pa.ipc.open_stream(source)
        return reader.schema, iter(reader)
    except Exception as e:
        raise CurateError(f"{path}: not an Arrow IPC / Feather file ({first_line(e)})") from None


def schema(path: str) -> pa.Schema:
    return _open(path)[0]


def batches(path: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    """The file's record batches with only ``columns`` (in that order); a column the file
    lacks (carried from another input of the run) is null."""
    sch, it = _open(path)
    idx = [sch.get_field_index(c) for c in columns]
    try:
        for rb in it:
            arrays = [rb.column(i) if i >= 0 else pa.nulls(rb.num_rows, pa.string()) for i in idx]
            yield pa.RecordBatch.from_arrays(arrays, names=columns)
    except CurateError:
        raise
    except Exception as e:
        raise CurateError(f"{path}: damaged Arrow data ({first_line(e)})") from None
