"""The folders curate writes: their file names, one writer at a time, and one switch.

A run folder (``curate score``, ``curate decide``)::

    RUN/scores/part-FFFFF-BBBBB.parquet   one part per input file F and batch B
    RUN/chain.toml                        the resolved chain of the last decision
    RUN/run.json                          inputs, chain, versions, counts
    RUN/dedup/groups.parquet, dedup.json  near-duplicate groups (``curate dedup``)
    RUN/concepts/concepts.parquet, concepts.json  matched concept entries (``curate concepts``)
    RUN/by-id/bucket-NNNNN.parquet, by-id.json   the rows by sample id (``curate index``)

A mixture folder (``curate mix``) holds ``manifest.parquet``, ``manifest.json``,
``recipe.toml`` and ``query.sql``; an export folder its shards and ``index.json``. Every
file name of runs, mixtures, exports and caches is spelled here and nowhere else.

Two rules hold for every one of them (DESIGN conventions 10 and 14):

* **One writer.** A command that writes a folder holds an exclusive lock on it
  (:func:`lock`); a second writer gets a one-line error naming the holder. The lock is an
  ``flock`` on a small file, so the kernel drops it when its process dies: a stale lock
  never blocks.
* **One switch.** A command that rewrites several files writes a complete new state aside
  and switches to it in one atomic step, so a kill at any moment leaves the old state or
  the new one, never a mix. In a run folder the documented names (``scores``,
  ``run.json``, ``chain.toml``; in ``dedup/``, ``groups.parquet`` and ``dedup.json``) are
  links into ``.current``, which points at one complete version under ``.v/``
  (:class:`Snapshot`); the switch replaces that one pointer. A mixture or export folder is
  written aside in full and then exchanged with the old one (:func:`replace_folder`).
  Temporary files live in hidden folders beside the outputs (``.tmp/``, ``.v/``), where
  the documented globs (``RUN/scores/*.parquet``) never see them.
* **Readers pin a version.** A path through the links is resolved again at every open,
  so a reader that opens a file twice (metadata, then data) across a switch would mix
  two versions. :func:`pinned` resolves the links once; the version a switch replaces
  stays until the next switch, so a read through a pinned path sees one version whole
  (docs/guarantees.md).

On object storage (a URL) the same rules hold with a lock object and versions under
``OUT/.v/`` behind one pointer object ``OUT/.current`` (:mod:`curate.storage.commit`,
:func:`pinned_store`; docs/object-storage-runs.md).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

from curate.atomic import discard_staging, fsync_dir, fsync_tree, output_folder, replace_folder, staging_folder
from curate.errors import CurateError
from curate.storage.fs import filesystem, is_url, join, storage_errors
from curate.storage.lock import command_line, local_lock

__all__ = ["command_line", "discard_staging", "output_folder", "replace_folder", "staging_folder"]  # from atomic, storage.lock

RUN_JSON = "run.json"
CHAIN_TOML = "chain.toml"
SCORES = "scores"
PART_GLOB = "part-*.parquet"
#: written when a score starts: what is being scored and where (so a rerun resumes it)
STATE = ".curate-state.json"
DEDUP, GROUPS, DEDUP_JSON = "dedup", "groups.parquet", "dedup.json"
#: a run's index by sample id: sorted buckets and what they were made from
BY_ID, BY_ID_JSON, BUCKET = "by-id", "by-id.json", "bucket"
RUN_ENTRIES = (SCORES, RUN_JSON, CHAIN_TOML, BY_ID)
DEDUP_ENTRIES = (GROUPS, DEDUP_JSON)
CONCEPTS, CONCEPTS_PARQUET, CONCEPTS_JSON = "concepts", "concepts.parquet", "concepts.json"
CONCEPT_ENTRIES = (CONCEPTS_PARQUET, CONCEPTS_JSON)

MANIFEST, MANIFEST_JSON, RECIPE, QUERY = "manifest.parquet", "manifest.json", "recipe.toml", "query.sql"
#: an export folder's index of its shards, written last
INDEX_JSON = "index.json"
#: dedup's working files in RUN/dedup/: the embedding cache (one folder per model, its
#: ``manifest.json`` written last over ``keys-N.npy``/``vecs-N.npy`` shards), the neighbour
#: table (``part-N.parquet`` and ``neighbors.json``) and the out-of-core scratch folder
#: (the vectors in text order and the embedding child's input)
EMBEDDINGS = "embeddings"
EMBED_MANIFEST = "manifest.json"
NEIGHBORS = "neighbors"
NEIGHBORS_META = "neighbors.json"
SCRATCH, VECTORS, EMBED_INPUT = "scratch", "vectors.npy", "embed-input.parquet"

LOCK, CURRENT, VERSIONS, TMP = ".curate-lock", ".current", ".v", ".tmp"
DUCKDB_TMP, WRITE_PROBE = ".duckdb-tmp", ".curate-write-test"
#: what a long command logs with --debug, in its output folder
DEBUG_LOG = "curate-debug.log"
#: the filters' reference tables, cached under :func:`cache_root`
SPECIFICITY_CACHE = "specificity"
#: the index of a Hugging Face ``save_to_disk`` folder (another tool's file, read by ingest)
HF_STATE = "state.json"
#: in ``.v/``: the name of the version the last switch replaced (kept until the next one)
RETIRED = ".retired"
#: under :func:`cache_root`: the local folders that commands writing to a store work in,
#: and in one of them the folder a whole-folder writer (mix, export) writes
STORE_STAGING, STORE_OUT = "store-staging", "out"
#: in such a folder: the store URL and the version it started from
STORE_BASE = ".curate-store-base.json"


# -- names --------------------------------------------------------------------------------


def cache_root() -> Path:
    """``$CURATE_CACHE``, else ``$XDG_CACHE_HOME/curate``, else ``~/.cache/curate``."""
    if os.environ.get("CURATE_CACHE"):
        return Path(os.environ["CURATE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "curate"


def part_path(root: str | os.PathLike, fi: int, bi: int) -> Path:
    """The part of input file ``fi``'s batch ``bi`` under ``root`` (a run or one version)."""
    return Path(root) / SCORES / f"part-{fi:05d}-{bi:05d}.parquet"


