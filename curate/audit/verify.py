"""``curate verify``: re-read every input file a mixture took rows from and compare each
selected caption's content hash with the one stored in the manifest; for a WebDataset shard,
also each selected image: its member, offset, size and content hash (``image_hash``)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate.audit.lookup import LIST_LIMIT
from curate.db import arrow_table, connect, first_row, sql_str
from curate.layout import MANIFEST, RECIPE
from curate.mix.manifest import load_mixture, resolve_source_file
from curate.mix.recipe import load_recipe
from curate.storage import is_url
from curate.storage.commit import reading_copy

#: The image columns of a WebDataset row that must be as scored for its image to be exported.
IMAGE_CHECKED = ("image_member", "image_offset", "image_size", "image_hash")

# -- verify --------------------------------------------------------------------------------


def verify(mix: str | os.PathLike, full: bool = False) -> dict[str, Any]:
    """Re-read the sources of a mixture and compare every selected caption's content hash.

    A file whose fingerprint still equals the one recorded when it was scored is
    intact as a whole; ``full`` re-reads and compares its rows anyway. At most LIST_LIMIT
    changes are listed; ``changed`` counts them all.
    """
    from curate.ingest.recheck import unchanged

    mix = reading_copy(os.fspath(mix)) if is_url(mix) else Path(mix)  # a mixture on a store: its current version
    m = load_mixture(mix)
    manifest = str(mix / MANIFEST)
    run_dirs = mixture_run_dirs(mix, m)
    con = connect()
    changes: list[dict] = []
    changed = 0
    files_out: list[dict] = []
    checked = 0
    try:
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
            checked += n
            if same and not full:
                entry["status"] = "intact (fingerprint)"
                continue
            found, examples = _check_rows(con, manifest, run_name, source, path, inp, LIST_LIMIT - len(changes))
            changed += found
            changes += examples
            entry["status"] = "intact (rows)" if not found else f"{found:,} row(s) changed"
    finally:
        con.close()
    return {"mixture": m["mixture"], "ok": changed == 0, "checked_rows": checked,
            "files": files_out, "changes": changes, "changed": changed}


def mixture_run_dirs(mix: Path, m: dict) -> dict[str, Path]:
    """Each source's run folder: as recorded, or (when the folders moved together) as the
    resolved recipe beside the manifest names it, relative to the mixture folder."""
    out = {i["name"]: Path(i["run"]) for i in m["inputs"]}
    if all(p.is_dir() for p in out.values()) or not (mix / RECIPE).is_file():
        return out
    recipe = load_recipe(mix / RECIPE)
    return {name: p if p.is_dir() else recipe.source(name).path for name, p in out.items()}


def _check_rows(con, manifest: str, run_name: str, source: str, path: Path, inp: dict,
                room: int) -> tuple[int, list[dict]]:
    """Stream one input file and compare the selected rows' caption hashes.

    Returns how many rows differ and at most ``room`` of them, described."""
    from curate.ingest.formats import FORMATS
    from curate.ingest.inputs import inspect_input, resolve_inputs
    from curate.ingest.readers import read_batches

    have = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet({sql_str(manifest)})").fetchall()}
    images = [c for c in IMAGE_CHECKED if c in have]
    want = arrow_table(con,
        f"SELECT \"row\", sample_id, caption_hash{''.join(', ' + c for c in images)} "
        f"FROM read_parquet({sql_str(manifest)}) "
        f"WHERE run = {sql_str(run_name)} AND source = {sql_str(source)} ORDER BY \"row\""
    )
    f = resolve_inputs([str(path)])[0]
    images = images if FORMATS[f.format].images else []
    inspect_input(f, inp.get("header_columns") or ())
    caption, id_col = inp.get("caption_column") or "caption", inp.get("id_column")
    if caption not in f.columns and not getattr(f, "empty", False):
        return want.num_rows, [{"run": run_name, "source": source,
                                "problem": f"caption column {caption!r} is gone (columns: {', '.join(f.columns)})"}]
    found, examples, start = 0, [], 0
    con.register("want", want)
    try:
        for batch in read_batches(f, caption, id_col, images, 100_000):
            n = batch.height
            got = pa.table({"row": pa.array(np.arange(start, start + n, dtype=np.int64)),
                            "caption": batch["caption"].to_arrow(), **{c: batch[c].to_arrow() for c in images}})
            con.register("got", got)
            checks = [("caption changed",
                       "CAST('0x' || left(md5(g.caption), 16) AS UBIGINT) IS DISTINCT FROM w.caption_hash")]
            if images:
                differs = (f"CAST(g.{c} AS VARCHAR) IS DISTINCT FROM CAST(w.{c} AS VARCHAR)" for c in images)
                checks.append(("image changed (bytes, size or place in the tar)", " OR ".join(differs)))
            for problem, cond in checks:  # a row whose caption changed is listed once
                bad = f"FROM want AS w JOIN got AS g USING (\"row\") WHERE ({cond})"
                if problem != "caption changed":
                    bad += f" AND NOT ({checks[0][1]})"
                k = first_row(con, f"SELECT count(*) {bad}")[0]
                if k:
                    found += k
                    examples += _described(con, f"SELECT w.\"row\", w.sample_id {bad} ORDER BY w.\"row\"",
                                           room - len(examples), run_name, source, problem)
            con.unregister("got")
            start += n
        gone = f"FROM want WHERE \"row\" >= {start}"
        k = first_row(con, f"SELECT count(*) {gone}")[0]
        if k:
            found += k
            examples += _described(con, f"SELECT \"row\", sample_id {gone} ORDER BY \"row\"", room - len(examples),
                                   run_name, source, f"row missing (the file now has {start:,} rows)")
    finally:
        con.unregister("want")
    return found, examples


def _described(con, sql: str, room: int, run_name: str, source: str, problem: str) -> list[dict]:
    if room <= 0:
        return []
    rows = con.execute(f"{sql} LIMIT {int(room)}").fetchall()
    return [{"run": run_name, "source": source, "row": r, "sample_id": s, "problem": problem} for r, s in rows]

