"""The datasets people have: WebDataset shards, compressed text, headerless TSV, Arrow/HF.

Each format is written here from real captions (``../shared/data``), scored, and compared
with the same captions scored from Parquet: the same caption, scores and decision per row.
A WebDataset source is mixed and exported: every exported image equals its source member.
"""
from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.feather as feather
import pytest
from helpers import invoke, run_scores, write_recipe

from curate.errors import CurateError
from curate.export.shards import export
from curate.mix.build import build_mixture
from curate.scoring.chain import load_chain
from curate.scoring.runner import ScoreOptions, score

COMPARED = ["caption", "score__length", "score__language", "score__specificity", "score__junk",
            "score__repetition", "lang", "junk_kind", "keep", "reason"]


@pytest.fixture(scope="module")
def real(read_data) -> pl.DataFrame:
    """Web alt-text and multilingual human captions, with image links and a similarity."""
    web = read_data("c_laion", ["caption", "image_id"]).head(300)
    multi = read_data("b_multi30k_task1", ["caption", "image_id"]).head(200)
    df = pl.concat([web, multi]).with_row_index("i")
    return df.select(
        pl.col("caption"), ("https://img.example/" + pl.col("i").cast(pl.String) + ".jpg").alias("URL"),
        (pl.col("i").cast(pl.Float64) / 1000).alias("similarity"), pl.col("i").cast(pl.Int64).alias("n"))


def image_bytes(i: int) -> bytes:
    """Small fake image bytes of varied length (some a multiple of 512, some with a tail)."""
    return hashlib.sha256(str(i).encode()).digest() * (1 + (i * 7) % 50) + b"\xff\xd9"[: i % 3]


def write_shard(path: Path, df: pl.DataFrame, skip_txt=(), fmt=tarfile.USTAR_FORMAT) -> None:
    """An img2dataset-style shard: key.jpg, key.txt, key.json (indented, as img2dataset writes)."""
    with tarfile.open(path, "w", format=fmt) as tf:
        for i, r in enumerate(df.iter_rows(named=True)):
            key = f"{i:09d}"
            meta = {"url": r["URL"], "key": key, "similarity": r["similarity"], "status": "success"}
            members = [("jpg", image_bytes(i)), ("json", json.dumps(meta, indent=4).encode())]
            if i not in skip_txt:
                members.insert(1, ("txt", r["caption"].encode()))
            for ext, data in members:
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def reference(real, tmp_path_factory) -> pl.DataFrame:
    d = tmp_path_factory.mktemp("ref")
    real.write_parquet(d / "ref.parquet")
    return run_scores([d / "ref.parquet"], d / "run")


def written(fmt: str, df: pl.DataFrame, d: Path) -> tuple[Path, dict]:
    """``df`` written in format ``fmt``; returns (path, score options)."""
    jsonl = df.write_ndjson().encode()
    if fmt == "jsonl.gz":
        (d / "a.jsonl.gz").write_bytes(gzip.compress(jsonl))
    elif fmt == "ndjson.zst":
        with pa.CompressedOutputStream(str(d / "a.ndjson.zst"), "zstd") as f:
            f.write(jsonl)
    elif fmt == "csv.bz2":
        buf = io.BytesIO()
        df.write_csv(buf)
        (d / "a.csv.bz2").write_bytes(bz2.compress(buf.getvalue()))
    elif fmt in ("tsv", "tsv.gz"):  # CC3M's layout: caption<TAB>url, no header row
        buf = io.BytesIO()
        df.select("caption", "URL").write_csv(buf, separator="\t", include_header=False, quote_style="never")
        data = buf.getvalue()
        (d / f"a.{fmt}").write_bytes(gzip.compress(data) if fmt.endswith("gz") else data)
        return d / f"a.{fmt}", {"columns": ("caption", "URL")}
    elif fmt == "feather":
        feather.write_feather(df.to_arrow(), d / "a.feather")
    elif fmt == "hf":
        datasets = pytest.importorskip("datasets")
        datasets.Dataset.from_polars(df).save_to_disk(str(d / "hf"))
        return d / "hf", {}
    elif fmt == "tar":
        write_shard(d / "a.tar", df)
    return next(d.glob("a.*")), {}