def under(run: str | os.PathLike, *names: str):
    """``run/name/...``: a Path, or a URL (str) for a run on a store."""
    return join(run, *names) if is_url(run) else Path(run).joinpath(*names)


def scores_glob(run: str | os.PathLike) -> str:
    return str(under(run, SCORES, PART_GLOB))


def score_parts(run: str | os.PathLike) -> list:
    """The run's parts in order: paths, or URLs for a run on a store."""
    if is_url(run):
        fs, glob = filesystem(scores_glob(run))
        with storage_errors(run):
            return [fs.unstrip_protocol(p) for p in sorted(fs.glob(glob))]
    return sorted((Path(run) / SCORES).glob(PART_GLOB))


def groups_path(run: str | os.PathLike):
    return under(run, DEDUP, GROUPS)


def by_id_path(run: str | os.PathLike, *names: str):
    """``RUN/by-id/...`` (of a version: see :func:`pinned_run`)."""
    return under(run, BY_ID, *names)


def pinned(path: str | os.PathLike) -> Path:
    """``path`` with every link resolved once: a documented name of a run
    (``RUN/scores``, ``RUN/dedup/groups.parquet``) becomes the file or folder of the
    version that is current now. Read through it, a whole read sees that one version,
    even while a writer switches the run to another: the replaced version stays until
    the switch after that one."""
    return Path(os.path.realpath(path))


def pinned_run(run: str | os.PathLike):
    """The folder of the run's version that is current now (:func:`pinned`): its
    ``scores/``, ``run.json`` and ``chain.toml`` belong together; the run itself when its
    entries are plain files. For a run on a store (``s3://bucket/run``) the URL of the
    version its ``.current`` object names (:func:`pinned_store`)."""
    if is_url(run):
        return pinned_store(run)
    return pinned(Path(run) / SCORES).parent


def pinned_scores_glob(run: str | os.PathLike) -> str:
    """:func:`scores_glob` of the version current now (:func:`pinned_run`)."""
    return scores_glob(pinned_run(run))


def pinned_groups(run: str | os.PathLike):
    """:func:`groups_path` of the version current now (:func:`pinned`)."""
    if is_url(run):
        return groups_path(pinned_store(run))
    return pinned(groups_path(run))


