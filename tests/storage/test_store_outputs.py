"""Every command's outputs and inputs as URLs on a real S3 API server: report, balance,
sample, train and dedup's cache read runs on the store and write to it; the few files read
from local disk only are refused as URLs in one line."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from helpers import fails_in_one_line, module_bucket, ok

from curate.layout import pinned_store, store_pointer
from curate.storage.fs import filesystem

SOURCE = "a_flickr8k_captions.parquet"


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    """One bucket for the module (the run is scored once), the AWS environment pointed at it."""
    with module_bucket(s3_endpoint, "store-outputs") as bucket:
        yield bucket


@pytest.fixture(scope="module")
def runs(s3, data_dir, tmp_path_factory):
    """The same real source scored on disk and on the store."""
    local, url = tmp_path_factory.mktemp("outputs") / "run", s3.url("runs/flickr")
    for out in (local, url):
        ok("score", str(data_dir / SOURCE), "--batch-rows", "2000", "--out", out)
    return local, url


def cat(url: str) -> bytes:
    fs, p = filesystem(url)
    fs.invalidate_cache()
    return fs.cat_file(p)


def numbers(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in ("target", "created", "report_id")}


def test_report_of_a_run_on_s3_written_to_s3_holds_the_local_reports_numbers(s3, runs, tmp_path):
    local, url = runs
    out = s3.url("reports/flickr.html")
    res = ok("report", url, "--out", out)
    assert f"wrote {out}" in res.output and s3.url("reports/flickr.json") in res.output
    ok("report", local, "--out", tmp_path / "local.html")
    got = json.loads(cat(s3.url("reports/flickr.json")))
    assert numbers(got) == numbers(json.loads((tmp_path / "local.json").read_text()))
    page = cat(out).decode()
    assert "curate report" in page and got["report_id"] in page  # the pair belongs together
    ok("report", url, "--out", out)  # a report replaces a report
    fs, _ = filesystem(out)
    fs.pipe_file(s3.url("reports/notes.json")[len("s3://"):], b"my notes")
    msg = fails_in_one_line("report", url, "--out", s3.url("reports/notes.html"))
    assert "notes.json exists and is not a curate report" in msg
    assert cat(s3.url("reports/notes.json")) == b"my notes" and not fs.exists(s3.url("reports/notes.html"))
    assert not fs.exists(s3.url("reports/.flickr.html.curate-lock"))  # released


def test_report_creates_a_missing_local_folder_and_says_so(runs, tmp_path):
    local, _ = runs
    res = ok("report", local, "--out", tmp_path / "new" / "deeper" / "r.html")
    assert f"(created the folder {tmp_path / 'new' / 'deeper'})" in res.output
    assert (tmp_path / "new" / "deeper" / "r.json").is_file()
    assert "created the folder" not in ok("report", local, "--out", tmp_path / "new" / "deeper" / "r.html").output


def test_balance_of_a_run_on_s3_is_the_local_runs(runs):
    local, url = runs
    got = json.loads(ok("balance", url, "--json").output)[url]
    want = json.loads(ok("balance", local, "--json").output)[str(local)]
    assert got == want and got["openings"]


def test_sample_and_train_from_a_run_on_s3_into_s3_and_the_model_scores_from_the_store(s3, runs, data_dir, tmp_path):
    local, url = runs
    csv = s3.url("labels/to-label.csv")
    ok("sample", url, "--n", "60", "--out", csv)
    ok("sample", local, "--n", "60", "--out", tmp_path / "to-label.csv")
    picked = pl.read_csv(cat(csv))
    assert picked.equals(pl.read_csv(tmp_path / "to-label.csv")) and picked.height == 60
    labelled = picked.with_columns((pl.col("stratum") == "kept").cast(pl.Int8).alias("label"))
    labelled.write_csv(tmp_path / "labelled.csv")
    fs, _ = filesystem(csv)
    fs.put_file(str(tmp_path / "labelled.csv"), s3.url("labels/labelled.csv")[len("s3://"):])
    model = s3.url("models/q")
    ok("train", url, s3.url("labels/labelled.csv"), "--label", "label", "--out", model)
    ok("train", local, tmp_path / "labelled.csv", "--label", "label", "--out", tmp_path / "model")
    version = pinned_store(model)
    assert store_pointer(model)["previous"] is None
    assert cat(f"{version}/model.bin") == (tmp_path / "model" / "model.bin").read_bytes()
    assert not Path("s3:").exists()
    msg = fails_in_one_line("train", url, s3.url("labels/labelled.csv"), "--label", "label", "--out", model)
    assert "already holds a model" in msg
    chains = {}
    for name, m in (("store", model), ("local", tmp_path / "model")):
        chains[name] = tmp_path / f"{name}.toml"
        chains[name].write_text(f'name = "q"\n[[filter]]\nname = "classifier"\nparams = {{ model = "{m}" }}\n')
        ok("score", str(data_dir / SOURCE), "--chain", chains[name], "--out", tmp_path / f"scored-{name}")
    a, b = (pl.read_parquet(tmp_path / f"scored-{n}" / "scores" / "*.parquet") for n in ("store", "local"))
    assert a["score__classifier"].equals(b["score__classifier"])
    unsure = s3.url("labels/round2.csv")
    ok("sample", url, "--uncertain", model, "--n", "20", "--out", unsure)
    ok("sample", local, "--uncertain", tmp_path / "model", "--n", "20", "--out", tmp_path / "round2.csv")
    assert pl.read_csv(cat(unsure)).equals(pl.read_csv(tmp_path / "round2.csv"))


def test_dedup_with_its_cache_on_s3_reuses_it_and_gives_the_groups_of_a_local_cache(s3, runs, tmp_path):
    local, url = runs
    cache = s3.url("dedup-cache")
    ok("dedup", url, "--cache", cache)
    ok("dedup", local, "--cache", tmp_path / "cache")
    groups = pl.read_parquet(cat(f"{pinned_store(url)}/dedup/groups.parquet"))
    assert groups.equals(pl.read_parquet(local / "dedup" / "groups.parquet"))
    info = json.loads(cat(f"{pinned_store(url)}/dedup/dedup.json"))
    assert info["cache"] == cache and info["embedding"]["embedded"] > 0
    first = store_pointer(cache)["version"]
    fs, _ = filesystem(cache)
    names = {p.rsplit("/", 1)[1] for p in fs.find(f"{pinned_store(cache)}")}
    assert {"manifest.json", "neighbors.json"} <= names and not any(n.startswith(".") for n in names)
    res = ok("dedup", url, "--cache", cache, "--threshold", "0.8")
    info = json.loads(cat(f"{pinned_store(url)}/dedup/dedup.json"))
    assert info["embedding"]["embedded"] == 0 and store_pointer(cache)["previous"] == first
    assert f"wrote {url}/dedup" in res.output
    assert not Path("s3:").exists()


@pytest.mark.parametrize("args", [
    ("demo", "--out", "s3://store-outputs/demo"),
    ("score", "x.parquet", "--chain", "s3://store-outputs/chain.toml", "--out", "runs/x"),
    ("score", "x.parquet", "--lid-model", "s3://store-outputs/lid.ftz", "--out", "runs/x"),
    ("mix", "s3://store-outputs/recipe.toml", "--out", "mixes/x"),
    ("concepts", "runs/x", "--vocabulary", "s3://store-outputs/vocab.txt"),
])
def test_a_url_where_a_local_file_is_read_is_one_line(s3, args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    msg = fails_in_one_line(*args)
    assert "s3://store-outputs/" in msg and ("local disk" in msg or "local path" in msg)
    assert not any(tmp_path.iterdir())
