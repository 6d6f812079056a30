"""Where curate reads and writes: local paths and URLs through one layer, fsspec.

``s3://`` is the store the tests run against (a real S3 API server on loopback); any other
fsspec protocol whose package is installed (``gs://`` with gcsfs, ``az://`` with adlfs, ...)
goes through the same calls. Local paths keep their own fast paths: only a URL goes through
fsspec. Credentials and endpoints come the standard way (the AWS environment and config
files: ``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for an S3-compatible store); curate never writes
a secret into a file, a log or an error message (:func:`redact`).
"""
from curate.storage.fs import (
    exists,
    filesystem,
    is_url,
    join,
    open_file,
    redact,
    storage_errors,
)

__all__ = ["exists", "filesystem", "is_url", "join", "open_file", "redact", "storage_errors"]
