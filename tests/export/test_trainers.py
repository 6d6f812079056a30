"""`curate export --for TRAINER`: each trainer's own loader reads the export at the recipe's shares.

One mixture of four sources, built once per module from real captions (../shared/data):
two WebDataset sources written by ``webdataset.TarWriter`` with small generated images
(``jpg``: 8x8 JPEGs, every sample with an image and a model caption in its .json; ``png``:
12x12 PNGs, a third of the samples without an image, as img2dataset leaves failed
downloads), a LAION-style Parquet (link, alt-text, similarity; no images) and a
caption-only Parquet. The recipe's shares are 0.3 / 0.2 / 0.3 / 0.2. Each test draws at
least 5,000 samples through the real loader and checks every source's share within 2
points, and that every image is byte for byte its source member.

The LAION-style file names its link ``url``: how ``URL`` and ``url`` become one column is
the mix's rule, tested with the mix.
"""
from __future__ import annotations

import collections
import io
import json
import shlex
import types
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import import_without_torchvision, invoke

from curate.errors import CurateError
from curate.export.trainers import export_for
from curate.mix.build import build_mixture
from curate.scoring.chain import load_chain
from curate.scoring.runner import ScoreOptions, score

SHARES = {"jpg": 0.3, "png": 0.2, "laion": 0.3, "captions": 0.2}
DRAWS = 5000


