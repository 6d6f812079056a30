"""Single files written to a store whole: a report and its numbers, a CSV of captions to label.

An object is replaced in one PUT, so a reader sees the old object or the new one, never a
part. A command that writes several objects that belong together (``report.html`` and
``report.json``) holds a lock object beside the first (``.NAME.curate-lock``, the same lease
as a run's lock: :class:`curate.storage.lock.StoreLock`) and uploads them in a fixed order,
the file people open last.
"""
from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from curate.layout import LOCK, VERSIONS
from curate.storage.fs import filesystem, join, storage_errors
from curate.storage.listing import dirname
from curate.storage.lock import StoreLock, command_line, s3_key


def head_bytes(url: str, n: int = 4096) -> bytes | None:
    """The first ``n`` bytes of an object (one ranged GET), or None when there is none."""
    fs, p = filesystem(url)
    with storage_errors(url):
        try:
            return fs.cat_file(p, start=0, end=n)
        except FileNotFoundError:
            return None


def lock_beside(url: str) -> str:
    """The lock object of a file output ``url``: a hidden object beside it."""
    url = url.rstrip("/")
    return f"{dirname(url)}/.{url.rsplit('/', 1)[-1]}{LOCK}"


@contextmanager
def object_write(url: str) -> Iterator[Path]:
    """Hold the lock beside the file output ``url`` (one writer at a time) and yield a local
    temporary folder to write the files in before they are uploaded (:func:`curate.storage.fs.put_file`)."""
    s3_key(url)  # a one-line error for a store without conditional writes
    with StoreLock(lock_beside(url), url, command_line()):
        tmp = Path(tempfile.mkdtemp(prefix="curate-upload-"))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def download_version(w) -> Path:
    """The current version of the folder ``w`` writes (a :class:`curate.storage.commit.StoreWrite`)
    downloaded into a new local folder (empty when there is none); each file is recorded, so
    that :meth:`~curate.storage.commit.StoreWrite.commit` copies the ones left unchanged on
    the store instead of uploading them."""
    local = w.output_folder()
    local.mkdir(parents=True)
    if w.base is None:
        return local
    remote = join(w.url, VERSIONS, w.base)
    fs, root = filesystem(remote)
    with storage_errors(remote):
        names = [p[len(root) + 1:] for p in fs.find(root)]
        for name in names:
            (local / name).parent.mkdir(parents=True, exist_ok=True)
        if names:
            fs.get([f"{root}/{n}" for n in names], [str(local / n) for n in names])
    for name in names:
        st = (local / name).stat()
        w.downloaded[(st.st_dev, st.st_ino)] = f"{root}/{name}"
    return local
