"""``curate verify``: re-read every input file a mixture took rows from and compare each
selected caption's content hash with the one stored in the manifest; for a WebDataset shard,
also each selected image: its member, offset, size and content hash (``image_hash``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.audit.lookup import LIST_LIMIT, spilled_connection
from curate.db import arrow_reader, first_row, sql_str
from curate.layout import MANIFEST, RECIPE
from curate.mix.manifest import load_mixture, resolve_source_file
from curate.mix.recipe import load_recipe
from curate.storage import is_url
from curate.storage.commit import reading_copy

#: The image columns of a WebDataset row that must be as scored for its image to be exported.
IMAGE_CHECKED = ("image_member", "image_offset", "image_size", "image_hash")
#: rows of an input file read at once, and of the selected rows streamed beside them
BATCH_ROWS = 100_000

# -- verify --------------------------------------------------------------------------------


def verify(mix: str | os.PathLike, full: bool = False, memory_limit: str | int | None = None) -> dict[str, Any]:
    """Re-read the sources of a mixture and compare every selected caption's content hash.

    A file whose fingerprint still equals the one recorded when it was scored is
    intact as a whole; ``full`` re-reads and compares its rows anyway. At most LIST_LIMIT
    changes are listed; ``changed`` counts them all. The selected rows of the files read
    come as one stream in (run, file, row) order, sorted by DuckDB under ``memory_limit``
    (spilling beyond it), and each file is read batch by batch beside it: memory does not
    grow with the mixture.
    """
    from curate.ingest.recheck import unchanged

    mix = reading_copy(os.fspath(mix)) if is_url(mix) else Path(mix)  # a mixture on a store: its current version
    m = load_mixture(mix)
    manifest = str(mix / MANIFEST)
    run_dirs = mixture_run_dirs(mix, m)
    changes: list[dict] = []
    changed = 0
    files_out: list[dict] = []
    to_read: list[tuple[dict, Path, dict]] = []
    with spilled_connection(memory_limit) as con:
        per_file = con.execute(
            f"SELECT run, source, count(*) FROM read_parquet({sql_str(manifest)}) GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        inputs = {i["name"]: i for i in m["inputs"]}
        for run_name, source, n in per_file:
            inp = inputs.get(run_name, {})
            rec = next((f for f in inp.get("files", []) if f["source"] == source), {})
            path = resolve_source_file(source, run_dirs.get(run_name, Path(".")), rec.get("bytes")) \
                if is_url(source) or not (rec.get("path") and Path(rec["path"]).is_file()) else Path(rec["path"])
            entry = {"run": run_name, "source": source, "path": str(path) if path else None, "rows": n}
            files_out.append(entry)
            if path is None:
                entry["status"] = "missing"
                changed += 1
                changes.append({"run": run_name, "source": source, "problem": f"file not found ({n:,} selected rows)"})
                continue
            same = unchanged(path, rec)  # fingerprint of a local file, ETag of an object in a store
            entry["fingerprint_matches"] = bool(same)
            if same and not full:
                entry["status"] = "intact (fingerprint)"
                continue
            to_read.append((entry, path, inp))
        if to_read:
            selected = Selected(con, manifest, [(e["run"], e["source"]) for e, _, _ in to_read])
            for entry, path, inp in to_read:
                found, examples = _check_rows(con, selected, entry["run"], entry["source"], path, inp,
                                              LIST_LIMIT - len(changes))
                changed += found
                changes += examples
                entry["status"] = "intact (rows)" if not found else f"{found:,} row(s) changed"
    checked = sum(e["rows"] for e in files_out if "fingerprint_matches" in e)
    return {"mixture": m["mixture"], "ok": changed == 0, "checked_rows": checked,
            "files": files_out, "changes": changes, "changed": changed}


class Selected:
    """The manifest's rows of some files, streamed in (run, source, row) order (DuckDB
    sorts them, spilling to disk under the connection's memory limit); :meth:`take` hands
    out one file's rows, up to a row number, in that order."""

    def __init__(self, con, manifest: str, files: list[tuple[str, str]]):
        have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_str(manifest)})").fetchall()}
        self.images = [c for c in IMAGE_CHECKED if c in have]
        wanted = ", ".join(f"({sql_str(r)}, {sql_str(s)})" for r, s in files)
        self.reader = arrow_reader(con.cursor(), (
            f"SELECT run, source, \"row\", sample_id, caption_hash{''.join(', ' + c for c in self.images)} "
            f"FROM read_parquet({sql_str(manifest)}) WHERE (run, source) IN ({wanted}) "
            "ORDER BY run, source, \"row\""), BATCH_ROWS)
        self.held = None  # rows read from the stream, not handed out yet

    def take(self, run: str, source: str, end: int | None = None) -> pa.Table:
        """The next rows of file (run, source) with row < end (every one left when None)."""
        out = []
        while True:
            if self.held is None or self.held.num_rows == 0:
                try:
                    self.held = pa.Table.from_batches([self.reader.read_next_batch()])
                except StopIteration:
                    break
            t = self.held
            mine = pc.and_(pc.equal(t["run"], run), pc.equal(t["source"], source))
            if end is not None:
                mine = pc.and_(mine, pc.less(t["row"], end))
            k = pc.sum(pc.cast(mine, pa.int64())).as_py() or 0  # a prefix: the stream is sorted
            out.append(t.slice(0, k))
            self.held = t.slice(k)
            if self.held.num_rows:
                break
        return pa.concat_tables(out) if out else pa.table({})