def _image(rng, fmt: str, side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _tars(folder: Path, captions: list[str], ext: str, side: int, members: dict, rng,
          missing_every: int | None = None, recaption: list[str] | None = None) -> list[str]:
    import webdataset as wds

    folder.mkdir()
    for start in range(0, len(captions), 500):
        path = folder / f"{start // 500:05d}.tar"
        with wds.TarWriter(str(path)) as w:
            for i in range(start, min(start + 500, len(captions))):
                meta = {"url": f"https://example.org/{ext}/{i}.{ext}", "similarity": 0.25 + (i % 7) / 100}
                if recaption is not None:
                    meta["recaption"] = recaption[i]
                sample = {"__key__": f"{i:06d}", "txt": captions[i], "json": meta}
                if missing_every is None or i % missing_every:
                    sample[ext] = members[(str(path), f"{i:06d}")] = _image(rng, "JPEG" if ext == "jpg" else "PNG", side)
                w.write(sample)
    return sorted(str(p) for p in folder.glob("*.tar"))


@pytest.fixture(scope="module")
def pool(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("trainers")
    rng = np.random.default_rng(19)
    members: dict[tuple[str, str], bytes] = {}
    coco = pl.read_parquet(data_dir / "a_coco_captions_val2017.parquet")["caption"].to_list()
    flickr = pl.read_parquet(data_dir / "a_flickr30k_captions.parquet")["caption"].to_list()
    laion = pl.read_parquet(data_dir / "c_laion_web_alttext_sample.parquet")
    laion.select("url", pl.col("caption").alias("TEXT"), (pl.int_range(laion.height) % 30 / 100 + 0.2).alias("similarity")
                 ).write_parquet(d / "laion.parquet")
    pl.concat([pl.read_parquet(data_dir / f, columns=["caption", "image_id"]) for f in (
        "d_imageinwords_long.parquet", "d_comprecap_mllm_long.parquet", "a_flickr8k_captions.parquet")]
    ).write_parquet(d / "captions.parquet")
    inputs = {
        "jpg": (_tars(d / "wds_jpg", coco[:2000], "jpg", 8, members, rng, recaption=coco[1:2001]),
                ScoreOptions(carry=("recaption", "similarity"))),
        "png": (_tars(d / "wds_png", flickr[:2000], "png", 12, members, rng, missing_every=3), ScoreOptions(carry_all=True)),
        "laion": ([str(d / "laion.parquet")], ScoreOptions(caption_column="TEXT", carry_all=True)),
        "captions": ([str(d / "captions.parquet")], ScoreOptions()),
    }
    for name, (files, opts) in inputs.items():
        score(files, d / "runs" / name, load_chain(None), opts)
    return types.SimpleNamespace(mix=_mix(d, 6000), members=members, dir=d)


def _mix(d: Path, size: int) -> Path:
    """The mixture of the four runs in ``d/runs`` at SHARES, ``size`` rows."""
    lines = [f"size = {size}", "seed = 19"]
    for name, share in SHARES.items():
        lines += ["[[source]]", f'name = "{name}"', f'run = "{d / "runs" / name}"', f"share = {share}", "repeat = 4"]
    (d / f"recipe-{size}.toml").write_text("\n".join(lines) + "\n")
    build_mixture(d / f"recipe-{size}.toml", d / f"mix-{size}")
    return d / f"mix-{size}"


def _within_two_points(counts: collections.Counter, shares: dict[str, float]) -> None:
    n = sum(counts.values())
    assert n >= DRAWS
    got = {k: counts[k] / n for k in shares}
    total = sum(shares.values())
    print("shares drawn:", {k: round(v, 4) for k, v in got.items()}, "of", n)  # shown with pytest -s
    for k, share in shares.items():
        assert abs(got[k] - share / total) <= 0.02, (k, got, shares)


def _check_tar_images(folder: Path, members: dict) -> int:
    """Every image member of the export's tars is its source member, byte for byte."""
    import webdataset as wds

    n = 0
    for tar in sorted(folder.glob("*/shard-*.tar")):
        for s in wds.WebDataset(str(tar), shardshuffle=False):
            meta = json.loads(s["json"])
            image = s.get("jpg", s.get("png"))
            if image is not None:
                assert image == members[(meta["source"], meta["key"])]
                n += 1
    return n


# -- open_clip ------------------------------------------------------------------------------


def test_open_clip_reads_its_args_file_at_the_recipe_shares(pool, tmp_path, monkeypatch):
    import torch

    data = import_without_torchvision(monkeypatch, "open_clip_train.data", ("torchvision", "torchvision.datasets"))
    params = pytest.importorskip("open_clip_train.params")
    out = tmp_path / "oc"
    # open_clip draws whole shards: one sample a shard gives the shares per sample (a smaller
    # mixture keeps the number of shards down; samples are drawn with replacement)
    idx = export_for(_mix(pool.dir, 2400), "open_clip", out, shard_rows=1, model_caption="recaption")
    src = {s["name"]: s for s in idx["sources"]}
    # only image-bearing samples; what is left out is counted per source
    assert src["laion"]["exported"] == src["captions"]["exported"] == 0
    assert src["laion"]["left_out"] == src["laion"]["rows"] > 0
    assert 0 < src["png"]["left_out"] < src["png"]["rows"] and src["jpg"]["left_out"] == 0
    for name in ("jpg", "png"):
        sizes = json.loads((out / name / "sizes.json").read_text())
        assert sum(sizes.values()) == src[name]["exported"] == src[name]["images_copied"]
    argv = shlex.split((out / "open_clip_args.txt").read_text())
    args = params.parse_args(argv + ["--batch-size", "100", "--workers", "0", "--seed", "0"])
    args.world_size = 1  # set by open_clip_train.main from the distributed setup
    assert args.train_num_samples == src["jpg"]["exported"] + src["png"]["exported"]
    side = {8: "jpg", 12: "png"}  # the generated images' sizes tell the sources apart
    info = data.get_wds_dataset(args, lambda im: torch.tensor(im.size[0]), is_train=True,
                                tokenizer=lambda texts: torch.zeros((1, 1), dtype=torch.long))
    counts: collections.Counter = collections.Counter()
    epoch = 0
    while sum(counts.values()) < DRAWS:
        info.set_epoch(epoch)
        for images, _ in info.dataloader:
            counts.update(side[int(x)] for x in images)
        epoch += 1
    shares = {k: SHARES[k] for k in ("jpg", "png")}
    _within_two_points(counts, shares)
    # a plain per-shard weight of 1 would have drawn png at its share of the shards instead
    n_png = src["png"]["exported"] / (src["jpg"]["exported"] + src["png"]["exported"])
    assert abs(n_png - 0.4) > 0.05
    assert _check_tar_images(out, pool.members) == args.train_num_samples


def test_open_clip_samples_carry_every_caption_variant(pool, tmp_path):
    import webdataset as wds

    out = tmp_path / "oc"
    export_for(pool.mix, "open_clip", out, shard_rows=500, model_caption="recaption")
    m = pl.read_parquet(pool.mix / "manifest.parquet").filter(pl.col("run") == "jpg")
    by_id = {str(r["sample_id"]): r for r in m.iter_rows(named=True)}
    got = list(wds.WebDataset(str(out / "jpg" / "shard-{00000..00003}.tar"), shardshuffle=False))
    assert len(got) == m["repeat"].sum()
    for s in got[:300]:
        meta = json.loads(s["json"])
        row = by_id[meta["sample_id"]]
        assert s["txt"].decode() == meta["caption"] == row["caption_clean"]  # the curated caption
        assert meta["caption_original"] == row["caption"] and meta["caption_model"] == row["recaption"]
        assert "recaption" not in meta and isinstance(meta["quality"], float)


# -- Megatron-Energon -----------------------------------------------------------------------


def test_energon_reads_the_blend_at_the_recipe_shares(pool, tmp_path):
    energon = pytest.importorskip("megatron.energon")
    out = tmp_path / "en"
    idx = export_for(pool.mix, "energon", out, shard_rows=500)
    src = {s["name"]: s for s in idx["sources"]}
    assert {k: s["sample_type"] for k, s in src.items()} == {
        "jpg": "CaptioningSample", "png": "CaptioningSample", "laion": "TextSample", "captions": "TextSample"}
    assert src["png"]["left_out"] > 0 and (out / "png" / ".nv-meta" / "index.sqlite").is_file()
    wc = energon.WorkerConfig(rank=0, world_size=1, num_workers=0)
    ds = energon.get_train_dataset(str(out / "energon_blend.yaml"), worker_config=wc, batch_size=None,
                                   shuffle_buffer_size=None, max_samples_per_sequence=None)
    counts: collections.Counter = collections.Counter()
    for s in energon.get_loader(ds, watchdog_timeout_seconds=None):
        name = s.__subflavors__["source"]
        counts[name] += 1
        assert isinstance(s, energon.CaptioningSample if name in ("jpg", "png") else energon.TextSample)
        if sum(counts.values()) >= DRAWS:
            break
    _within_two_points(counts, SHARES)
    assert _check_tar_images(out, pool.members) == src["jpg"]["exported"] + src["png"]["exported"]


# -- MosaicML streaming ---------------------------------------------------------------------


def test_mds_streams_read_at_the_recipe_shares(pool, tmp_path, monkeypatch):
    streaming = import_without_torchvision(monkeypatch, "streaming", ("streaming.vision",))
    out = tmp_path / "mds"
    export_for(pool.mix, "mds", out, shard_rows=700)
    streaming.base.util.clean_stale_shared_memory()
    cfg = json.loads((out / "mds_streams.json").read_text())
    streams = [streaming.Stream(local=s["local"], proportion=s["proportion"]) for s in cfg["streams"]]
    ds = streaming.StreamingDataset(streams=streams, shuffle=True, shuffle_seed=19, batch_size=1, epoch_size=DRAWS)
    counts: collections.Counter = collections.Counter()
    images = 0
    for s in ds:
        meta = s["json"]
        counts[meta["run"]] += 1
        assert s["caption"] == meta["caption"]
        if meta["image_member"] is not None:
            assert s["image"] == pool.members[(meta["source"], meta["key"])]
            images += 1
        else:
            assert s["image"] == b""
    _within_two_points(counts, SHARES)
    assert images > 0.35 * DRAWS


def test_mds_shards_are_the_bytes_mdswriter_writes(tmp_path, monkeypatch):
    streaming = import_without_torchvision(monkeypatch, "streaming", ("streaming.vision",))
    from curate.export import mds

    rows = [{"key": "a", "image": b"\xff\xd8x", "json": {"a": 1, "b": None, "c": "\u4e2d"}, "caption": "h\u00e9"},
            {"key": "bb", "image": b"", "json": {}, "caption": ""}]
    cols = {"key": "str", "image": "bytes", "json": "json", "caption": "str"}
    with streaming.MDSWriter(out=str(tmp_path / "ref"), columns=cols, size_limit=None) as w:
        for r in rows:
            w.write(r)
    mine = mds.shard_bytes(cols, {"key": pa.array(["a", "bb"]), "image": pa.array([b"\xff\xd8x", None]),
                                  "json": pa.array([json.dumps(r["json"], sort_keys=True) for r in rows]),
                                  "caption": pa.array(["h\u00e9", ""])})
    assert mine == (tmp_path / "ref" / "shard.00000.mds").read_bytes()
    ref = json.loads((tmp_path / "ref" / "index.json").read_text())
    assert ref == mds.index([mds.shard_entry(cols, "shard.00000.mds", 2, len(mine))])


# -- LitData and Hugging Face datasets ------------------------------------------------------


def test_litdata_combines_the_parquet_sources_at_the_recipe_shares(pool, tmp_path):
    litdata = pytest.importorskip("litdata")
    from litdata.streaming.item_loader import ParquetLoader

    out = tmp_path / "ld"
    export_for(pool.mix, "litdata", out, shard_rows=700)
    cfg = json.loads((out / "litdata_weights.json").read_text())
    sets = [litdata.StreamingDataset(d["input_dir"], item_loader=ParquetLoader(), shuffle=True, seed=19,
                                     cache_dir=str(tmp_path / "cache" / d["name"])) for d in cfg["datasets"]]
    combined = litdata.CombinedStreamingDataset(sets, weights=cfg["weights"], iterate_over_all=False, seed=19)
    counts: collections.Counter = collections.Counter()
    for s in combined:
        counts[s["run"]] += 1
        if s["image"] is not None:
            assert s["image"] == pool.members[(s["source"], s["key"])]
        if sum(counts.values()) >= DRAWS:
            break
    _within_two_points(counts, SHARES)


def test_hf_interleave_reads_the_parquet_sources_at_the_recipe_shares(pool, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    out = tmp_path / "hf"
    idx = export_for(pool.mix, "hf", out, shard_rows=700)
    cfg = json.loads((out / "hf_interleave.json").read_text())
    parts = [datasets.load_dataset("parquet", data_files=f, split="train", cache_dir=str(tmp_path / "hf-cache"))
             for f in cfg["data_files"].values()]
    mixed = datasets.interleave_datasets(parts, probabilities=cfg["probabilities"], seed=19)
    drawn = mixed.select(range(DRAWS))
    _within_two_points(collections.Counter(drawn["run"]), SHARES)
    with_image = drawn.filter(lambda r: r["image"] is not None)
    assert len(with_image) > 0.35 * DRAWS
    for r in with_image.select(range(500)):
        assert r["image"] == pool.members[(r["source"], r["key"])]
    assert sum(s["images_copied"] for s in idx["sources"]) == sum(p.num_rows - p["image"].count(None) for p in parts)
    assert idx["left_out"] == 0


# -- what export says, and its errors --------------------------------------------------------


def test_cli_says_what_it_copied_and_left_out_per_source(pool, tmp_path):
    res = invoke("export", pool.mix, "--for", "open_clip", "--out", tmp_path / "oc", "--shard-rows", 1000)
    assert res.exit_code == 0, res.output
    idx = json.loads((tmp_path / "oc" / "index.json").read_text())
    for s in idx["sources"]:
        line = next(x for x in res.output.splitlines() if x.replace("\u2502", " ").split()[:1] == [s["name"]])
        assert f"{s.get('images_copied', 0):,}" in line and f"{s['left_out']:,}" in line
    assert "not included" not in res.output and "open_clip_args.txt" in res.output


def test_the_load_hint_is_printed_as_written(pool, tmp_path):
    """Square brackets in a load hint are text, not console markup."""
    res = invoke("export", pool.mix, "--for", "hf", "--out", tmp_path / "hf")
    assert res.exit_code == 0, res.output
    hint = json.loads((tmp_path / "hf" / "index.json").read_text())["load_with"]
    assert "[load_dataset(" in hint and hint in res.output.replace("\n", "")


def test_a_webdataset_export_says_it_copied_the_images(pool, tmp_path):
    """The images copied are said, in the output and in --help (not "images are not included")."""
    res = invoke("export", pool.mix, "--format", "webdataset", "--out", tmp_path / "wds")
    assert res.exit_code == 0, res.output
    idx = json.loads((tmp_path / "wds" / "index.json").read_text())
    assert idx["images_copied"] == idx["per_source"]["jpg"]["images"] + idx["per_source"]["png"]["images"] > 0
    assert "not included" not in res.output and f"{idx['images_copied']:,} images copied" in res.output
    res = invoke("export", "--help")
    assert "--for" in res.output and "not included" not in res.output


def test_a_manifest_with_two_columns_of_one_name_is_a_one_line_error(pool, tmp_path):
    mix = tmp_path / "mix"
    mix.mkdir()
    (mix / "manifest.json").write_text((pool.mix / "manifest.json").read_text())
    t = pq.read_table(pool.mix / "manifest.parquet")
    t = pa.Table.from_arrays(t.columns + [t.column("url")], names=t.column_names + ["URL"])
    pq.write_table(t, mix / "manifest.parquet")
    for args in (["--for", "hf"], ["--format", "parquet"]):
        res = invoke("export", mix, *args, "--out", tmp_path / "x")
        assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
        assert "'url' and 'URL'" in res.output
    with pytest.raises(CurateError, match="no such column"):
        export_for(pool.mix, "mds", tmp_path / "y", model_caption="nope")
    # nor a field the export adds beside one of the manifest's
    pq.write_table(pq.read_table(pool.mix / "manifest.parquet").append_column("Image", t.column("url")),
                   mix / "manifest.parquet")
    res = invoke("export", mix, "--for", "litdata", "--out", tmp_path / "z")
    assert res.exit_code == 1 and "'Image'" in res.output and res.output.count("\n") == 1, res.output
    assert invoke("export", mix, "--for", "mds", "--out", tmp_path / "z").exit_code == 0


def test_carried_numbers_stay_numbers(pool, tmp_path):
    """Export keeps the manifest's types: a number column is a number in Parquet, MDS's JSON
    and the tars' .json (the 64-bit ids aside, which JSON gets as strings)."""
    import webdataset as wds

    mix = tmp_path / "mix"
    mix.mkdir()
    (mix / "manifest.json").write_text((pool.mix / "manifest.json").read_text())
    m = pl.read_parquet(pool.mix / "manifest.parquet").with_columns(pl.col("similarity").cast(pl.Float64))
    m.write_parquet(mix / "manifest.parquet")
    export_for(mix, "hf", tmp_path / "hf", shard_rows=5000)
    t = pl.read_parquet(tmp_path / "hf" / "laion" / "train-*.parquet")
    assert t.schema["similarity"] == pl.Float64 and t.schema["sample_id"] == pl.UInt64
    assert t["similarity"].null_count() == 0
    export_for(mix, "open_clip", tmp_path / "oc", shard_rows=5000)
    meta = [json.loads(s["json"]) for s in wds.WebDataset(str(tmp_path / "oc" / "jpg" / "shard-00000.tar"))]
    assert all(isinstance(x["similarity"], float) and isinstance(x["sample_id"], str) for x in meta)