@pytest.mark.parametrize("fmt", ["jsonl.gz", "ndjson.zst", "csv.bz2", "tsv", "tsv.gz", "feather", "hf", "tar"])
def test_every_format_scores_like_parquet(fmt, real, reference, tmp_path):
    df = real
    if fmt.startswith("tsv"):  # TSV has no quoting: captions with tabs or newlines cannot be held
        df = real.filter(~pl.col("caption").str.contains(r"[\t\n\r]"))
        assert df.height > 400
    path, opts = written(fmt, df, tmp_path)
    got = run_scores([path], tmp_path / "run", **opts)
    want = reference.filter(pl.col("row").is_in(df["n"].to_list()))
    assert got.height == df.height
    assert got.select(COMPARED).equals(want.select(COMPARED))
    # the image link is carried as `url`, whether the input spells it URL or url (img2dataset)
    assert "URL" not in got.columns and got["url"].to_list() == df["URL"].to_list()
    assert got["row"].to_list() == list(range(df.height))


def test_webdataset_rows_keys_and_image_index(real, tmp_path):
    write_shard(tmp_path / "s.tar", real.head(60), skip_txt={5})
    got = run_scores([tmp_path / "s.tar"], tmp_path / "run", carry_all=True)
    assert got["key"].to_list() == [f"{i:09d}" for i in range(60)]
    assert got["source"].unique().to_list() == [str(tmp_path / "s.tar")]
    # a sample without a .txt: no caption, kept in the run with reason "empty"
    assert got.row(5, named=True)["caption"] is None and got.row(5, named=True)["reason"] == "empty"
    # .json fields keep their JSON types; the image index is numbers
    assert got["similarity"].dtype == pl.Float64 and got["image_offset"].dtype == pl.Int64
    assert got["similarity"].to_list() == real.head(60)["similarity"].to_list()
    raw = (tmp_path / "s.tar").read_bytes()
    for r in got.head(10).iter_rows(named=True):
        assert raw[r["image_offset"]:r["image_offset"] + r["image_size"]] == image_bytes(r["row"])


def test_webdataset_caption_from_a_json_field(real, tmp_path):
    write_shard(tmp_path / "s.tar", real.head(20))
    got = run_scores([tmp_path / "s.tar"], tmp_path / "run", caption_column="status")
    assert set(got["caption"]) == {"success"}


def test_pax_and_gnu_shards_read_the_same(real, tmp_path):
    for fmt, name in ((tarfile.PAX_FORMAT, "pax"), (tarfile.GNU_FORMAT, "gnu")):
        write_shard(tmp_path / f"{name}.tar", real.head(40), fmt=fmt)
    a = run_scores([tmp_path / "pax.tar"], tmp_path / "r1")
    b = run_scores([tmp_path / "gnu.tar"], tmp_path / "r2")
    assert a.select(COMPARED).equals(b.select(COMPARED))
    assert a["caption"].to_list() == real.head(40)["caption"].to_list()


def test_laion_parquet_carries_url_and_every_column_with_its_type(real, tmp_path):
    real.write_parquet(tmp_path / "laion.parquet")
    plain = run_scores([tmp_path / "laion.parquet"], tmp_path / "r1")
    assert "url" in plain.columns and "similarity" not in plain.columns
    every = run_scores([tmp_path / "laion.parquet"], tmp_path / "r2", carry_all=True)
    assert every["similarity"].dtype == pl.Float64 and every["n"].dtype == pl.Int64
    recipe = write_recipe(tmp_path / "m.toml", {"web": tmp_path / "r2"},
                          {"web": {"share": 1.0, "eligible": "keep AND similarity >= 0.1"}}, size=50)
    build_mixture(recipe, tmp_path / "mix")
    m = pl.read_parquet(tmp_path / "mix" / "manifest.parquet")
    assert m.height == 50 and (m["similarity"].cast(pl.Float64) >= 0.1).all()


def test_webdataset_mixed_and_exported_with_images_byte_for_byte(real, tmp_path):
    write_shard(tmp_path / "a.tar", real.head(150))
    write_shard(tmp_path / "b.tar", real.slice(150, 150))
    run = tmp_path / "run"
    scored = run_scores([tmp_path / "a.tar", tmp_path / "b.tar"], run)
    recipe = write_recipe(tmp_path / "m.toml", {"w": run}, {"w": {"share": 1.0}}, size=80)
    build_mixture(recipe, tmp_path / "mix")
    index = export(tmp_path / "mix", "webdataset", tmp_path / "out", shard_rows=30)
    assert index["images_copied"] == 80
    m = pl.read_parquet(tmp_path / "mix" / "manifest.parquet")
    got = {}
    for shard in index["shards"]:
        with tarfile.open(tmp_path / "out" / shard["file"]) as tf:
            for member in tf:
                got[member.name] = tf.extractfile(member).read()
    assert len(got) == 3 * 80
    sources = {p: (tmp_path / p).read_bytes() for p in ("a.tar", "b.tar")}
    for r in m.iter_rows(named=True):
        key = f"{r['sample_id']:020d}"
        raw = Path(r["source"]).read_bytes()
        o, s = int(r["image_offset"]), int(r["image_size"])
        assert got[f"{key}.jpg"] == raw[o:o + s]
        assert got[f"{key}.txt"].decode() == r["caption_clean"]  # the cleaned caption is the text
        meta = json.loads(got[f"{key}.json"])
        assert meta["caption_original"] == r["caption"]
        assert meta["source"] == r["source"] and meta["row"] == r["row"] and meta["url"] == r["url"]
        # the scores and the decision that chose it, from its run
        row = scored.filter((pl.col("source") == r["source"]) & (pl.col("row") == r["row"])).row(0, named=True)
        for c in [c for c in scored.columns if c.startswith("score__")] + ["lang", "keep"]:
            assert meta[c] == row[c], c
    assert sources  # both shards were sources
    assert {Path(s).name for s in m["source"]} == {"a.tar", "b.tar"}


