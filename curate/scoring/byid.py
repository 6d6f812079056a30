"""A run's index by sample id: where each sample's row is, found in a few reads.

Sample ids are 64-bit hashes, so the parts of a run hold them in no order, and a lookup by
id would read the ``sample_id`` column of every part. The index is a layout by id, written
with every version of a run (``score``, ``decide``, ``curate index``)::

    RUN/by-id/by-id.json              the run key it was made for, its bucket bits, the parts
    RUN/by-id/bucket-NNNNN.parquet    (sample_id, part, row), sorted by sample_id

Bucket ``b`` holds the ids whose top ``bits`` bits are ``b``; ``bits`` is chosen so that a
bucket holds at most about :data:`BUCKET_ROWS` rows. A bucket's row groups are small
(:data:`ROW_GROUP` rows) and carry min/max statistics, so a lookup reads ``by-id.json``, one
bucket's footer and one row group of it, then the footer and one row group of the part that
holds the row: a few ranged reads on a store. ``row`` is the row within the part, so the
part's own row groups may be of any size.

Building is bounded in memory whatever the run's size: the ids are read part by part and
spilled per bucket (at most :data:`CHUNK_ROWS` rows held at once), then each bucket is
sorted alone.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.atomic import write_json
from curate.errors import CurateError
from curate.layout import BUCKET, BY_ID, BY_ID_JSON, SCORES, by_id_path, numbered, score_parts, under
from curate.storage.fs import filesystem, is_url, storage_errors

#: the most rows a bucket is meant to hold (about 32 MB to sort)
BUCKET_ROWS = 1 << 21
#: rows of a bucket's row group: what one lookup reads of it (about 128 KB of ids)
ROW_GROUP = 8192
#: ids held before they are spilled to their buckets (about 16 MB)
CHUNK_ROWS = 1 << 20
#: the index's own format
FORMAT = 1
SCHEMA = pa.schema([("sample_id", pa.uint64()), ("part", pa.uint32()), ("row", pa.uint32())])


def bucket_bits(rows: int) -> int:
    """Top bits of the id that name its bucket: 0 (one bucket) up to BUCKET_ROWS rows."""
    return 0 if rows <= BUCKET_ROWS else math.ceil(math.log2(rows / BUCKET_ROWS))


def buckets_of(ids: np.ndarray, bits: int) -> np.ndarray:
    return (ids >> np.uint64(64 - bits)).astype(np.int64) if bits else np.zeros(len(ids), np.int64)


def write_index(version: Path, key: str | None, work: Path) -> dict:
    """Build ``version/by-id/`` from the version's parts (replacing one there); ``work``: a
    folder on the same file system for the spill. Returns what ``by-id.json`` says."""
    parts = score_parts(version)
    if len(parts) >= 2**32:
        raise CurateError(f"{version}: too many parts to index ({len(parts):,})")
    rows = [pq.ParquetFile(p).metadata.num_rows for p in parts]
    bits = bucket_bits(sum(rows))
    stage = Path(tempfile.mkdtemp(prefix=".by-id-", dir=work))
    try:
        out = stage / BY_ID
        out.mkdir()
        spill = [pa.ipc.new_stream(numbered(stage, BUCKET, b, ".arrows"), SCHEMA) for b in range(1 << bits)]
        held: list[pa.RecordBatch] = []

        def flush() -> None:
            if not held:
                return
            t = pa.Table.from_batches(held, SCHEMA).combine_chunks()
            held.clear()
            b = buckets_of(t.column("sample_id").to_numpy(), bits)
            order = np.argsort(b, kind="stable")
            t = t.take(order)
            edges = np.searchsorted(b[order], np.arange((1 << bits) + 1))
            for i in np.flatnonzero(np.diff(edges)):
                spill[i].write_table(t.slice(edges[i], edges[i + 1] - edges[i]))

        n = 0
        for i, ids in enumerate(_read_ids(parts)):
            if len(ids) >= 2**32:
                raise CurateError(f"{parts[i]}: too many rows in one part to index ({len(ids):,})")
            held.append(pa.record_batch([ids, pa.array(np.full(len(ids), i, np.uint32)),
                                         pa.array(np.arange(len(ids), dtype=np.uint32))], schema=SCHEMA))
            n += len(ids)
            if sum(b.num_rows for b in held) >= CHUNK_ROWS:
                flush()
        flush()
        for w in spill:
            w.close()
        for b in range(1 << bits):
            _write_bucket(numbered(stage, BUCKET, b, ".arrows"), numbered(out, BUCKET, b))
        info = {"format": FORMAT, "run_key": key, "rows": n, "bits": bits, "row_group": ROW_GROUP,
                "parts": [p.name for p in parts], "part_rows": rows}
        write_json(info, out / BY_ID_JSON)
        old = version / BY_ID
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return info


def _read_ids(parts: list[Path]):
    """Each part's ``sample_id`` column in order, read a few parts ahead by threads."""
    ahead = 2 * (os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        pending = deque(pool.submit(_ids, p) for p in parts[:ahead])
        for p in parts[ahead:] + [None] * min(ahead, len(parts)):
            yield pending.popleft().result()
            if p is not None:
                pending.append(pool.submit(_ids, p))


def _ids(part: Path) -> pa.Array:
    return pq.read_table(part, columns=["sample_id"]).column("sample_id").combine_chunks().cast(pa.uint64())


def _write_bucket(spilled: Path, dst: Path) -> None:
    """One bucket's spilled rows, sorted by (sample_id, part, row), as small row groups."""
    with pa.ipc.open_stream(spilled) as r:
        t = r.read_all()
    spilled.unlink()
    if t.num_rows:
        cols = [t.column(c).to_numpy() for c in ("row", "part", "sample_id")]
        t = t.take(np.lexsort(cols))
    pq.write_table(t, dst, row_group_size=ROW_GROUP, compression="zstd", use_dictionary=["part"],
                   write_statistics=True)


# -- lookups -------------------------------------------------------------------------------


def _open(path):
    """A file for pyarrow: a local path, or an object read by ranges (no read-ahead)."""
    if not is_url(path):
        return path
    from curate.storage.listing import open_object

    return open_object(str(path), cache_type="none")


def read_info(version) -> dict | None:
    """``by-id.json`` of a run version (a folder or a URL), or None where there is none."""
    p = by_id_path(version, BY_ID_JSON)
    if is_url(p):
        fs, key = filesystem(p)
        with storage_errors(p):
            try:
                return json.loads(fs.cat_file(key).decode())
            except FileNotFoundError:
                return None
    try:
        return json.loads(Path(p).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def index_problem(info: dict | None, run: dict) -> str | None:
    """Why the index of a run (``run``: its ``run.json``) cannot answer for it; None when
    it can."""
    if info is None:
        return "it has no index by sample id (curate index RUN writes one)"
    if info.get("format") != FORMAT or "bits" not in info:
        return "its index by sample id is unreadable or of another format (curate index RUN writes it again)"
    if info.get("run_key") != run.get("key") or info.get("rows") != run.get("rows", info.get("rows")):
        return "its index by sample id was made for other scores (curate index RUN writes it again)"
    return None


def locate(version, info: dict, sid: int) -> list[tuple[int, int]]:
    """(part number, row in the part) of every row of ``sid``, from the index."""
    bits = info["bits"]
    path = by_id_path(version, numbered("", BUCKET, int(sid >> (64 - bits)) if bits else 0).name)
    is_sid = pl.col("sample_id") == pl.lit(sid, pl.UInt64)
    if not is_url(path):  # polars skips the row groups whose statistics rule the id out
        with storage_errors(path):
            return pl.scan_parquet(path).filter(is_sid).select("part", "row").collect().rows()
    with storage_errors(path):
        pf = pq.ParquetFile(_open(path))
        found: list[tuple[int, int]] = []
        for g in range(pf.metadata.num_row_groups):  # row groups (a few hundred), not rows
            st = pf.metadata.row_group(g).column(0).statistics
            if st is None or not st.has_min_max or st.min <= sid <= st.max:
                # polars, not numpy: pyarrow's conversions to numpy import pandas (a second at start)
                found += pl.from_arrow(pf.read_row_group(g)).filter(is_sid).select("part", "row").rows()
    return found


def rows_by_id(version, info: dict, sid: int) -> list[pa.Table] | None:
    """The run's rows of ``sid`` (one-row tables of every column; none where the run does
    not hold it), read through the index; None when the index points at a row that holds
    another id (it does not belong to these parts)."""
    tables = []
    for part, row in locate(version, info, sid):
        if part >= len(info["parts"]):
            return None
        t = _row(under(version, SCORES, info["parts"][part]), row)
        if t is None or t.column("sample_id")[0].as_py() != sid:
            return None
        tables.append(t)
    return tables


def _row(path, row: int) -> pa.Table | None:
    """Row ``row`` of a part (None past its end): locally, polars decodes only the pages
    that hold it; from a store, the one row group that holds it, by ranged reads."""
    with storage_errors(path):
        if not is_url(path):
            t = pl.scan_parquet(path).slice(row, 1).collect()
            return t.to_arrow() if t.height else None
        pf = pq.ParquetFile(_open(path))
        start = 0
        for g in range(pf.metadata.num_row_groups):
            n = pf.metadata.row_group(g).num_rows
            if row < start + n:
                return pf.read_row_group(g).slice(row - start, 1)
            start += n
    return None


def index_run(run: str | os.PathLike) -> dict:
    """Write the index of a run made before indexes existed (or again): a new version of the
    run with the same parts (hard links), ``run.json`` and ``chain.toml`` and a new index.
    A run on a store is downloaded, indexed and switched in as a new version."""
    from curate.layout import CHAIN_TOML, RUN_JSON, load_run, lock_folder, run_snapshot

    if is_url(run):
        from curate.storage.commit import store_write

        with store_write(os.fspath(run), "a run") as w:
            w.materialise_run()
            info = index_run(w.local)
            w.commit_run()
        return info
    load_run(run)
    with lock_folder(run):
        key = load_run(run).get("key")  # again under the lock: another writer may have finished
        snap = run_snapshot(run)
        current = snap.current()
        version = snap.stage()
        try:
            snap.link_from_current(version, SCORES)
            for name in (RUN_JSON, CHAIN_TOML):
                if (current / name).is_file():
                    shutil.copy2(current / name, version / name)
            info = write_index(version, key, snap.tmp)
        except BaseException:
            snap.drop_others()
            raise
        snap.commit(version)
    return info
