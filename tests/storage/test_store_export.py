"""Exports and object storage, on a real S3 API server: images copied from WebDataset tars
in the store by byte range, and exports written to the store for `--format` and every
`--for TRAINER`, each read back by the trainer's own loader from the store.

One mixture per module: two WebDataset sources whose tars lie only in the store (real
captions, small generated JPEG and PNG images; a third of the PNG samples without an image,
as img2dataset leaves failed downloads) and a caption-only Parquet on local disk, at shares
0.5 / 0.2 / 0.3."""
from __future__ import annotations

import collections
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from helpers import import_without_torchvision, module_bucket, ok, write_recipe

from curate.export import ranges
from curate.export.shards import export
from curate.layout import pinned_store
from curate.storage.fs import filesystem

wds = pytest.importorskip("webdataset")

SHARES = {"jpg": 0.5, "png": 0.2, "caps": 0.3}
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def s3(s3_endpoint):
    with module_bucket(s3_endpoint, "store-export") as bucket:
        yield bucket


def _image(rng, fmt: str, side: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pool(s3, data_dir, tmp_path_factory):
    """The tars in the store (their local copies only for checking), the runs, the mixture."""
    d = tmp_path_factory.mktemp("store-export")
    rng = np.random.default_rng(5)
    members: dict[tuple[str, str], bytes] = {}
    flickr = pl.read_parquet(data_dir / "a_flickr30k_captions.parquet")["caption"].to_list()
    for ext, side, tars, every in (("jpg", 8, 2, None), ("png", 12, 1, 3)):
        (d / ext).mkdir()
        for k in range(tars):
            path = d / ext / f"{k:05d}.tar"
            url = s3.url(f"inputs/{ext}/{k:05d}.tar")
            with wds.TarWriter(str(path)) as w:
                for i in range(k * 250, (k + 1) * 250):
                    key = f"{ext}{i:06d}"
                    sample = {"__key__": key, "txt": flickr[i + (0 if ext == "jpg" else 1000)]}
                    if every is None or i % every:
                        sample[ext] = members[(url, key)] = _image(rng, "JPEG" if ext == "jpg" else "PNG", side)
                    w.write(sample)
            s3.client.upload_file(str(path), s3.name, f"inputs/{ext}/{k:05d}.tar")
    pl.read_parquet(data_dir / "a_coco_captions_val2017.parquet", columns=["caption"]).head(1200).write_parquet(
        d / "caps.parquet")
    runs = {n: d / "runs" / n for n in SHARES}
    ok("score", s3.url("inputs/jpg/"), "--out", runs["jpg"])
    ok("score", s3.url("inputs/png/00000.tar"), "--out", runs["png"])
    ok("score", d / "caps.parquet", "--out", runs["caps"])
    recipe = write_recipe(d / "r.toml", runs, {n: {"share": s, "repeat": 4} for n, s in SHARES.items()},
                          size=1600, seed=5)
    ok("mix", recipe, "--out", d / "mix")
    return type("Pool", (), {"dir": d, "mix": d / "mix", "members": members, "runs": runs})


def cat(url: str) -> bytes:
    fs, p = filesystem(url)
    return fs.cat_file(p)


def version_files(url: str) -> dict[str, bytes]:
    fs, root = filesystem(pinned_store(url))
    return {p[len(root) + 1:]: fs.cat_file(p) for p in fs.find(root)}


def check_images(tars: list[Path], members: dict) -> int:
    """Every image member of the exported tars is its source member, byte for byte."""
    n = 0
    for path in tars:
        for s in wds.WebDataset(str(path), shardshuffle=False):
            meta = json.loads(s["json"])
            image = s.get("jpg", s.get("png"))
            if image is not None:
                assert image == members[(meta["source"], meta["key"])], meta["sample_id"]
                n += 1
    return n


# -- images from tars in the store ---------------------------------------------------------------


def test_neighbouring_members_are_read_in_few_requests():
    starts = np.array([0, 1024, 4096, 1 << 20, (1 << 20) + 512, 50 << 20])
    ends = starts + 512
    a, b = ranges.coalesce(starts, ends, gap=4096, span=8 << 20)
    assert a.tolist() == [0, 1 << 20, 50 << 20] and b.tolist() == [4608, (1 << 20) + 1024, (50 << 20) + 512]
    a, b = ranges.coalesce(starts, ends, gap=0)  # only members that touch share a request
    assert a.tolist() == [0, 1024, 4096, 1 << 20, 50 << 20]
    a, b = ranges.coalesce(np.arange(10) * 1000, np.arange(10) * 1000 + 1000, gap=0, span=3000)
    assert a.tolist() == [0, 3000, 6000, 9000] and (b - a).max() <= 3000  # a request stays within span


def test_webdataset_export_of_tars_in_the_store_copies_each_selected_member_by_range(s3, pool, tmp_path, monkeypatch):
    """The shards written locally and to the store are the same bytes; every image is its
    source member; the tars are read in a few coalesced requests, only the members apart."""
    ok("export", pool.mix, "--format", "webdataset", "--out", tmp_path / "wds", "--shard-rows", "400")
    url = s3.url("exports/wds")
    res = ok("export", pool.mix, "--format", "webdataset", "--out", url, "--shard-rows", "400")
    assert "images copied" in res.output
    local = {p.name: p.read_bytes() for p in sorted((tmp_path / "wds").glob("shard-*.tar"))}
    stored = version_files(url)
    assert len(local) == 4 and all(stored[n] == b for n, b in local.items())
    index = json.loads(stored["index.json"])
    assert index["images_copied"] == check_images(sorted((tmp_path / "wds").glob("shard-*.tar")), pool.members) > 500
    assert index["per_source"]["png"]["images"] < index["per_source"]["png"]["rows"]
    assert index["load_with"] == f'webdataset.WebDataset("{pinned_store(url)}/shard-{{00000..00003}}.tar")'
    fs, _ = filesystem(url)  # the client the export reads through
    calls = []
    real = fs.cat_ranges

    def counted(paths, starts, ends, **kw):
        calls.append((len(starts), sum(e - s for s, e in zip(starts, ends))))
        return real(paths, starts, ends, **kw)

    monkeypatch.setattr(fs, "cat_ranges", counted)
    got = export(pool.mix, "webdataset", tmp_path / "again", shard_rows=400)
    # 4 shards x 3 tars: about one request each (two where 256 KB or more of a tar lie unselected)
    assert 4 <= sum(n for n, _ in calls) <= 4 * 3 * 2
    assert got["shards"] == json.loads((tmp_path / "wds" / "index.json").read_text())["shards"]
    monkeypatch.setattr(ranges, "GAP", 0)
    calls.clear()
    export(pool.mix, "webdataset", tmp_path / "sparse", shard_rows=400)
    sources = sum(p.stat().st_size for p in pool.dir.glob("*/0000*.tar"))
    # the selected members' header and data blocks only: not the captions' members, not the gaps
    assert sum(n for n, _ in calls) > 100 and sum(b for _, b in calls) < 0.7 * sources
    assert all((tmp_path / "sparse" / n).read_bytes() == b for n, b in local.items())


def test_a_shard_from_tars_in_the_store_is_the_shard_from_the_same_tars_on_disk(s3, pool):
    """The same rows, their sources once the store's objects and once local copies of them:
    the same tar, byte for byte (ranged reads versus a memory-mapped file)."""
    from curate.export import tar
    from curate.export.images import image_column
    from curate.export.writers import json_frame

    rows = pl.read_parquet(pool.mix / "manifest.parquet")
    local = rows.with_columns(pl.col("source").str.replace(s3.url("inputs/"), str(pool.dir) + "/", literal=True))
    assert (local["source"] != rows["source"]).sum() > 500
    meta = json_frame(rows.to_arrow()).drop("caption")
    from_store = tar.tar_bytes(rows.to_arrow(), False, meta)
    assert from_store == tar.tar_bytes(local.to_arrow(), False, meta)
    assert image_column(rows).equals(image_column(local))  # the MDS and Parquet exports' image column


def test_a_tar_in_the_store_that_changed_since_it_was_scored_stops_the_export(s3, pool, tmp_path):
    from helpers import fails_in_one_line

    src = s3.url("inputs/png/00000.tar")
    original = cat(src)
    fs, p = filesystem(src)
    try:
        m = pl.read_parquet(pool.mix / "manifest.parquet").filter(pl.col("source") == src)
        at = int(m["image_offset"].drop_nulls()[3])
        fs.pipe_file(p, original[:at] + bytes(16) + original[at + 16:])  # one selected image edited
        fs.invalidate_cache()
        msg = fails_in_one_line("export", pool.mix, "--format", "webdataset", "--out", tmp_path / "x")
        assert src in msg and "changed since it was scored" in msg
        fs.rm(p)
        msg = fails_in_one_line("export", pool.mix, "--format", "webdataset", "--out", tmp_path / "y")
        assert src in msg and "not found" in msg
    finally:
        fs.pipe_file(p, original)


# -- every trainer's export in the store, read by its own loader -------------------------------

DRAWS = 1200


def _shares(counts: collections.Counter, shares: dict[str, float], tol: float = 0.045) -> None:
    n = sum(counts.values())
    total = sum(shares.values())
    for k, s in shares.items():
        assert abs(counts[k] / n - s / total) <= tol, (k, dict(counts), shares)


@pytest.fixture(scope="module")
def trainer_exports(s3, pool):
    """Each trainer's export of the mixture in the store: name -> (its URL, index)."""
    out = {}
    for trainer in ("open_clip", "energon", "mds", "litdata", "hf"):
        if trainer == "energon":
            pytest.importorskip("megatron.energon")
        url = s3.url(f"exports/{trainer}")
        ok("export", pool.mix, "--for", trainer, "--out", url, "--shard-rows", "300")
        out[trainer] = (url, json.loads(cat(f"{pinned_store(url)}/index.json")))
    return out


def mix_file(trainer_exports, trainer: str) -> tuple[str, bytes]:
    url, index = trainer_exports[trainer]
    version = pinned_store(url)
    return version, cat(f"{version}/{index['mix_file']}")


def test_open_clip_streams_the_shards_through_aws_s3_cp(trainer_exports, pool, monkeypatch):
    """open_clip's README form for S3: ``pipe:aws s3 cp URL -`` per shard, read by its own
    WebDataset pipeline (the ``aws`` CLI finds the store by AWS_ENDPOINT_URL)."""
    if shutil.which("aws") is None:
        pytest.skip("the aws CLI is not installed")
    import torch

    data = import_without_torchvision(monkeypatch, "open_clip_train.data", ("torchvision", "torchvision.datasets"))
    params = pytest.importorskip("open_clip_train.params")
    version, text = mix_file(trainer_exports, "open_clip")
    argv = shlex.split(text.decode())
    urls = argv[argv.index("--train-data") + 1].split("::")
    last = {s["name"]: len(s["shards"]) - 1 for s in trainer_exports["open_clip"][1]["sources"]}
    assert urls == [f"pipe:aws s3 cp {version}/{n}/shard-{{00000..{last[n]:05d}}}.tar -" for n in ("jpg", "png")]
    args = params.parse_args(argv + ["--batch-size", "50", "--workers", "0", "--seed", "0"])
    args.world_size = 1
    args.train_num_samples = 300  # a few shards, each one `aws s3 cp`
    side = {8: "jpg", 12: "png"}
    info = data.get_wds_dataset(args, lambda im: torch.tensor(im.size[0]), is_train=True,
                                tokenizer=lambda texts: torch.zeros((1, 1), dtype=torch.long))
    counts = collections.Counter(side[int(x)] for images, _ in info.dataloader for x in images)
    assert sum(counts.values()) == 300 and set(counts) == {"jpg", "png"}


def test_energon_reads_the_blend_from_the_store_through_msc(trainer_exports, s3, tmp_path, monkeypatch):
    energon = pytest.importorskip("megatron.energon")
    pytest.importorskip("multistorageclient")
    cfg = tmp_path / "msc.yaml"
    cfg.write_text(f"profiles:\n  store:\n    storage_provider:\n      type: s3\n      options:\n"
                   f"        base_path: {s3.name}\n        endpoint_url: {s3.endpoint}\n"
                   "        region_name: us-east-1\n")
    monkeypatch.setenv("MSC_CONFIG", str(cfg))
    url, index = trainer_exports["energon"]
    version = pinned_store(url)
    key = version.split("/", 3)[3]
    blend = f"msc://PROFILE/{s3.name}/{key}/energon_blend.yaml"
    assert index["load_with"] == f"megatron.energon.get_train_dataset('{blend}', ...)"
    wc = energon.WorkerConfig(rank=0, world_size=1, num_workers=0)
    ds = energon.get_train_dataset(f"msc://store/{key}/energon_blend.yaml", worker_config=wc, batch_size=None,
                                   shuffle_buffer_size=None, max_samples_per_sequence=None)
    counts: collections.Counter = collections.Counter()
    for s in energon.get_loader(ds, watchdog_timeout_seconds=None):
        counts[s.__subflavors__["source"]] += 1
        if sum(counts.values()) >= DRAWS:
            break
    _shares(counts, SHARES)


def test_mds_streams_from_the_store_by_remote(trainer_exports, pool, tmp_path, monkeypatch):
    streaming = import_without_torchvision(monkeypatch, "streaming", ("streaming.vision",))
    streaming.base.util.clean_stale_shared_memory()
    _, text = mix_file(trainer_exports, "mds")
    cfg = json.loads(text)
    assert all(s["remote"].startswith("s3://") and "local" not in s for s in cfg["streams"])
    streams = [streaming.Stream(remote=s["remote"], local=str(tmp_path / s["name"]), proportion=s["proportion"])
               for s in cfg["streams"]]
    ds = streaming.StreamingDataset(streams=streams, shuffle=True, shuffle_seed=5, batch_size=1, epoch_size=DRAWS)
    counts: collections.Counter = collections.Counter()
    for s in ds:
        counts[s["json"]["run"]] += 1
        if s["json"]["image_member"] is not None:
            assert s["image"] == pool.members[(s["json"]["source"], s["json"]["key"])]
    _shares(counts, SHARES)


def test_litdata_streams_the_parquet_parts_from_the_store(trainer_exports, pool, tmp_path):
    litdata = pytest.importorskip("litdata")
    from litdata.streaming.item_loader import ParquetLoader

    _, text = mix_file(trainer_exports, "litdata")
    cfg = json.loads(text)
    sets = [litdata.StreamingDataset(d["input_dir"], item_loader=ParquetLoader(), shuffle=True, seed=5,
                                     cache_dir=str(tmp_path / d["name"])) for d in cfg["datasets"]]
    combined = litdata.CombinedStreamingDataset(sets, weights=cfg["weights"], iterate_over_all=False, seed=5)
    counts: collections.Counter = collections.Counter()
    for s in combined:
        counts[s["run"]] += 1
        if s["image"] is not None:
            assert s["image"] == pool.members[(s["source"], s["key"])]
        if sum(counts.values()) >= DRAWS:
            break
    assert sum(counts.values()) >= DRAWS
    _shares(counts, SHARES)


def test_hf_datasets_loads_the_data_files_from_the_store(trainer_exports, pool, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    # the tests run with HF_HUB_OFFLINE=1, which datasets also applies to fsspec URLs; the
    # store here is on loopback
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    _, text = mix_file(trainer_exports, "hf")
    cfg = json.loads(text)
    parts = [datasets.load_dataset("parquet", data_files=f, split="train", cache_dir=str(tmp_path / "hf"),
                                   storage_options={}) for f in cfg["data_files"].values()]
    mixed = datasets.interleave_datasets(parts, probabilities=cfg["probabilities"], seed=5)
    drawn = mixed.select(range(DRAWS))
    _shares(collections.Counter(drawn["run"]), SHARES)
    for r in drawn.filter(lambda r: r["image"] is not None).select(range(100)):
        assert r["image"] == pool.members[(r["source"], r["key"])]


def test_each_trainer_export_is_one_version_with_the_local_shards(trainer_exports, pool, tmp_path):
    """The shards in the store are the bytes of the same export on local disk; the mixing
    file and index.json name the version's URLs where the local one names its folder."""
    for trainer, (url, index) in trainer_exports.items():
        local = tmp_path / trainer
        ok("export", pool.mix, "--for", trainer, "--out", local, "--shard-rows", "300")
        files = version_files(url)
        mine = {p.relative_to(local).as_posix(): p.read_bytes() for p in local.rglob("*") if p.is_file()}
        assert set(files) == set(mine), trainer
        version = pinned_store(url)
        for name, data in mine.items():
            if name.endswith((".tar", ".mds", ".parquet")):
                assert files[name] == data, (trainer, name)
            elif name == index["mix_file"] and trainer != "energon":
                assert version.encode() in files[name] and str(local.resolve()).encode() in data
        fs, _ = filesystem(url)
        assert not fs.exists(f"{url}/.curate-lock") and b"testing-secret-value" not in b"".join(files.values())


# -- a killed export ------------------------------------------------------------------------------


def _wait_for(check, timeout: float = 120.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if check():
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("moment", ["writing shards", "uploading"])
def test_kill_9_of_an_export_into_s3_leaves_the_old_export_or_the_new_one_whole(s3, pool, moment):
    """Killed while it writes its shards (it holds the lock) or while it uploads the new
    version: the pointer still names the old export, whole; the next export is not blocked."""
    url = s3.url(f"exports/killed-{moment.replace(' ', '-')}")
    ok("export", pool.mix, "--format", "webdataset", "--out", url, "--shard-rows", "800")
    old = pinned_store(url)
    old_index = cat(f"{old}/index.json")
    fs, path = filesystem(url)

    def seen(what: str) -> bool:
        fs.invalidate_cache()
        if what == "writing shards":
            return fs.exists(f"{path}/.curate-lock")
        return len(fs.ls(f"{path}/.v", detail=False)) > 1

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "curate.cli", "export", str(pool.mix), "--for", "mds", "--out", url,
                             "--shard-rows", "5", "--overwrite"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert _wait_for(lambda: seen(moment) or proc.poll() is not None)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed before it switched
    files = version_files(url)
    assert pinned_store(url) == old and files["index.json"] == old_index
    assert sorted(n for n in files if n.endswith(".tar")) == ["shard-00000.tar", "shard-00001.tar"]
    ok("export", pool.mix, "--for", "mds", "--out", url, "--shard-rows", "300", "--overwrite")
    index = json.loads(cat(f"{pinned_store(url)}/index.json"))
    files = version_files(url)
    assert index["for"] == "mds" and all(f"{s['name']}/{p['file']}" in files for s in index["sources"]
                                         for p in s["shards"])


def test_a_second_writer_of_an_export_gets_one_line(s3, pool):
    from helpers import fails_in_one_line

    from curate.storage.lock import StoreLock

    url = s3.url("exports/busy")
    with StoreLock(url + "/.curate-lock", url, "curate export m --out " + url):
        msg = fails_in_one_line("export", pool.mix, "--for", "hf", "--out", url)
    assert "being written by another curate process" in msg and "curate export m" in msg
