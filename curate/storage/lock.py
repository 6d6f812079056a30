"""One writer at a time: an ``flock`` on a local disk; on object storage a lock object
with an owner and a lease.

A folder on a store (``s3://bucket/run``) has no ``flock``. Its writer instead creates
``FOLDER/.curate-lock`` with a conditional write (S3 ``If-None-Match: *``): of two writers
that try at once, the store lets exactly one create it. The object holds the owner (host,
pid, command) and a lease expiry; a thread renews the lease while the command runs, each
renewal conditional on the ETag of the object this writer wrote last (``If-Match``).

* A second writer reads the object and gets one line naming the holder.
* A writer killed with ``kill -9`` cannot delete its lock; once its lease runs out
  (:data:`LEASE_S`), or at once where the holder ran on this host and its process is gone,
  the next writer takes it over with a one-line notice. The takeover
  is conditional on the ETag it read, so of two writers that find the same stale lease
  only one succeeds.
* A writer whose lease was taken over (paused longer than the lease) finds out at its next
  renewal; :meth:`StoreLock.check` then fails before it switches anything.
"""
from __future__ import annotations

import errno
import json
import os
import socket
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from curate.errors import CurateError, first_line
from curate.storage.fs import filesystem, is_url, protocol, storage_errors

# -- on a local disk: flock ------------------------------------------------------------------


def command_line() -> str:
    """What this process is, for a lock's holder line: ``curate mix r.toml --out m``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    return " ".join(["curate" if name in ("curate", "__main__.py") else name, *sys.argv[1:]])[:300]


@contextmanager
def local_lock(lock_file: str | os.PathLike, what: str, remove: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file`` (created when missing) while the block runs.

    ``what`` names the folder in the error a second writer gets. With ``remove`` the file is
    deleted when the lock is released (a lock file beside an output, which would otherwise
    stay behind); a writer that locked a file deleted meanwhile tries again on the new one."""
    import fcntl

    lock_file = Path(lock_file)
    while True:
        try:
            lock_file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise CurateError(f"cannot write to {what}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = local_holder(fd)
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise CurateError(f"cannot lock {what}: {e.strerror or e}") from None
            raise CurateError(
                f"{what} is being written by another curate process ({holder}); "
                "wait for it to finish or write elsewhere"
            ) from None
        if not remove or _same_file(fd, lock_file):
            break
        os.close(fd)  # its holder removed it after we opened it: lock the file there now
    try:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command_line(),
              "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        try:
            yield
        finally:
            if remove:
                lock_file.unlink(missing_ok=True)  # while still held: a waiting opener retries
            else:
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def local_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')}: {info.get('command')}, since {info.get('since')}"


# -- on a store: a lock object with a lease ---------------------------------------------------


#: seconds a lease lasts without renewal (``CURATE_LOCK_LEASE_S`` overrides it)
LEASE_S = 60.0


def lease_seconds() -> float:
    try:
        return float(os.environ.get("CURATE_LOCK_LEASE_S", LEASE_S))
    except ValueError:
        raise CurateError("CURATE_LOCK_LEASE_S: give a number of seconds") from None


def precondition_failed(e: BaseException) -> bool:
    """True for the store's answer to a conditional write that did not hold (HTTP 412, or
    409 for a concurrent conditional write); s3fs raises these as FileExistsError/OSError."""
    text = str(e).lower()
    return isinstance(e, FileExistsError) or "pre-condition" in text or "precondition" in text \
        or "conditionalrequestconflict" in text


def s3_key(url: str) -> tuple[object, str, str]:
    """``(s3fs, bucket, key)`` of an ``s3://`` URL; a one-line error for other stores."""
    if protocol(url) not in ("s3", "s3a"):
        raise CurateError(f"{url}: writing a run, mixture or export needs a store with conditional writes; "
                          "s3:// (and S3-compatible stores) has them")
    fs, path = filesystem(url)
    bucket, _, key = path.partition("/")
    return fs, bucket, key


def put_if(url: str, body: bytes, etag: str | None = None) -> str:
    """Write ``body`` to ``url`` only if it is absent (``etag`` None) or still the object
    with ``etag``; returns the new ETag. Raises FileExistsError when the condition fails."""
    fs, bucket, key = s3_key(url)
    cond = {"IfNoneMatch": "*"} if etag is None else {"IfMatch": etag}
    failed = False
    try:
        with storage_errors(url):
            try:
                return fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, **cond)["ETag"]
            except Exception as e:
                if not precondition_failed(e):
                    raise
                failed = True
    finally:
        fs.invalidate_cache(f"{bucket}/{key}")
    if failed:
        raise FileExistsError(url)


