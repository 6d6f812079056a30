"""Runs, mixtures and exports on object storage, switched from the old state to the new in
one step without a rename.

A command whose output is a URL (``curate score ... --out s3://bucket/run``) runs exactly
as on a local disk, into a local working folder (under the cache, one per URL); then
:class:`StoreWrite` uploads the complete new state under a prefix of its own and writes one
small pointer object last::

    OUT/.v/NAME/...      one complete version (a run's scores/, run.json, chain.toml,
                         dedup/, concepts/; a mixture's or an export's files)
    OUT/.current         {"version": NAME, "previous": OLD, ...}: the switch
    OUT/.curate-lock     the writer's lock object (:mod:`curate.storage.lock`)

Readers resolve ``.current`` once (:func:`curate.layout.pinned_store`) and read the version
it names. A writer killed at any moment leaves the pointer as it was: the old state stays
readable, and a half-uploaded version is an unreferenced prefix that the next successful
write deletes. After a switch every version but the new one and the one it replaced is
deleted (a reader that resolved the pointer just before the switch can finish).

A command that changes a run (``decide``, ``dedup``, ``concepts``, a ``score`` that
completes a run) first downloads the current version into the working folder; files it
does not change are copied on the store (server side), not uploaded again.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from curate.atomic import write_json
from curate.errors import CurateError
from curate.layout import (
    BY_ID,
    CHAIN_TOML,
    CONCEPT_ENTRIES,
    CONCEPTS,
    CURRENT,
    DEDUP,
    DEDUP_ENTRIES,
    LOCK,
    RUN_JSON,
    SCORES,
    STORE_BASE,
    STORE_OUT,
    STORE_STAGING,
    VERSIONS,
    Snapshot,
    cache_root,
    command_line,
    concepts_snapshot,
    dedup_snapshot,
    pinned,
    pinned_store,
    read_json,
    run_snapshot,
)
from curate.storage.fs import exists, filesystem, is_url, join, redact, storage_errors
from curate.storage.lock import StoreLock, get_with_etag, put_if, s3_key


def new_version_name() -> str:
    """A version name as :meth:`curate.layout.Snapshot.stage` makes one: time, pid, nanoseconds."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.time_ns() % 10**9:09d}"


def working_folder(url: str) -> Path:
    """The local folder a command writing ``url`` works in (kept after a failure, so that
    the same command run again resumes from it)."""
    return cache_root() / STORE_STAGING / hashlib.sha256(url.rstrip("/").encode()).hexdigest()[:20]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith((".tmp-", STORE_BASE)))


def run_files(run: Path) -> dict[str, Path]:
    """The files of a local run's current state, by their name in a store version: the
    version's ``scores/``, ``by-id/``, ``run.json`` and ``chain.toml``, and the current ``dedup/`` and
    ``concepts/`` entries (the dedup caches stay local)."""
    out: dict[str, Path] = {}
    version = pinned(run / SCORES).parent
    for p in sorted((version / SCORES).glob("*.parquet")):
        out[f"{SCORES}/{p.name}"] = p
    for p in sorted((version / BY_ID).glob("*")):  # the index by sample id, with its version
        out[f"{BY_ID}/{p.name}"] = p
    for folder, entries in ((DEDUP, DEDUP_ENTRIES), (CONCEPTS, CONCEPT_ENTRIES)):
        for e in entries:
            p = pinned(run / folder / e)
            if p.is_file():
                out[f"{folder}/{e}"] = p
    for name in (CHAIN_TOML, RUN_JSON):  # run.json last
        if (version / name).is_file():
            out[name] = version / name
    return out


