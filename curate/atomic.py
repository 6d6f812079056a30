"""Atomic file writes: write to a temporary name in the same folder, then rename; and whole
folders (a mixture, an export) written aside and exchanged with the old one in one step.

A failed or interrupted write leaves only a ``.tmp-*.partial`` file, never a file under the
final name that looks finished (DESIGN convention 10), and never one that a glob of the
final names (``*.parquet``) matches. A whole-folder writer (mix, export, train) checks its
``--out`` first (:func:`output_folder`) and writes a hidden staging sibling.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import CurateError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success. For a URL
    on a store, a local temporary file uploaded as the object in one PUT on success."""
    from curate.storage.fs import is_url

    if is_url(path):
        with _uploaded(os.fspath(path)) as tmp:
            yield tmp
        return
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix + ".partial", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


@contextmanager
def _uploaded(url: str) -> Iterator[Path]:
    from curate.storage.fs import put_file

    folder = tempfile.mkdtemp(prefix="curate-upload-")
    try:
        tmp = Path(folder) / url.rstrip("/").rsplit("/", 1)[-1]
        yield tmp
        put_file(tmp, url)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_parquet_file(table: pa.Table, path: str | os.PathLike) -> None:
    """A Parquet file as every table of a run is written (zstd), under ``path`` as given;
    for a caller that renames it itself."""
    pq.write_table(table, path, compression="zstd")


def write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        write_parquet_file(table, tmp)


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# -- one switch: a whole folder replaced ---------------------------------------------------


def output_folder(out: str | os.PathLike, what: str, marker: str, overwrite: bool,
                  owned: tuple[str, ...] | None = None) -> Path:
    """``out`` as an absolute path, once it is a folder that a whole-folder writer may
    replace: not the current folder or one that holds it (the switch would swap the folder
    away under the shell that runs the command), not a file, and new, empty, or holding
    ``what`` already (its ``marker`` file) with ``overwrite`` given. ``owned``: the only
    names such a folder may hold (more would be lost with the old folder); None for any."""
    out = Path(os.path.abspath(out))
    real, cwd = Path(os.path.realpath(out)), Path(os.path.realpath(os.getcwd()))
    if real == cwd or real in cwd.parents:
        raise CurateError(f"--out {out} is the current folder or holds it; give a new folder below it "
                          "(e.g. --out out)")
    if out.exists() and not out.is_dir():
        raise CurateError(f"--out {out} is a file; give a folder")
    if not out.is_dir():
        return out
    names = sorted(p.name for p in out.iterdir())
    if (out / marker).is_file():
        if not overwrite:
            raise CurateError(f"{out} already holds {what}; use another --out, or --overwrite to replace it")
        other = [n for n in names if owned is not None and n not in owned]
        if other:
            raise CurateError(f"{out} holds {what} and other files ({', '.join(other[:5])}); they would be "
                              "lost with the old folder: move them, or write into a new folder")
    elif names:
        raise CurateError(f"{out} holds other files ({', '.join(names[:5])}); write {what} into a new or empty folder")
    return out


def staging_folder(out: Path) -> Path:
    """A hidden, empty sibling of ``out`` to write a whole output folder into (call it
    while holding :func:`curate.layout.lock_output`: staging folders of killed writers are removed)."""
    for old in out.parent.glob(f".{out.name}.staging-*"):  # left by a killed writer
        shutil.rmtree(old, ignore_errors=True)
    stage = out.parent / f".{out.name}.staging-{os.getpid()}"
    stage.mkdir(parents=True)
    return stage


def replace_folder(stage: Path, out: Path) -> None:
    """Put the complete folder ``stage`` in the place of ``out`` in one step (Linux's
    ``renameat2(RENAME_EXCHANGE)`` swaps the two; a plain rename where ``out`` is new)."""
    fsync_tree(stage)
    if not out.exists() and not out.is_symlink():
        os.rename(stage, out)
        fsync_dir(out.parent)
        return
    if not _exchange(stage, out):
        # No atomic exchange on this file system: move the old folder aside first. A kill
        # between the two renames leaves ``.NAME.old-PID`` beside an absent ``out``.
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, old)
        os.rename(stage, out)
        shutil.rmtree(old, ignore_errors=True)
        return
    fsync_dir(out.parent)
    shutil.rmtree(stage, ignore_errors=True)  # now the old state


def discard_staging(stage: Path) -> None:
    shutil.rmtree(stage, ignore_errors=True)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush a new state's folders before the switch (the files were flushed as written)."""
    for root, dirs, _ in os.walk(path):
        for d in dirs:
            fsync_dir(Path(root) / d)
    fsync_dir(path)