def store_pointer(url: str) -> dict | None:
    """What ``URL/.current`` on a store says (``{"version": NAME, "previous": NAME, ...}``),
    or None where there is none (nothing switched there yet)."""
    info = read_store_json(join(url, CURRENT))
    return info if isinstance(info, dict) and info.get("version") else None


def pinned_store(url: str) -> str:
    """The URL of the version a folder on a store holds now: ``URL/.v/NAME`` with NAME from
    ``URL/.current``, read once; ``url`` itself where there is no pointer (a version's own
    URL, or a folder written by another tool)."""
    info = store_pointer(url)
    return join(url, VERSIONS, info["version"]) if info else url.rstrip("/")


def read_store_json(url: str) -> dict | None:
    """A small JSON object on a store, or None when it does not exist."""
    fs, p = filesystem(url)
    with storage_errors(url):
        try:
            data = fs.cat_file(p)
        except FileNotFoundError:
            return None
    try:
        return json.loads(data.decode())
    except ValueError as e:
        raise CurateError(f"{url}: unreadable ({e})") from None


def dedup_json_path(run: str | os.PathLike):
    return under(run, DEDUP, DEDUP_JSON)


def numbered(folder: str | os.PathLike, stem: str, i: int, suffix: str = ".parquet") -> Path:
    """``folder/stem-NNNNN.suffix``: the numbered parts of tables, caches and shards."""
    return Path(folder) / f"{stem}-{i:05d}{suffix}"


def concepts_path(run: str | os.PathLike):
    return under(run, CONCEPTS, CONCEPTS_PARQUET)


def concepts_json_path(run: str | os.PathLike):
    return under(run, CONCEPTS, CONCEPTS_JSON)


def load_run(run: str | os.PathLike) -> dict:
    """``run.json`` of a finished run; a one-line error for anything else."""
    if is_url(run):
        info = read_store_json(join(pinned_store(run), RUN_JSON))
        if info is None:
            raise CurateError(f"{run}: not a curate run (no run.json at its current version)")
        return info
    p = Path(run) / RUN_JSON
    if not p.is_file():
        if (Path(run) / STATE).exists():
            raise CurateError(f"{run}: the run did not finish; run the same `curate score` command again to complete it")
        raise CurateError(f"{run}: not a curate run (no run.json)")
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise CurateError(f"{p}: unreadable ({e})") from None


def read_text(path: Path) -> str:
    """A small file's text, or "" when it is missing or unreadable."""
    try:
        return path.read_text()
    except (OSError, ValueError):
        return ""


def read_json(path: Path) -> dict:
    """A JSON file as a dict, or {} when it is missing or unreadable (caches, state files)."""
    try:
        if is_url(path):
            return read_store_json(path) or {}
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError, CurateError):
        return {}


# -- one writer ---------------------------------------------------------------------------


def lock_folder(folder: str | os.PathLike) -> "contextmanager[None]":
    """The lock of a run folder: a file inside it (the folder itself is never replaced)."""
    return local_lock(Path(folder) / LOCK, str(folder))


def lock_output(out: str | os.PathLike):
    """The lock of a folder that is replaced as a whole (a mixture, an export): a hidden
    file beside it, since a file inside would be swapped out with the folder."""
    out = Path(out)
    return local_lock(out.parent / f".{out.name}{LOCK}", str(out), remove=True)


# -- one switch: versions behind a pointer ------------------------------------------------


