"""`curate report`: a self-contained HTML file that renders in headless Chromium with every plot."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from curate.cli import cli

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
                                    sections: document.querySelectorAll('section').length});
  document.body.appendChild(out);
});
</script>
"""


@pytest.fixture(scope="module")
def report(demo_run, tmp_path_factory):
    """The report of the session's demo run's web run, written beside it."""
    html = tmp_path_factory.mktemp("rep") / "web" / "report.html"
    res = CliRunner().invoke(cli, ["report", str(demo_run / "runs" / "web"), "--out", str(html)])
    assert res.exit_code == 0, res.output
    return html


def test_report_is_self_contained(report):
    text = report.read_text()
    assert "<img" in text
    # no network: nothing is fetched from anywhere
    assert not re.search(r"(?:src|href)=[\"']https?://", text)
    assert "<script src" not in text


def test_report_json_holds_the_numbers(report, demo_run):
    data = json.loads(report.with_name("report.json").read_text())
    rows = sum(r["rows"] for r in data["reasons"])
    run = json.loads((demo_run / "runs" / "web" / "run.json").read_text())
    assert rows == run["rows"]
    assert {"histograms", "languages", "what_if", "rejected_examples"} <= set(data)
    assert set(data["what_if"]) == {f["id"] for f in run["chain"]["filter"]}
    assert data["duplicate_groups"], "the demo deduplicates its runs"


def test_mixture_report_has_composition_and_every_run(demo_run):
    data = json.loads((demo_run / "report.json").read_text())  # the demo's mixture report
    assert data["composition"] and set(data["runs"]) == {"web", "captions", "long"}


def test_report_renders_in_chromium(report, tmp_path):
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (the Makefile's test set-up installs it)")
        pytest.skip("chromium not installed")
    page = tmp_path / "check.html"
    page.write_text(report.read_text().replace("</body>", CHECK + "</body>"))
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000",
           "--dump-dom", page.as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'<pre id="render-check">(.*?)</pre>', dom)
    assert m, "the page did not finish loading"
    result = json.loads(m.group(1).replace("&quot;", '"'))
    assert result["images"] >= 10
    assert result["visible"] == result["images"], result
    shot = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1280,2000",
                    f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000  # a page with plots, not a blank one


def test_report_on_a_non_run_is_one_line_error(tmp_path):
    res = CliRunner().invoke(cli, ["report", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 1
    assert res.output.strip().startswith("Error:") and len(res.output.strip().splitlines()) == 1
