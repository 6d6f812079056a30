"""URLs and local paths behind one file-system layer (fsspec), with one-line errors."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from functools import lru_cache
from typing import IO, Iterator

from curate.errors import CurateError, first_line

#: how many times one request to a store is tried (botocore's "adaptive" mode backs off
#: exponentially and on throttling) before the error reaches the user as one line;
#: ``AWS_MAX_ATTEMPTS`` and ``AWS_RETRY_MODE`` set it the standard way
ATTEMPTS = 5
_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_SECRETS = re.compile(
    r"(?i)((?:aws_)?(?:secret_access_key|session_token|access_key_id|signature|credential|token)"
    r"[\"']?\s*[=:]\s*[\"']?)[^\s\"'&,;]+"
)
_USERINFO = re.compile(r"(://)[^/@\s]+@")


def is_url(path: str | os.PathLike) -> bool:
    """True for ``scheme://...`` other than ``file://``: a path fsspec resolves."""
    m = _SCHEME.match(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
    return bool(m) and m.group(1).lower() not in ("file", "local")


def protocol(url: str) -> str:
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else "file"


@lru_cache(maxsize=None)
def _store(proto: str):
    import fsspec

    if proto in ("s3", "s3a"):
        try:
            import s3fs
        except ImportError as e:  # pragma: no cover - s3fs is a dependency
            raise CurateError("s3:// paths need the s3fs package (pip install s3fs)") from e
        # botocore reads AWS_PROFILE, AWS_ENDPOINT_URL, AWS_REGION and the config files itself
        # a new client each time (fsspec would hand back one made under an older environment);
        # no listings cache: a listing is read once per input spec, and a stale one would hide
        # an object changed since
        retries = {"max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or ATTEMPTS),
                   "mode": os.environ.get("AWS_RETRY_MODE") or "adaptive"}
        # s3fs tries a request again once more on its own (a body cut off mid-read, which
        # botocore's retries do not cover), each try with botocore's attempts
        fs = s3fs.S3FileSystem(config_kwargs={"retries": retries}, skip_instance_cache=True,
                               use_listings_cache=False)
        fs.retries = 2
        return fs
    try:
        return fsspec.filesystem(proto)
    except (ImportError, ValueError) as e:
        raise CurateError(f"{proto}:// paths need a file-system package fsspec does not find: {first_line(e)}") from e


def query_filesystem(url: str):
    """The file system DuckDB reads ``url``'s store through (``register_filesystem``): a
    client of its own whose files keep no read-ahead cache. DuckDB asks for the byte ranges
    it needs (a Parquet footer, column chunks); s3fs's default would fetch and hold 50 MB
    blocks per open file, memory that DuckDB's ``memory_limit`` does not count."""
    proto = protocol(url)
    if proto not in ("s3", "s3a"):
        return _store(proto)
    fs = _store.__wrapped__(proto)  # a client of its own (s3fs instances are not shared)
    fs.default_cache_type = "none"
    return fs


def clear_clients() -> None:
    """Forget the store clients made so far: the next call builds them from the environment
    as it is now (credentials, endpoint)."""
    _store.cache_clear()


def filesystem(path: str | os.PathLike):
    """``(fs, path_in_fs)`` for a URL or a local path (fsspec's local file system)."""
    path = os.fspath(path)
    if not is_url(path):
        return _store("file"), os.path.abspath(path)
    proto = protocol(path)
    fs = _store(proto)
    return fs, fs._strip_protocol(path)


def join(base: str | os.PathLike, *parts: str) -> str:
    """``base/part/...`` for a URL or a local path, as a string."""
    base = os.fspath(base)
    if not is_url(base):
        return os.path.join(base, *parts)
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def redact(text: str) -> str:
    """``text`` without credentials: user:secret@ in URLs, key=value pairs that name keys,
    tokens or signatures."""
    return _SECRETS.sub(r"\1***", _USERINFO.sub(r"\1", text))


@contextmanager
def storage_errors(what: str | os.PathLike) -> Iterator[None]:
    """Turn the store's failures into one-line CurateErrors naming ``what`` (an object or
    prefix), without credentials: a missing bucket or object, denied access, a dropped
    connection after the retries, an object that changed while it was read."""
    what = redact(os.fspath(what))
    try:
        yield
    except CurateError:
        raise
    except FileNotFoundError as e:
        raise CurateError(f"{what}: not found ({redact(first_line(e))})") from e
    except PermissionError as e:
        raise CurateError(f"{what}: access denied ({redact(first_line(e))})") from e
    except Exception as e:
        name = type(e).__name__
        if name == "FileExpired":  # s3fs: the ETag pinned when the object was opened is gone
            raise CurateError(f"{what}: changed while it was read (its ETag is no longer the one it had "
                              "when reading began); read it again") from e
        if name in ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound"):
            raise CurateError(f"{what}: no usable credentials ({redact(first_line(e))})") from e
        if name in ("ClientError", "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                    "ConnectionClosedError", "ResponseStreamingError", "ServerDisconnectedError",
                    "ClientOSError", "ClientPayloadError") or isinstance(e, OSError):
            raise CurateError(f"{what}: {name}: {redact(first_line(e))}") from e
        raise


def exists(path: str | os.PathLike) -> bool:
    if not is_url(path):
        return os.path.exists(path)
    fs, p = filesystem(path)
    with storage_errors(path):
        return fs.exists(p)


def open_file(path: str | os.PathLike, mode: str = "rb") -> IO:
    """An open file for a URL (fsspec, read by ranges) or a local path (the OS)."""
    if not is_url(path):
        return open(path, mode)
    fs, p = filesystem(path)
    with storage_errors(path):
        return fs.open(p, mode)


def put_file(local: str | os.PathLike, url: str) -> None:
    """Upload one local file as the object ``url`` (one PUT, or one multipart upload that the
    store completes in one step: readers see the old object or the new one)."""
    fs, p = filesystem(url)
    with storage_errors(url):
        fs.put_file(os.fspath(local), p)
        fs.invalidate_cache(p)
