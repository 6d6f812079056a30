"""``curate report``: one self-contained HTML file (plots embedded, no network) + report.json.

The numbers come from :mod:`curate.report.explore`, the sections from
:mod:`curate.report.sections`, the plots from :mod:`curate.report.plots` (matplotlib,
embedded as base64 PNG). A run's page lists its sections at the top; a mixture's page has a
tab for the mixture and one for each of its runs. ``report.json`` holds the numbers behind
every plot and table.

The two files always come from one report: they are written aside and switch together
(``report.html`` and ``report.json`` are links into a hidden version folder,
:class:`curate.layout.Snapshot`), under a lock on ``--out``, so a second report to the
same file while one runs gets a one-line error.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from curate.atomic import write_json, write_text
from curate.errors import CurateError
from curate.layout import MANIFEST_JSON, RUN_JSON, SCORES, Snapshot, lock_output, pinned_store
from curate.report import explore as ex
from curate.report.page import render
from curate.report.sections import mix_sections, run_sections
from curate.storage.fs import exists, is_url, join, put_file
from curate.storage.objects import head_bytes, object_write
from curate.version import __version__


def _mix_runs(mix: ex.Mix) -> list[tuple[str, Path | str]]:
    out = []
    for s in mix.info.get("inputs", []) or []:
        p = s.get("run")
        name = s.get("name", p)
        if p and is_url(p):  # a run on a store
            out.append((str(name), p))
        elif p:
            pp = Path(p)
            if not pp.is_absolute():
                pp = (mix.path / pp) if (mix.path / pp / RUN_JSON).is_file() else pp
            if (pp / RUN_JSON).is_file():
                out.append((str(name), pp))
    return out


def build_report(target: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Write the HTML report of a run or a mixture to ``out`` and its numbers beside it
    (``report.html`` -> ``report.json``), both switched in together."""
    if is_url(out):
        return _report_to_store(target, os.fspath(out))
    out = Path(os.path.abspath(out))
    json_path = out.with_suffix(".json")  # report.html -> report.json
    if json_path == out or not out.name:
        raise CurateError(f"--out {out}: give an HTML file name (its numbers go beside it as .json)")
    if out.is_dir():
        raise CurateError(f"--out {out} is a folder; give an HTML file name inside it (e.g. report.html)")
    created = None if out.parent.is_dir() else str(out.parent)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CurateError(f"cannot write to {out.parent}: {e.strerror or e}") from None
    with lock_output(out):
        for path in (out, json_path):
            _check_replaceable(path)
        doc, data, kind, n = _render(target)
        snap = Snapshot(out.parent, (out.name, json_path.name), prefix=f".{out.name}")
        version = snap.stage()
        try:
            write_json(data, version / json_path.name)
            write_text(doc, version / out.name)
        except BaseException:
            snap.drop_others()
            raise
        snap.commit(version)
    return {"html": str(out), "json": str(json_path), "sections": n, "kind": kind, "created": created}


def _report_to_store(target, url: str) -> dict:
    """The report as two objects on a store: ``report.json`` first, then ``report.html``
    (each replaced whole, in one PUT), under a lock object beside them."""
    stem, dot, suffix = url.rpartition(".")
    json_url = f"{stem}.json" if dot and "/" not in suffix else ""
    if not json_url or json_url == url or url.endswith("/"):
        raise CurateError(f"--out {url}: give an HTML file name (its numbers go beside it as .json)")
    with object_write(url) as tmp:
        for u in (url, json_url):
            head = head_bytes(u)
            if head is not None and not _is_report(head):
                raise CurateError(f"--out: {u} exists and is not a curate report; it would be replaced: "
                                  "choose another file name")
        doc, data, kind, n = _render(target)
        page, numbers = (tmp / u.rsplit("/", 1)[-1] for u in (url, json_url))
        write_json(data, numbers)
        write_text(doc, page)
        put_file(numbers, json_url)
        put_file(page, url)  # last: the file people open
    return {"html": url, "json": json_url, "sections": n, "kind": kind, "created": None}


def _check_replaceable(path: Path) -> None:
    """A file a report would replace must be a report: a link an earlier report switched, or
    a plain file that names itself a curate report (never an input or another file)."""
    if path.is_symlink() or not path.exists():
        return
    if path.is_dir():
        raise CurateError(f"--out: {path} is a folder; choose another report file name")
    with open(path, "rb") as f:
        head = f.read(4096)
    if not _is_report(head):
        raise CurateError(f"--out: {path} exists and is not a curate report; it would be replaced: "
                          "choose another file name")


def _is_report(head: bytes) -> bool:
    """Whether a file's first bytes are a curate report's (its HTML or its numbers)."""
    return b"curate report" in head or b'"curate_version"' in head


def _kind(target) -> str | None:
    """"mixture", "run" or None for a folder, or a folder's URL on a store."""
    if is_url(target):
        version = pinned_store(target)
        return "mixture" if exists(join(version, MANIFEST_JSON)) else "run" if exists(join(version, RUN_JSON)) else None
    target = Path(target)
    if (target / MANIFEST_JSON).is_file():
        return "mixture"
    return "run" if (target / RUN_JSON).is_file() or (target / SCORES).exists() else None


def _render(target) -> tuple[str, dict, str, int]:
    """(HTML, numbers, "run" or "mixture", sections) of a run or mixture's report."""
    target = os.fspath(target).rstrip("/") if is_url(target) else Path(target)
    data: dict = {"curate_version": __version__, "target": str(target),
                  "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "report_id": f"{time.time_ns():x}-{os.getpid()}"}  # the HTML carries it too
    kind = _kind(target)
    if kind == "mixture":
        mix = ex.open_mix(target)
        parts = [("Mixture", mix_sections(mix, data))]
        data["runs"] = {}
        for name, path in _mix_runs(mix):
            data["runs"][name] = {}
            parts.append((f"run {name}", run_sections(ex.open_run(path), data["runs"][name])))
    elif kind == "run":
        parts = [("Run", run_sections(ex.open_run(target), data))]
    else:
        raise CurateError(f"{target}: not a run (run.json) or a mixture (manifest.json)")
    title = f"curate report: {kind} {str(target).rsplit('/', 1)[-1]}"
    doc = render(title, f"{target} · generated {data['created']} · curate {__version__}", parts,
                 report_id=data["report_id"])
    return doc, data, kind, sum(len(s) for _, s in parts)
