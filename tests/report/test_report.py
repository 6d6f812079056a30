"""`curate report`: a self-contained HTML file that renders in headless Chromium with every plot."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import polars as pl
import pytest
from helpers import invoke, ok, one_line_error

import curate.report.explore as ex
from curate.report.page import diff_pair

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHECK = """
<script>
window.addEventListener('load', () => {
  const imgs = [...document.querySelectorAll('img')];
  const ok = imgs.filter(i => i.complete && i.naturalWidth > 100 && i.getBoundingClientRect().width > 100);
  const out = document.createElement('pre');
  out.id = 'render-check';
  out.textContent = JSON.stringify({images: imgs.length, visible: ok.length,
                                    sections: document.querySelectorAll('section').length,
                                    shown: [...document.querySelectorAll('section')].filter(
                                      x => x.getBoundingClientRect().height > 0).length});
  document.body.appendChild(out);
});
</script>
"""


@pytest.fixture(scope="module")
def report(demo_run, tmp_path_factory):
    """The report of the session's demo run's web run, written beside it."""
    html = tmp_path_factory.mktemp("rep") / "web" / "report.html"
    ok("report", demo_run / "runs" / "web", "--out", html)
    return html


@pytest.mark.slow
def test_report_is_self_contained(report):
    text = report.read_text()
    assert "<img" in text
    # no network: nothing is fetched from anywhere
    assert not re.search(r"(?:src|href)=[\"']https?://", text)
    assert "<script src" not in text


@pytest.mark.slow
def test_report_json_holds_the_numbers(report, demo_run):
    data = json.loads(report.with_name("report.json").read_text())
    rows = sum(r["rows"] for r in data["reasons"])
    run = json.loads((demo_run / "runs" / "web" / "run.json").read_text())
    assert rows == run["rows"]
    assert {"histograms", "languages", "what_if", "rejected_examples"} <= set(data)
    assert set(data["what_if"]) == {f["id"] for f in run["chain"]["filter"]}
    assert data["duplicate_groups"], "the demo deduplicates its runs"


@pytest.mark.slow
def test_mixture_report_has_composition_and_every_run(demo_run):
    data = json.loads((demo_run / "report.json").read_text())  # the demo's mixture report
    assert data["composition"] and set(data["runs"]) == {"web", "captions", "long"}


def render(page: Path, tmp_path) -> dict:
    """What headless Chromium shows of ``page``: images, visible images, sections, shown sections."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (the Makefile's test set-up installs it)")
        pytest.skip("chromium not installed")
    check = tmp_path / "check.html"
    check.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
           "--dump-dom", check.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'<pre id="render-check">(.*?)</pre>', dom)
    assert m, "the page did not finish loading"
    return json.loads(m.group(1).replace("&quot;", '"'))


@pytest.mark.slow
def test_report_renders_in_chromium(report, tmp_path):
    result = render(report, tmp_path)
    assert result["images"] >= 10
    assert result["visible"] == result["images"], result
    assert result["shown"] == result["sections"] >= 7
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1280,2000",
                    f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000  # a page with plots, not a blank one


@pytest.mark.slow
def test_the_mixture_page_shows_one_tab_at_a_time_in_chromium(demo_run, tmp_path):
    """The mixture's own tab is open: its sections and plots show, the runs' tabs are hidden."""
    mix_page = demo_run / "report.html"
    result = render(mix_page, tmp_path)
    assert result["shown"] == 3 and result["sections"] > 3 * 7
    assert result["visible"] == 2 and result["images"] > 20


def test_report_never_replaces_a_file_that_is_not_a_report(demo_run, tmp_path):
    run = demo_run / "runs" / "web"
    data = tmp_path / "captions.parquet"
    data.write_bytes(b"PAR1 not a report PAR1")
    one_line_error(invoke("report", run, "--out", data), "not a curate report")
    assert data.read_bytes() == b"PAR1 not a report PAR1" and not data.is_symlink()
    (tmp_path / "notes.json").write_text('{"mine": 1}')  # beside notes.html: the report's numbers
    one_line_error(invoke("report", run, "--out", tmp_path / "notes.html"), "notes.json exists and is not")
    assert (tmp_path / "notes.json").read_text() == '{"mine": 1}' and not (tmp_path / "notes.html").exists()
    ok("report", run, "--out", tmp_path / "r.html")
    ok("report", run, "--out", tmp_path / "r.html")  # its own files are replaced


