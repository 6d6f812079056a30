"""Inputs a hostile or careless user hands over, on real captions: nothing lost without a
word, one-line errors that name the place, and bounded memory for inputs that inflate."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time

import polars as pl
import pytest

from helpers import invoke, fails_in_one_line
from curate.ingest.compressed import MAX_LINE_BYTES

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def captions(read_data) -> pl.DataFrame:
    return read_data("a_coco", ["caption", "image_id"]).head(2000).with_columns(pl.col("image_id").cast(pl.String))


def test_a_hf_folder_with_a_missing_shard_is_an_error_naming_it(captions, tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_polars(captions).save_to_disk(str(tmp_path / "hf"), num_shards=4)
    state = json.loads((tmp_path / "hf" / "state.json").read_text())
    assert len(state["_data_files"]) == 4
    res = invoke("score", tmp_path / "hf", "--out", tmp_path / "whole")
    assert res.exit_code == 0, res.output
    assert pl.read_parquet(tmp_path / "whole" / "scores" / "*.parquet").height == 2000
    (tmp_path / "hf" / "data-00001-of-00004.arrow").unlink()
    msg = fails_in_one_line("score", tmp_path / "hf", "--out", tmp_path / "r")
    assert "data-00001-of-00004.arrow is missing" in msg and "state.json" in msg
    assert not (tmp_path / "r" / "run.json").exists()


def gzip_of_long_line(head: bytes, size: int) -> bytes:
    """``head`` then one line of ``size`` bytes, gzip-compressed in about 1 KB per MB
    (concatenated gzip members: one readable stream)."""
    block = gzip.compress(b"x" * (1 << 20), 9)
    return gzip.compress(head, 9) + block * (size >> 20) + gzip.compress(b"\n", 9)


def peak_rss_of(cmd: list[str], limit: int) -> tuple[int, int, str]:
    """(peak RSS in bytes, exit code, output) of a command, killed past ``limit`` bytes."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = 0
    page = os.sysconf("SC_PAGE_SIZE")
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/statm") as f:
                peak = max(peak, int(f.read().split()[1]) * page)
        except (OSError, ValueError):
            pass
        if peak > limit:
            proc.kill()
        time.sleep(0.01)
    return peak, proc.returncode, proc.stdout.read()


@pytest.mark.parametrize("name, head", [
    ("bomb.tsv.gz", b"caption\tid\n"),
    ("bomb.jsonl.gz", b'{"caption": "a dog on a beach"}\n{"caption": "'),
])
def test_a_gzip_bomb_is_a_one_line_error_in_bounded_memory(name, head, tmp_path):
    path = tmp_path / name
    path.write_bytes(gzip_of_long_line(head, 1 << 30))  # one line of 1 GiB
    assert path.stat().st_size < 2_000_000
    peak, code, out = peak_rss_of([sys.executable, "-m", "curate.cli", "score", str(path), "--out",
                                   str(tmp_path / "r")], 500 << 20)
    assert peak < 500 << 20, f"peak RSS {peak >> 20} MiB"
    assert code == 1, out
    last = out.strip().splitlines()[-1]
    assert f"is longer than {MAX_LINE_BYTES >> 20} MiB" in last and "line 2" in last, out


def test_jsonl_whose_first_line_is_over_1_mib_finds_its_columns(captions, tmp_path):
    rows = captions.head(300).to_dicts()
    rows[0]["notes"] = "n" * (1_500_000)  # the first record is 1.5 MB
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = invoke("score", path, "--out", tmp_path / "r", "--carry", "image_id")
    assert res.exit_code == 0, res.output
    got = pl.read_parquet(tmp_path / "r" / "scores" / "*.parquet").sort("row")
    assert got["caption"].to_list() == captions.head(300)["caption"].to_list()
    assert got["image_id"].to_list() == captions.head(300)["image_id"].to_list()


@pytest.mark.parametrize("name", ["ragged.tsv", "ragged.tsv.gz", "ragged.csv"])
def test_a_ragged_line_is_an_error_naming_its_line(captions, tmp_path, name):
    sep = "," if name.endswith("csv") else "\t"
    df = captions.head(500).filter(~pl.col("caption").str.contains(r"[\t\n\r\",]"))
    lines = [f"caption{sep}image_id"] + [f"{c}{sep}{i}" for c, i in df.iter_rows()]
    lines[101] = lines[101] + f"{sep}extra"  # line 102 of the file has a third field
    data = ("\n".join(lines) + "\n").encode()
    (tmp_path / name).write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    msg = fails_in_one_line("score", tmp_path / name, "--out", tmp_path / "r")
    assert "line 102 has 3 fields, the header has 2" in msg


def test_a_number_caption_column_is_refused(captions, tmp_path):
    captions.head(100).with_columns(pl.int_range(100).alias("caption_id")).write_parquet(tmp_path / "n.parquet")
    msg = fails_in_one_line("score", tmp_path / "n.parquet", "--caption-column", "caption_id", "--out", tmp_path / "r")
    assert "caption column 'caption_id' holds Int64 values, not text" in msg and "caption" in msg


def test_nan_labels_are_left_out_and_counted(read_data, tmp_path):
    good = read_data("a_coco", ["caption"]).head(200).with_columns(label=pl.lit(1.0))
    bad = read_data("c_laion", ["caption"]).head(200).with_columns(label=pl.lit(0.0))
    unlabelled = read_data("c_redcaps", ["caption"]).head(60).with_columns(label=pl.lit(float("nan")))
    pl.concat([good, bad, unlabelled]).write_parquet(tmp_path / "labels.parquet")
    res = invoke("train", tmp_path / "labels.parquet", "--label", "label", "--positive", "1.0",
                 "--out", tmp_path / "m")
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert meta["negatives"] == ["0.0"]
    assert meta["labels"]["rows"] == 400 and meta["labels"]["left_out"] == 60