@dataclass
class StoreWrite:
    """One command's write to ``url`` on a store, under its lock (:func:`store_write`)."""

    url: str
    local: Path
    lock: StoreLock
    base: str | None = None  # the version current when the write began
    base_etag: str | None = None
    downloaded: dict[tuple[int, int], str] = field(default_factory=dict)
    #: the name of the version a whole-folder output is uploaded as
    name: str = field(default_factory=new_version_name)

    @property
    def version_url(self) -> str:
        """Where :meth:`commit_folder` puts the new version (for files that name it)."""
        return join(self.url, VERSIONS, self.name)

    def materialise_run(self) -> None:
        """Download the run's current version into :attr:`local` as a local run folder
        (its three snapshots at the same version name); nothing when there is none."""
        if self.base is None or (self.local / CURRENT).exists():
            return
        remote = join(self.url, VERSIONS, self.base)
        fs, root = filesystem(remote)
        with storage_errors(remote):
            names = [p[len(root) + 1:] for p in fs.find(root)]
        snaps = {DEDUP: dedup_snapshot(self.local), CONCEPTS: concepts_snapshot(self.local)}
        staged: dict[str, tuple[Snapshot, Path]] = {}
        targets = []
        for name in names:
            head, _, rest = name.partition("/")
            snap = snaps.get(head) if rest and head != SCORES else None
            snap, sub = (snap, rest) if snap else (run_snapshot(self.local), name)
            if snap.folder not in staged:
                staged[snap.folder] = (snap, snap.stage(self.base))
            targets.append(staged[snap.folder][1] / sub)
            targets[-1].parent.mkdir(parents=True, exist_ok=True)
        with storage_errors(remote):  # one call: s3fs fetches the files concurrently
            fs.get([f"{root}/{n}" for n in names], [str(t) for t in targets])
        for name, dst in zip(names, targets):
            st = dst.stat()
            self.downloaded[(st.st_dev, st.st_ino)] = f"{root}/{name}"
        for snap, version in staged.values():
            snap.commit(version)

    def output_folder(self) -> Path:
        """A new, empty local folder for a whole-folder output (a mixture, an export), whose
        path does not exist yet (the local writer creates it)."""
        out = self.local / STORE_OUT
        shutil.rmtree(out, ignore_errors=True)
        return out

    def commit_run(self, run: Path | None = None) -> str:
        """Upload the local run's current state as a new version and switch to it."""
        run = run or self.local
        name = pinned(run / SCORES).parent.name
        if name in (self.base, "", run.name):
            name = new_version_name()
        return self.commit(run_files(run), name)

    def commit_folder(self, folder: Path, last: str) -> str:
        """Upload a whole local output folder (a mixture, an export) as a new version, its
        file ``last`` (manifest.json, index.json) after every other, and switch to it."""
        files = {p.relative_to(folder).as_posix(): p for p in _files(folder)}
        if last in files:
            files[last] = files.pop(last)
        return self.commit(files, self.name)

    def commit(self, files: dict[str, Path], name: str) -> str:
        """Put ``files`` (name in the version -> local file; the last one last) under
        ``URL/.v/NAME``, then point ``URL/.current`` at it; returns the version's URL."""
        self.lock.check()
        prefix = join(self.url, VERSIONS, name)
        fs, root = filesystem(prefix)
        items = list(files.items())
        head, tail = items[:-1], items[-1:]
        for batch in (head, tail):
            copies = [(self.downloaded.get((p.stat().st_dev, p.stat().st_ino)), f"{root}/{n}") for n, p in batch]
            ups = [(str(p), f"{root}/{n}") for (n, p), (src, _) in zip(batch, copies) if src is None]
            with storage_errors(prefix):
                if ups:
                    fs.put([u[0] for u in ups], [u[1] for u in ups])
                for src, dst in copies:
                    if src is not None:
                        fs.copy(src, dst)  # unchanged: copied on the store, not uploaded
        self.lock.check()
        pointer = {"version": name, "previous": self.base,
                   "switched": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                   "command": redact(self.lock.command)}
        try:
            put_if(join(self.url, CURRENT), (json.dumps(pointer) + "\n").encode(), self.base_etag)
        except FileExistsError:
            raise CurateError(f"{self.url}: another writer switched it while this command ran "
                              "(its lock was taken over); nothing was switched") from None
        drop_versions(self.url, keep={name, self.base})
        return prefix