def test_report_on_a_non_run_is_one_line_error(tmp_path):
    one_line_error(invoke("report", tmp_path, "--out", tmp_path / "r.html"), "not a run")


@pytest.mark.slow
def test_the_mixture_page_has_a_tab_for_the_mixture_and_each_run(demo_run):
    text = (demo_run / "report.html").read_text()
    assert text.count('type="radio"') == 4 and 'id="tab0" checked' in text
    for name in ("Mixture", "run web", "run captions", "run long"):
        assert f">{name}</label>" in text
    data = json.loads((demo_run / "report.json").read_text())
    assert {r["run"] for r in data["selected_examples"]} == {"web", "captions", "long"}


# -- on real captions: sources, axes, bins, examples ----------------------------------------


@pytest.fixture(scope="module")
def sharded(tmp_path_factory, read_data):
    """Real COCO captions in three numbered shards and LAION alt-text in one file."""
    tmp = tmp_path_factory.mktemp("sharded")
    coco = read_data("a_coco", ["caption"]).head(300)
    for i in range(3):
        coco.slice(i * 100, 100).write_parquet(tmp / f"coco-{i:05d}.parquet")
    read_data("c_laion", ["caption"]).head(300).write_parquet(tmp / "laion.parquet")
    ok("score", *sorted(tmp.glob("*.parquet")), "--out", tmp / "run")
    return ex.open_run(tmp / "run")


def test_one_distribution_per_source_not_per_shard(sharded):
    axis = ex.score_axis(sharded, "score__length")
    h = ex.histograms(sharded, "score__length", axis)
    assert set(h["source"]) == {"coco-*.parquet", "laion.parquet"}
    assert h.filter(pl.col("source") == "coco-*.parquet")["rows"].sum() == 300  # the three shards together
    assert h["rows"].sum() + axis["below"] + axis["above"] == 600


def test_axes_span_the_central_99_percent_and_count_the_rest(sharded):
    col = "score__chars"
    axis = ex.score_axis(sharded, col)
    scores = sharded.scores.select(col).collect()[col]
    assert axis["below"] == int((scores < axis["lo"]).sum()) and axis["above"] == int((scores > axis["hi"]).sum())
    assert axis["above"] >= 1  # real alt-text has a long tail
    assert axis["hi"] <= scores.max() and axis["hi"] >= scores.quantile(0.995) - 1
    drawn = ex.histograms(sharded, col, axis)["rows"].sum()
    assert drawn + axis["below"] + axis["above"] == scores.is_not_null().sum()


def test_a_score_between_0_and_1_gets_bins_on_that_scale(sharded):
    axis = ex.score_axis(sharded, "score__junk")
    assert 0 <= axis["lo"] < axis["hi"] <= 1
    assert (axis["hi"] - axis["lo"]) / axis["bins"] == pytest.approx(1 / 40)


def test_kept_and_dropped_examples_for_every_source(sharded):
    e = ex.examples(sharded, per_source=3)
    got = e.group_by("source", "keep").len()
    assert set(got["source"]) == {"coco-*.parquet", "laion.parquet"}
    assert (got["len"] <= 3).all() and e.filter(~pl.col("keep"))["reason"].str.len_chars().min() > 0
    assert e.filter(pl.col("source") == "laion.parquet")["keep"].n_unique() == 2


def test_the_cleaning_diff_marks_what_was_removed():
    before, after = diff_pair("A dog  on\na &amp; sofa ", "A dog on a & sofa")
    assert before == "A dog <del>·</del>on<del>⏎</del>a &amp;<del>amp;</del> sofa<del>·</del>"
    assert "<ins>" not in before and "<del>" not in after
    assert after.replace("<ins>", "").replace("</ins>", "").replace("·", " ") == "A dog on a &amp; sofa"