def get_with_etag(url: str) -> tuple[bytes, str] | None:
    """The object's bytes and ETag read in one request, or None when it does not exist."""
    from fsspec.asyn import sync

    fs, bucket, key = s3_key(url)

    async def get():
        r = await fs._call_s3("get_object", Bucket=bucket, Key=key)
        async with r["Body"] as stream:
            return await stream.read(), r["ETag"]

    with storage_errors(url):
        try:
            return sync(fs.loop, get)
        except FileNotFoundError:
            return None


def holder_line(info: dict) -> str:
    if not info:
        return "holder unknown"
    until = time.strftime("%H:%M:%SZ", time.gmtime(info.get("expires", 0)))
    return (f"pid {info.get('pid')} on {info.get('host')}: {info.get('command')}, since {info.get('since')}, "
            f"lease until {until}")


def _parse(body: bytes) -> dict:
    try:
        info = json.loads(body.decode() or "{}")
        return info if isinstance(info, dict) else {}
    except ValueError:
        return {}


def gone_here(info: dict) -> bool:
    """The holder ran on this host and its process no longer exists (killed): its lock need
    not wait for the lease to run out."""
    pid = info.get("pid")
    if info.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


class StoreLock:
    """``with StoreLock(url_of_lock_object, "s3://b/run", command):`` holds the lock."""

    def __init__(self, url: str, what: str, command: str, lease_s: float | None = None):
        if not is_url(url):
            raise CurateError(f"{url}: a store lock needs a URL")
        self.url, self.what, self.command = url, what, command
        self.lease = lease_s if lease_s is not None else lease_seconds()
        self.token = uuid.uuid4().hex
        self.etag: str | None = None
        self.lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed = time.time()
        self._since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def _body(self) -> bytes:
        me = {"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
              "since": self._since, "expires": time.time() + self.lease, "token": self.token}
        return (json.dumps(me) + "\n").encode()

    def acquire(self) -> None:
        try:
            self.etag = put_if(self.url, self._body())
        except FileExistsError:
            self._take_over()
        self._thread = threading.Thread(target=self._beat, name="curate-lock-lease", daemon=True)
        self._thread.start()

    def _take_over(self) -> None:
        got = get_with_etag(self.url)
        if got is None:  # released between our write and our read: try once more
            try:
                self.etag = put_if(self.url, self._body())
                return
            except FileExistsError:
                got = get_with_etag(self.url)
        body, etag = got or (b"", None)
        info = _parse(body)
        expired = info.get("expires", 0) <= time.time()
        if info and not expired and not gone_here(info):
            raise CurateError(f"{self.what} is being written by another curate process ({holder_line(info)}); "
                              "wait for it to finish or write elsewhere")
        try:
            self.etag = put_if(self.url, self._body(), etag)
        except FileExistsError:
            now = _parse((get_with_etag(self.url) or (b"", ""))[0])
            raise CurateError(f"{self.what} is being written by another curate process ({holder_line(now)}); "
                              "wait for it to finish or write elsewhere") from None
        why = "" if expired else "; that process is gone"
        print(f"curate: took over the {'expired ' if expired else ''}lock of {self.what} ({holder_line(info)}{why})",
              file=sys.stderr)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease / 3) and self.renew():
            pass

    def renew(self) -> bool:
        """Extend the lease (conditional on this writer's last ETag); False once it is lost."""
        try:
            self.etag = put_if(self.url, self._body(), self.etag)
        except FileExistsError:
            self.lost = "another writer took the lock over (this command's lease ran out)"
            return False
        except Exception as e:  # a dropped connection: try again at the next beat, within the lease
            if time.time() > self._renewed + self.lease:
                self.lost = f"the lease could not be renewed ({first_line(e)})"
                return False
            return True
        self._renewed = time.time()
        return True

    def check(self) -> None:
        """Fail before a switch when the lock is no longer ours."""
        if self.lost:
            raise CurateError(f"{self.what}: {self.lost}; nothing was switched")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.lost or self.etag is None:
            return
        fs, bucket, key = s3_key(self.url)
        try:
            fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=self.etag)
        except Exception:  # a store without conditional deletes: delete it if it is still ours
            try:
                got = get_with_etag(self.url)
                if got and _parse(got[0]).get("token") == self.token:
                    fs.call_s3("delete_object", Bucket=bucket, Key=key)
            except Exception:  # the store is gone: the lease ends by itself
                pass
        fs.invalidate_cache(f"{bucket}/{key}")

    def __enter__(self) -> "StoreLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