def test_export_stops_when_a_source_tar_changed(real, tmp_path):
    write_shard(tmp_path / "a.tar", real.head(40))
    run_scores([tmp_path / "a.tar"], tmp_path / "run")
    build_mixture(write_recipe(tmp_path / "m.toml", {"w": tmp_path / "run"}, {"w": {"share": 1.0}}, size=10),
                  tmp_path / "mix")
    # rewritten with longer captions: the members after the first move
    write_shard(tmp_path / "a.tar", real.head(40).with_columns(pl.col("caption") + " " + "x" * 600))
    with pytest.raises(CurateError, match="changed since it was scored"):
        export(tmp_path / "mix", "webdataset", tmp_path / "out")


def test_caption_clean_is_the_exported_text_and_the_original_is_kept(real, tmp_path):
    write_shard(tmp_path / "a.tar", real.head(40))
    run_scores([tmp_path / "a.tar"], tmp_path / "run")
    build_mixture(write_recipe(tmp_path / "m.toml", {"w": tmp_path / "run"}, {"w": {"share": 1.0}}, size=10),
                  tmp_path / "mix")
    path = tmp_path / "mix" / "manifest.parquet"
    m = pl.read_parquet(path)
    m.with_columns(caption_clean=pl.col("caption").str.to_uppercase()).write_parquet(path)
    export(tmp_path / "mix", "parquet", tmp_path / "pq")
    out = pl.read_parquet(tmp_path / "pq" / "*.parquet")
    assert out["caption"].to_list() == m["caption"].str.to_uppercase().to_list()
    assert out["caption_original"].to_list() == m["caption"].to_list()
    assert "caption_clean" not in out.columns
    export(tmp_path / "mix", "webdataset", tmp_path / "wds")
    with tarfile.open(tmp_path / "wds" / "shard-00000.tar") as tf:
        texts = {x.name: tf.extractfile(x).read().decode() for x in tf if x.name.endswith((".txt", ".json"))}
    first = f"{m['sample_id'][0]:020d}"
    assert texts[f"{first}.txt"] == m["caption"][0].upper()
    assert json.loads(texts[f"{first}.json"])["caption_original"] == m["caption"][0]


# -- bad input: one line, nothing lost ------------------------------------------------------


def test_bad_inputs_are_one_line_errors(real, tmp_path):
    write_shard(tmp_path / "s.tar", real.head(100))
    data = (tmp_path / "s.tar").read_bytes()
    (tmp_path / "cut.tar").write_bytes(data[: len(data) // 2 + 100])
    gz = bytearray(gzip.compress(real.write_ndjson().encode()))
    gz[-8] ^= 1  # the CRC
    (tmp_path / "bad.jsonl.gz").write_bytes(bytes(gz))
    (tmp_path / "not.feather").write_bytes(b"PAR1 this is not an Arrow file" * 10)
    (tmp_path / "x.tar.gz").write_bytes(b"x")
    for name, message in (("cut.tar", "truncated tar"), ("bad.jsonl.gz", "damaged gzip data"),
                          ("not.feather", "not an Arrow IPC / Feather file"),
                          ("x.tar.gz", "unsupported input type")):
        r = invoke("score", tmp_path / name, "--out", tmp_path / f"run-{name}")
        assert r.exit_code == 1, (name, r.output)
        assert r.output.startswith("Error:") and message in r.output and r.output.count("\n") == 1, r.output
        assert not (tmp_path / f"run-{name}" / "run.json").exists()


def test_columns_option_needs_a_csv_input(real, tmp_path):
    real.write_parquet(tmp_path / "a.parquet")
    r = invoke("score", tmp_path / "a.parquet", "--columns", "caption,url", "--out", tmp_path / "run")
    assert r.exit_code == 1 and "no input is CSV/TSV" in r.output