def runs_on_stores(runs: list, work: Callable[[list], Any],
                   finish: Callable[[dict[str, "StoreWrite"]], None] | None = None) -> Any:
    """``work(runs)`` where some runs are URLs on a store: each such run is downloaded under
    its lock (locks taken in URL order), ``work`` runs on the local copies (and the local
    runs as given), ``finish(writes)`` may adjust the copies, and each is switched in as a
    new version. Returns what ``work`` returned."""
    with ExitStack() as stack:
        writes: dict[str, StoreWrite] = {}
        for r in sorted({str(r) for r in runs if is_url(r)}):
            writes[r] = stack.enter_context(store_write(r, "a run"))
            writes[r].materialise_run()
        result = work([writes[str(r)].local if is_url(r) else r for r in runs])
        if finish is not None:
            finish(writes)
        for w in writes.values():
            w.commit_run()
    return result


def reading_copy(url: str) -> Path:
    """A local copy of the version a folder on a store (a mixture) holds now, for commands
    that read a folder's files (explain, verify, diff, export); kept per version in the
    cache, so a second command downloads nothing."""
    url = url.rstrip("/")
    remote = pinned_store(url)
    key = hashlib.sha256(remote.encode()).hexdigest()[:20]
    local = cache_root() / STORE_STAGING / key
    if (local / STORE_BASE).is_file():
        return local
    fs, root = filesystem(remote)
    tmp = local.with_name(f"{key}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with storage_errors(remote):
        names = [p[len(root) + 1:] for p in fs.find(root)]
        if not names:
            raise CurateError(f"{url}: nothing there (no {CURRENT} and no files)")
        for name in names:
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        fs.get([f"{root}/{n}" for n in names], [str(tmp / n) for n in names])
    write_json({"url": redact(remote)}, tmp / STORE_BASE)
    shutil.rmtree(local, ignore_errors=True)
    os.replace(tmp, local)
    return local


def drop_versions(url: str, keep: set) -> None:
    """Delete every version under ``URL/.v/`` but ``keep`` (left by killed writers, or
    replaced two switches ago)."""
    fs, root = filesystem(join(url, VERSIONS))
    with storage_errors(join(url, VERSIONS)):
        fs.invalidate_cache(root)
        try:
            found = fs.ls(root, detail=False)
        except FileNotFoundError:
            return
        gone = [p for p in found if p.rstrip("/").rsplit("/", 1)[-1] not in keep]
        if gone:
            fs.rm(gone, recursive=True)


def holds_output(url: str) -> bool:
    """True where ``url`` holds objects other than curate's pointer, versions and lock."""
    fs, root = filesystem(url)
    with storage_errors(url):
        fs.invalidate_cache(root)
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
        except FileNotFoundError:
            return False
    return any(n not in (CURRENT, VERSIONS, LOCK) for n in names)


@contextmanager
def store_write(url: str, what: str, marker: str | None = None, overwrite: bool = True) -> Iterator[StoreWrite]:
    """Hold ``url``'s lock and a local working folder for one command's write; the caller
    writes there and calls :meth:`StoreWrite.commit_run` or :meth:`StoreWrite.commit_folder`.
    Errors that name the working folder name ``url`` instead. With ``marker`` (a whole-folder
    output's last file), a current version must hold it, and is replaced only ``overwrite``."""
    s3_key(url)  # a one-line error for a store without conditional writes
    url = url.rstrip("/")
    if holds_output(url):
        raise CurateError(f"{url} holds objects that are not {what} written by curate; write into a new prefix")
    with StoreLock(join(url, LOCK), url, command_line()) as lk:
        got = get_with_etag(join(url, CURRENT))
        base = json.loads(got[0].decode()).get("version") if got else None
        if base and marker:
            if not exists(join(url, VERSIONS, base, marker)):
                raise CurateError(f"{url} holds something other than {what}; write {what} into a new prefix")
            if not overwrite:
                raise CurateError(f"{url} already holds {what}; use another --out, or --overwrite to replace it")
        local = working_folder(url)
        mark = {"url": redact(url), "version": base}
        if read_json(local / STORE_BASE) != mark:  # a working folder from another state: start afresh
            shutil.rmtree(local, ignore_errors=True)
        local.mkdir(parents=True, exist_ok=True)
        write_json(mark, local / STORE_BASE)
        w = StoreWrite(url, local, lk, base, got[1] if got else None)
        try:
            yield w
        except CurateError as e:
            raise CurateError(str(e).replace(str(local), url)) from None
        shutil.rmtree(local, ignore_errors=True)