class Snapshot:
    """A folder whose public ``entries`` are links into ``.current``, which points at one
    complete version under ``.v/``. :meth:`stage` makes a new version to write into;
    :meth:`commit` switches the pointer to it in one ``rename``.

    Call both while holding the folder's :func:`lock_folder`.
    """

    def __init__(self, folder: str | os.PathLike, entries: tuple[str, ...], prefix: str = ""):
        """``prefix`` names the hidden pointer, versions and temporary folder
        (``<prefix>.current``, ...) where one folder holds several snapshots."""
        self.folder = Path(folder)
        self.entries = entries
        self.pointer, self.versions, self.tmp_name = (prefix + CURRENT, prefix + VERSIONS, prefix + TMP)

    @property
    def tmp(self) -> Path:
        """Where temporary files go (same file system, invisible to the public globs)."""
        p = self.folder / self.tmp_name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def current(self) -> Path | None:
        """The folder that holds the current state: the version ``.current`` points at; the
        folder itself when its entries are plain files and folders (written before versions
        existed, or copied by a tool that follows links); None when there is no state."""
        link = self.folder / self.pointer
        if link.is_symlink() and link.resolve().is_dir():
            return link.resolve()
        if any((self.folder / e).exists() and not (self.folder / e).is_symlink() for e in self.entries):
            return self.folder
        return None

    def stage(self, name: str | None = None, keep: bool = False) -> Path:
        """A version folder to write the new state into: ``.v/<name>`` (kept as it is when
        ``keep`` and it exists: a resumed attempt), else a new, empty one."""
        name = name or f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.time_ns() % 10**9:09d}"
        path = self.folder / self.versions / name
        cur = self.current()
        if path.exists() and not keep and path.resolve() != cur:
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def link_from_current(self, version: Path, entry: str) -> None:
        """Fill ``version/entry`` (a folder) with hard links to the current version's files,
        so that unchanged files are kept without a copy and the old version stays intact."""
        cur = self.current()
        dst = version / entry
        dst.mkdir(parents=True, exist_ok=True)
        if cur is None or not (cur / entry).is_dir():
            return
        for f in (cur / entry).iterdir():
            if f.is_file() and not (dst / f.name).exists():
                try:
                    os.link(f, dst / f.name)
                except OSError:
                    shutil.copy2(f, dst / f.name)

    def commit(self, version: Path) -> None:
        """Make ``version`` the folder's state in one step, then drop the other versions but
        the one it replaced: a reader that resolved that one before the switch
        (:func:`pinned`) can finish; it goes at the switch after this one."""
        self._adopt_legacy()
        for left in version.rglob(".tmp-*"):  # left by a killed attempt that this one resumed
            left.unlink(missing_ok=True)
        fsync_tree(version)
        for entry in self.entries:
            pub = self.folder / entry
            if not pub.is_symlink():
                os.symlink(os.path.join(self.pointer, entry), pub)
        before = self.current()
        self._point(version.name)
        fsync_dir(self.folder)
        if before is not None and before.name != version.name and before.parent.name == self.versions:
            (self.folder / self.versions / RETIRED).write_text(before.name + "\n")
        self.drop_others(keep=version)

    def _point(self, name: str) -> None:
        tmp = self.folder / f"{self.pointer}.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.join(self.versions, name), tmp)
        os.replace(tmp, self.folder / self.pointer)

    def drop_others(self, keep: Path | None = None) -> None:
        """Remove every version but ``keep``, the current one and the one the last switch
        replaced (readers may still be inside it), and the temporary folder."""
        vers = self.folder / self.versions
        retired = read_text(vers / RETIRED).strip()
        keep_names = {p.name for p in (keep, self.current()) if p is not None and p != self.folder}
        keep_names |= {retired, RETIRED} - {""}
        if vers.is_dir():
            for p in vers.iterdir():
                if p.name not in keep_names:
                    shutil.rmtree(p, ignore_errors=True)
        shutil.rmtree(self.folder / self.tmp_name, ignore_errors=True)

    def _adopt_legacy(self) -> None:
        """A folder written before versions existed holds its entries as plain files: move
        them into a version of their own once, so that the pointer can take over."""
        plain = [e for e in self.entries if (self.folder / e).exists() and not (self.folder / e).is_symlink()]
        if not plain:
            return
        stale = self.folder / self.pointer
        if stale.exists() and not stale.is_symlink():  # a copy of the pointer's target
            shutil.rmtree(stale)
        legacy = self.folder / self.versions / "legacy"
        legacy.mkdir(parents=True, exist_ok=True)
        for e in plain:
            os.replace(self.folder / e, legacy / e)
        self._point("legacy")


def run_snapshot(run: str | os.PathLike) -> Snapshot:
    return Snapshot(run, RUN_ENTRIES)


def dedup_snapshot(run: str | os.PathLike) -> Snapshot:
    return Snapshot(Path(run) / DEDUP, DEDUP_ENTRIES)


def concepts_snapshot(run: str | os.PathLike) -> Snapshot:
    return Snapshot(Path(run) / CONCEPTS, CONCEPT_ENTRIES)
