"""Input objects in a store: a URL, a prefix or a glob listed into objects with their size,
ETag and modification time, and opened for reading pinned to the ETag listed.

A prefix (``s3://bucket/captions/``) is listed with the store's paginated listing (1,000
keys a request on S3, no request per object); a glob (``s3://bucket/x/*.parquet``,
``**`` for any depth) lists the prefix before its first wildcard and matches the keys. The
ETag and size that the listing gives are what a run records of an object (its fingerprint:
the store's content identity, an MD5 of the bytes for an object uploaded in one part).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import IO

from curate.errors import CurateError
from curate.storage.fs import filesystem, is_url, protocol, storage_errors

#: Bytes fetched by one ranged GET of a text stream (JSON lines, CSV/TSV, compressed or
#: not): memory stays near this per open stream; fewer, larger requests for a far store.
STREAM_BLOCK = 16 << 20


@dataclass(frozen=True)
class StoredObject:
    url: str
    size: int
    etag: str  # as the store gives it, without quotes
    mtime_ns: int


def _url(proto: str, path: str) -> str:
    return f"{proto}://{path}"


def _object(proto: str, d: dict) -> StoredObject:
    mtime = d.get("LastModified") or d.get("mtime") or d.get("last_modified")
    ns = int(mtime.timestamp() * 1e9) if hasattr(mtime, "timestamp") else int(float(mtime or 0) * 1e9)
    etag = str(d.get("ETag") or d.get("etag") or d.get("md5Hash") or "").strip('"')
    return StoredObject(_url(proto, d["name"]), int(d.get("size") or 0), etag, ns)


def check_url(url: str) -> None:
    """A URL that carries credentials (``s3://KEY:SECRET@bucket``) is refused: credentials
    come from the environment, and a URL is written into run.json as the input's name."""
    rest = url.split("://", 1)[1]
    if "@" in rest.split("/", 1)[0]:
        raise CurateError(f"{protocol(url)}:// URL with credentials in it; give them in the environment "
                          "(AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and name the object alone")


def list_objects(spec: str) -> list[StoredObject]:
    """The objects a URL names: one object, every object under a prefix, or a glob's matches,
    sorted by key. A missing bucket, object or prefix is a one-line error naming it."""
    check_url(spec)
    fs, path = filesystem(spec)
    proto = protocol(spec)
    with storage_errors(spec):
        if any(ch in path for ch in "*?["):
            found = fs.glob(path, detail=True)
            objs = [d for d in found.values() if d.get("type", "file") == "file"]
            if not objs:
                raise CurateError(f"no objects match {spec!r}")
        elif spec.endswith("/") or "/" not in path.strip("/"):  # a prefix, or a whole bucket
            objs = list(fs.find(path, detail=True).values())
            if not objs:
                raise CurateError(f"{spec}: no objects under this prefix (or no such bucket)")
        else:
            try:
                info = fs.info(path)
            except FileNotFoundError:
                raise CurateError(f"input {spec!r} does not exist") from None
            objs = [info] if info.get("type") == "file" else list(fs.find(path, detail=True).values())
    return sorted((_object(proto, d) for d in objs), key=lambda o: o.url)


#: url -> the object as its listing gave it (:func:`pin`): the object a run reads is the one
#: it listed, and its size and ETag stand for the HEAD request an open would make
_PINNED: dict[str, StoredObject] = {}


def pin(obj: StoredObject) -> None:
    """Remember ``obj`` as it was listed: :func:`open_object` opens it without asking the
    store for its size again, and refuses another ETag."""
    if obj.etag:
        _PINNED[obj.url] = obj


def open_object(url: str, block_size: int | None = None, cache_type: str = "readahead") -> IO:
    """An object opened for ranged reads. Each range is read on condition that the object
    still has the ETag it had when opened (S3 ``If-Match``), and that ETag must be the one
    it was listed with (:func:`pin`): an object replaced between listing and reading is a
    one-line error, as is one replaced while it is read. A listed S3 object is opened from
    its listing (no HEAD request); any other is opened with one."""
    obj = _PINNED.get(url)
    fs, path = filesystem(url)
    kw = {"block_size": block_size or STREAM_BLOCK, "cache_type": cache_type}
    with storage_errors(url):
        if obj is not None and protocol(url) in ("s3", "s3a"):
            f = fs.open(path, "rb", size=obj.size, **kw)
            f.details = {"name": path, "size": obj.size, "ETag": f'"{obj.etag}"', "type": "file"}
            f.read_kw = {**f.read_kw, "IfMatch": f'"{obj.etag}"'}
            return Guarded(f, url, listed=obj.etag)
        f = fs.open(path, "rb", **kw)
    now = str((getattr(f, "details", None) or {}).get("ETag") or "").strip('"')
    etag = obj.etag if obj is not None else ""
    if etag and now and now != etag:
        f.close()
        raise _changed(url, etag, now)
    return Guarded(f, url)


def _changed(url: str, etag: str, now: str = "") -> CurateError:
    was = f"ETag {etag} is now {now}" if now else f"its ETag is no longer {etag}"
    return CurateError(f"{url}: changed since it was listed ({was}); score it again")


class Guarded:
    """A file in a store whose failures, wherever they surface (a reader of pyarrow, polars
    or numpy calling ``read``), are one-line CurateErrors naming the object."""

    def __init__(self, f, url: str, listed: str = ""):
        self.f, self.url = f, url
        self.listed = listed  # opened from its listing: the ETag listed, not yet confirmed by a read

    def read(self, n: int = -1) -> bytes:
        try:
            with storage_errors(self.url):
                data = self.f.read(n)
        except CurateError as e:
            if self.listed and "changed while it was read" in str(e):
                raise _changed(self.url, self.listed) from None
            raise
        if data:
            self.listed = ""
        return data

    def readinto(self, b) -> int:
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def seek(self, pos: int, whence: int = 0) -> int:
        with storage_errors(self.url):
            return self.f.seek(pos, whence)

    def __getattr__(self, name):  # tell, size, closed, seekable, readable, ...
        return getattr(self.f, name)

    def close(self) -> None:
        self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_text(path: str) -> str:
    """A small file's or object's text (a ``state.json``), whole."""
    if not is_url(path):
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    fs, p = filesystem(path)
    with storage_errors(path):
        return fs.cat_file(p).decode("utf-8", "replace")


def is_file(path: str) -> bool:
    if not is_url(path):
        return os.path.isfile(path)
    fs, p = filesystem(path)
    with storage_errors(path):
        return fs.isfile(p)


def dirname(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[0] if is_url(path) else os.path.dirname(path)


def size(path: str) -> int:
    """A file's or object's size (a listed object's from its listing, without a request)."""
    if not is_url(path):
        return os.path.getsize(path)
    if path in _PINNED:
        return _PINNED[path].size
    fs, p = filesystem(path)
    with storage_errors(path):
        return int(fs.size(p))