def mixture_run_dirs(mix: Path, m: dict) -> dict[str, Path]:
    """Each source's run folder: as recorded, or (when the folders moved together) as the
    resolved recipe beside the manifest names it, relative to the mixture folder."""
    out = {i["name"]: Path(i["run"]) for i in m["inputs"]}
    if all(p.is_dir() for p in out.values()) or not (mix / RECIPE).is_file():
        return out
    recipe = load_recipe(mix / RECIPE)
    return {name: p if p.is_dir() else recipe.source(name).path for name, p in out.items()}


def _check_rows(con, selected: Selected, run_name: str, source: str, path: Path, inp: dict,
                room: int) -> tuple[int, list[dict]]:
    """Stream one input file beside its selected rows and compare the caption hashes.

    Returns how many rows differ and at most ``room`` of them, described."""
    from curate.ingest.formats import FORMATS
    from curate.ingest.inputs import inspect_input, resolve_inputs
    from curate.ingest.readers import read_batches

    f = resolve_inputs([str(path)])[0]
    images = selected.images if FORMATS[f.format].images else []
    inspect_input(f, inp.get("header_columns") or ())
    caption, id_col = inp.get("caption_column") or "caption", inp.get("id_column")
    if caption not in f.columns and not getattr(f, "empty", False):
        return selected.take(run_name, source).num_rows, [
            {"run": run_name, "source": source,
             "problem": f"caption column {caption!r} is gone (columns: {', '.join(f.columns)})"}]
    found, examples, start = 0, [], 0
    checks = [("caption changed", "CAST('0x' || left(md5(g.caption), 16) AS UBIGINT) IS DISTINCT FROM w.caption_hash")]
    if images:
        differs = (f"CAST(g.{c} AS VARCHAR) IS DISTINCT FROM CAST(w.{c} AS VARCHAR)" for c in images)
        checks.append(("image changed (bytes, size or place in the tar)", " OR ".join(differs)))
    try:
        for batch in read_batches(f, caption, id_col, images, BATCH_ROWS):
            n = batch.height
            want = selected.take(run_name, source, start + n)
            start += n
            if not want.num_rows:
                continue
            got = pa.table({"row": pa.array(np.arange(start - n, start, dtype=np.int64)),
                            "caption": batch["caption"].to_arrow(), **{c: batch[c].to_arrow() for c in images}})
            con.register("want", want)
            con.register("got", got)
            for problem, cond in checks:  # a row whose caption changed is listed once
                bad = f"FROM want AS w JOIN got AS g USING (\"row\") WHERE ({cond})"
                if problem != "caption changed":
                    bad += f" AND NOT ({checks[0][1]})"
                k = first_row(con, f"SELECT count(*) {bad}")[0]
                if k:
                    found += k
                    examples += _described(con, f"SELECT w.\"row\", w.sample_id {bad} ORDER BY w.\"row\"",
                                           room - len(examples), run_name, source, problem)
        gone = selected.take(run_name, source)  # rows past the file's end
        if gone.num_rows:
            found += gone.num_rows
            con.register("want", gone)
            examples += _described(con, "SELECT \"row\", sample_id FROM want ORDER BY \"row\"", room - len(examples),
                                   run_name, source, f"row missing (the file now has {start:,} rows)")
    finally:
        for name in ("want", "got"):
            con.unregister(name)
    return found, examples


def _described(con, sql: str, room: int, run_name: str, source: str, problem: str) -> list[dict]:
    if room <= 0:
        return []
    rows = con.execute(f"{sql} LIMIT {int(room)}").fetchall()
    return [{"run": run_name, "source": source, "row": r, "sample_id": s, "problem": problem} for r, s in rows]

