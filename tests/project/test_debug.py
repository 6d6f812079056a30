"""--debug on every command; expected errors as one line, bugs with their traceback; the
one progress protocol; no silent fallback that changes scores."""
from __future__ import annotations

import pytest
from helpers import invoke, ok, one_line_error

from curate.cli import cli
from curate.errors import CurateError
from curate.progress import LogReporter, Reporter, Stage


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_has_debug(name):
    assert "debug" in {p.name for p in cli.commands[name].params}


def test_bad_input_is_one_line_and_debug_shows_the_traceback(tmp_path):
    one_line_error(invoke("score", tmp_path / "missing.parquet", "--out", tmp_path / "run"), "missing.parquet")
    res = invoke("score", tmp_path / "missing.parquet", "--out", tmp_path / "run", "--debug")
    assert res.exit_code == 1 and isinstance(res.exception, CurateError)


def test_an_oserror_without_a_path_is_a_bug_not_a_one_line_message(tmp_path, monkeypatch):
    """An OSError that names no file is not about the user's paths: it keeps its traceback."""
    import curate.report.html

    def broken(*a, **k):
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(curate.report.html, "build_report", broken)
    (tmp_path / "run").mkdir()
    res = invoke("report", tmp_path / "run", "--out", tmp_path / "r.html")
    assert isinstance(res.exception, OSError) and not isinstance(res.exception, SystemExit)


def test_an_oserror_about_a_path_is_one_line(tmp_path, monkeypatch):
    import curate.report.html

    def full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "r.html"))

    monkeypatch.setattr(curate.report.html, "build_report", full)
    (tmp_path / "run").mkdir()
    one_line_error(invoke("report", tmp_path / "run", "--out", tmp_path / "r.html"), "No space left on device: .*r.html")


def test_debug_keeps_a_log_of_the_stages_in_the_run_folder(tmp_path, read_data):
    read_data("a_coco", ["caption"]).head(300).write_parquet(tmp_path / "coco.parquet")
    ok("score", tmp_path / "coco.parquet", "--out", tmp_path / "run", "--debug")
    log = (tmp_path / "run" / "curate-debug.log").read_text()
    assert "start: " in log and "stage scoring: started, total 300" in log
    assert "stage scoring: 300 done in" in log and log.rstrip().endswith("end")


def test_a_failure_under_debug_is_logged_with_its_traceback(tmp_path):
    class Failing(Reporter):
        pass

    log = LogReporter(Failing(), tmp_path / "x.log", "curate test")
    tick = log.stage("working", 10)
    tick(4)
    assert isinstance(tick, Stage)
    try:
        raise ValueError("boom")
    except ValueError as e:
        log.failed(e)
    log.close()
    text = (tmp_path / "x.log").read_text()
    assert "stage working: 4 done" in text and "ValueError: boom" in text and "Traceback" in text


def test_an_unreadable_traditional_map_fails_loudly(monkeypatch):
    """Without the map Traditional Chinese would be scored differently under the same filter
    version: an error, never an empty map."""
    import curate.scoring.filters.specificity_tables as st

    def unreadable(*a, **k):
        raise OSError(5, "Input/output error")

    st.traditional_to_simplified.cache_clear()
    monkeypatch.setattr(st.gzip, "open", unreadable)
    try:
        with pytest.raises(CurateError, match="Traditional-to-Simplified map is unreadable"):
            st.traditional_to_simplified()
    finally:
        monkeypatch.undo()
        st.traditional_to_simplified.cache_clear()
    assert len(st.traditional_to_simplified()) > 1000
