"""The run folder of ``curate score``: which version an attempt writes (a new one, or the
one an interrupted attempt with the same key left), checks of ``--out`` before any work,
and the clean-up of a new folder when the first attempt wrote nothing."""
from __future__ import annotations

import os
import time
from pathlib import Path

from curate.errors import CurateError
from curate.ingest.inputs import InputFile
from curate.layout import RUN_JSON, SCORES, STATE, VERSIONS, WRITE_PROBE, Snapshot, read_json, score_parts


def version_for(out: Path, snap: Snapshot, key: str, overwrite: bool) -> Path:
    """The version folder this attempt writes: the one an interrupted attempt with the same
    key left (resumed), else a new one; a finished run of the same key is completed again
    in a new version that starts from hard links to its parts."""
    state = read_json(out / STATE)
    current = snap.current()
    prior = read_json(current / RUN_JSON).get("key") if current else None
    if overwrite:
        return snap.stage(f"{key}-{time.time_ns()}")
    if current is not None and prior is not None and prior != key:
        raise CurateError(
            f"{out} already holds a run of other inputs or another chain; "
            "use another --out, or --overwrite to replace it"
        )
    name = state.get("version")
    if state.get("key") == key and name and (out / VERSIONS / name).is_dir() and \
            (current is None or (out / VERSIONS / name).resolve() != current):
        return snap.stage(name, keep=True)
    if current is None and state.get("key") not in (None, key) and \
            name and score_parts(out / VERSIONS / name):
        raise CurateError(
            f"{out} holds an unfinished run of other inputs or another chain; "
            "use another --out, or --overwrite to replace it"
        )
    version = snap.stage(f"{key}-{time.time_ns()}")
    if current is not None:
        snap.link_from_current(version, SCORES)
    return version


def prepare_out(out: Path) -> None:
    real, cwd = os.path.realpath(out), os.path.realpath(os.getcwd())
    if real == cwd or cwd.startswith(real.rstrip(os.sep) + os.sep):
        raise CurateError(f"--out {out} is the current folder or holds it; give a run folder below it (e.g. --out runs/web)")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / WRITE_PROBE
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise CurateError(f"cannot write to {out}: {e.strerror or e}") from None
    scores = out / SCORES
    if scores.exists() and not scores.is_symlink() and not scores.is_dir():
        raise CurateError(f"cannot write to {out}: {scores} is a file, not a run's scores folder")


def discard_new(out: Path) -> None:
    """Undo what a run into a new folder left behind when it wrote no part."""
    if any(score_parts(v) for v in (out / VERSIONS).glob("*")):
        return
    import shutil

    shutil.rmtree(out, ignore_errors=True)


def outside_run(files: list[InputFile], out: Path) -> list[InputFile]:
    """The inputs that are not this run's own parts (a folder or glob that holds --out)."""
    inside = [os.path.join(os.path.realpath(out / d), "") for d in (SCORES, VERSIONS)]
    kept = [f for f in files if not any(os.path.realpath(f.path).startswith(p) for p in inside)]
    if not kept:
        raise CurateError(f"every input is a part of the run in {out}; score other files")
    return kept
