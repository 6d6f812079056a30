"""WebDataset shards as img2dataset and webdataset.TarWriter write them.

An img2dataset output folder (``00000.tar`` + ``00000.parquet`` + ``00000_stats.json`` per
shard) is read once: rows = samples; the numbers of each sample's ``.json`` stay numbers;
the tars take the fast scan (pax headers); names over 100 bytes (ustar prefix, pax, GNU)
survive score, mix, verify and export; an image edited after scoring is reported by verify
and refused by export. Captions are real (``../shared/data``).
"""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import invoke, run_scores, write_recipe

from curate.errors import CurateError
from curate.export.shards import export
from curate.ingest import tarscan
from curate.mix.build import build_mixture

wds = pytest.importorskip("webdataset")
SHARDS, PER_SHARD, FAILED = 3, 80, 20


def image(i: int) -> bytes:
    """JPEG-like bytes of 2-6 KB, different for every sample."""
    body = hashlib.sha256(str(i).encode()).digest() * (64 + (i * 37) % 128)
    return b"\xff\xd8\xff\xe0" + body + b"\xff\xd9"


def img2dataset_folder(d: Path, caps: list[str]) -> None:
    """What img2dataset writes per shard: the tar through webdataset.TarWriter (key.jpg,
    key.txt, key.json), the sidecar Parquet with the downloader's schema (every URL tried,
    failures included) and ``_stats.json``."""
    d.mkdir(parents=True, exist_ok=True)
    n = PER_SHARD + FAILED
    for s in range(SHARDS):
        rows = []
        with open(d / f"{s:05d}.tar", "wb") as f:
            tw = wds.TarWriter(f)
            for j in range(n):
                i = s * n + j
                ok = j < PER_SHARD
                meta = {"url": f"https://img.example/{i}.jpg", "caption": caps[i], "similarity": 0.25 + (i % 50) / 200,
                        "key": f"{s:05d}{j:04d}", "status": "success" if ok else "failed_to_download",
                        "error_message": None if ok else "HTTP Error 404: Not Found",
                        "width": 256 + i % 7 if ok else None, "height": 256 if ok else None,
                        "original_width": 640 + i if ok else None, "original_height": 480 if ok else None}
                rows.append(meta)
                if ok:
                    tw.write({"__key__": meta["key"], "jpg": image(i), "txt": caps[i],
                              "json": json.dumps(meta, indent=4)})
            tw.close()
        schema = pa.schema([("url", pa.string()), ("caption", pa.string()), ("similarity", pa.float64()),
                            ("key", pa.string()), ("status", pa.string()), ("error_message", pa.string()),
                            ("width", pa.int32()), ("height", pa.int32()), ("original_width", pa.int32()),
                            ("original_height", pa.int32())])
        pq.write_table(pa.Table.from_pylist(rows, schema), d / f"{s:05d}.parquet")
        (d / f"{s:05d}_stats.json").write_text(json.dumps({"count": n, "successes": PER_SHARD,
                                                           "failed_to_download": FAILED, "failed_to_resize": 0}))


@pytest.fixture(scope="module")
def caps(read_data) -> list[str]:
    web = read_data("c_laion", ["caption"])["caption"].head(250)
    multi = read_data("b_multi30k_task1", ["caption"])["caption"].head(250)
    return pl.concat([web, multi]).to_list()


@pytest.fixture(scope="module")
def folder(caps, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("i2d") / "shards"
    img2dataset_folder(d, caps)
    return d


@pytest.fixture(scope="module")
def scored(folder, tmp_path_factory) -> tuple[Path, pl.DataFrame]:
    run = tmp_path_factory.mktemp("i2d-run") / "run"
    return run, run_scores([folder], run, carry_all=True)


def test_img2dataset_folder_is_read_once_rows_are_samples(scored, caps):
    run, got = scored
    assert got.height == SHARDS * PER_SHARD  # not the sidecars' rows on top
    want = [caps[s * (PER_SHARD + FAILED) + j] for s in range(SHARDS) for j in range(PER_SHARD)]
    assert got.sort("source", "row")["caption"].to_list() == want
    assert {Path(s).suffix for s in got["source"]} == {".tar"}
    info = json.loads((run / "run.json").read_text())
    assert info["read"] == ("read 3 .tar shards; 3 img2dataset sidecars (.parquet, _stats.json) used as metadata, "
                            f"not as captions ({SHARDS * (PER_SHARD + FAILED)} URLs tried: "
                            f"{SHARDS * PER_SHARD} success, "
                            f"{SHARDS * FAILED} failed_to_download)")
    assert [Path(p).name for p in info["sidecars"]] == ["00000.parquet", "00001.parquet", "00002.parquet"]


def test_the_cli_says_what_it_read(folder, tmp_path):
    r = invoke("score", folder, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    line = r.output.splitlines()[0]
    assert line.startswith("read 3 .tar shards; 3 img2dataset sidecars (.parquet, _stats.json) used as metadata")


def test_carried_json_numbers_stay_numbers(scored):
    _, got = scored
    got = got.sort("source", "row")
    assert got["similarity"].dtype == pl.Float64 and got["width"].dtype == pl.Int64
    assert got["original_width"].dtype == pl.Int64 and got["height"].to_list() == [256] * got.height
    assert got["similarity"][0] == 0.25 and got["width"][1] == 257
    assert got["url"][0] == "https://img.example/0.jpg" and got["key"][0] == "000000000"


def test_tarwriter_shards_take_the_fast_scan(folder, monkeypatch):
    def slow(*a, **k):
        raise AssertionError("read through tarfile")
    monkeypatch.setattr(tarscan, "_members_tarfile", slow)
    frames = list(tarscan.members(str(folder / "00000.tar")))
    m = pl.concat(frames)
    assert m.height == 3 * PER_SHARD and m["hash"].is_not_null().sum() == PER_SHARD
    with tarfile.open(folder / "00000.tar") as tf:  # the same members as tarfile gives
        ref = [(x.name, x.offset_data, x.size) for x in tf if x.isfile()]
    assert list(zip(m["name"], m["offset"], m["size"])) == ref


def test_laion_url_and_img2dataset_url_are_one_column(folder, caps, tmp_path):
    laion = pl.DataFrame({"TEXT": caps[:50], "URL": [f"https://laion.example/{i}" for i in range(50)],
                          "WIDTH": [float(300 + i) for i in range(50)]})
    laion.rename({"TEXT": "caption"}).write_parquet(tmp_path / "laion.parquet")
    got = run_scores([tmp_path / "laion.parquet", folder / "00001.tar"], tmp_path / "run", carry_all=True)
    assert "URL" not in got.columns and "WIDTH" not in got.columns
    assert got["url"].null_count() == 0 and got.height == 50 + PER_SHARD
    assert got["width"].dtype == pl.Float64  # Float64 in one input, Int64 in the other


def test_a_case_only_clash_in_one_input_is_one_line(caps, tmp_path):
    pl.DataFrame({"caption": caps[:20], "URL": ["a"] * 20, "url": ["b"] * 20}).write_parquet(tmp_path / "x.parquet")
    r = invoke("score", tmp_path / "x.parquet", "--out", tmp_path / "run")
    assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
    assert "'URL' and 'url'" in r.output and "x.parquet" in r.output
    pl.DataFrame({"caption": caps[:20], "Tag": ["a"] * 20, "tag": ["b"] * 20}).write_parquet(tmp_path / "y.parquet")
    r = invoke("score", tmp_path / "y.parquet", "--out", tmp_path / "run2", "--carry-all")
    assert r.exit_code == 1 and r.output.count("\n") == 1 and "'Tag'" in r.output and "'tag'" in r.output, r.output


# -- long member names, edited images ----------------------------------------------------------


def long_name_tar(path: Path, caps: list[str], fmt: int) -> None:
    """Members named ``<folder of 120 bytes>/<key>.<ext>``: over 100 bytes, so tarfile writes
    a ustar prefix, a pax path or a GNU long name, as ``fmt`` says."""
    with tarfile.open(path, "w", format=fmt) as tf:
        for i, c in enumerate(caps):
            key = f"{'downloads-' * 12}/{i:09d}"
            for ext, data in (("jpg", image(i)), ("txt", c.encode()),
                              ("json", json.dumps({"url": f"https://img.example/{i}.jpg"}).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT],
                         ids=["ustar-prefix", "pax", "gnu"])
def test_long_member_names_score_mix_verify_and_export(fmt, caps, tmp_path):
    long_name_tar(tmp_path / "a.tar", caps[:60], fmt)
    got = run_scores([tmp_path / "a.tar"], tmp_path / "run")
    assert got["image_member"][0] == f"{'downloads-' * 12}/000000000.jpg"
    assert got["caption"].to_list() == caps[:60]
    build_mixture(write_recipe(tmp_path / "m.toml", {"w": tmp_path / "run"}, {"w": {"share": 1.0}}, size=20),
                  tmp_path / "mix")
    r = invoke("verify", tmp_path / "mix", "--full")
    assert r.exit_code == 0, r.output
    index = export(tmp_path / "mix", "webdataset", tmp_path / "out")
    assert index["images_copied"] == 20
    m = pl.read_parquet(tmp_path / "mix" / "manifest.parquet")
    with tarfile.open(tmp_path / "out" / index["shards"][0]["file"]) as tf:
        out = {x.name: tf.extractfile(x).read() for x in tf}
    for sid, row in zip(m["sample_id"], m["row"]):
        assert out[f"{sid:020d}.jpg"] == image(row)


@pytest.fixture
def edited(caps, tmp_path) -> tuple[Path, list[int]]:
    """A TarWriter shard scored and mixed, then some selected images overwritten in place
    (same sizes, other bytes)."""
    d = tmp_path / "shards"
    img2dataset_folder(d, caps)
    run_scores([d / "00000.tar"], tmp_path / "run")
    build_mixture(write_recipe(tmp_path / "m.toml", {"w": tmp_path / "run"}, {"w": {"share": 1.0}}, size=30),
                  tmp_path / "mix")
    m = pl.read_parquet(tmp_path / "mix" / "manifest.parquet").sort("row")
    hit = m.head(3)
    raw = np.fromfile(d / "00000.tar", np.uint8)
    for o, s in zip(hit["image_offset"].cast(pl.Int64), hit["image_size"].cast(pl.Int64)):
        raw[o + 10:o + s - 2] = np.frombuffer(hashlib.sha256(b"x").digest() * (s // 32 + 1), np.uint8)[: s - 12]
    raw.tofile(d / "00000.tar")
    return tmp_path, hit["sample_id"].to_list()


def test_verify_reports_images_changed_after_scoring(edited):
    tmp_path, ids = edited
    r = invoke("verify", tmp_path / "mix")
    assert r.exit_code == 1, r.output
    assert "intact" not in r.output.splitlines()[-1]
    changed = [ln for ln in r.output.splitlines() if "image changed" in ln]
    assert len(changed) == 3 and all(str(i) in r.output for i in ids)


def test_export_refuses_an_image_whose_bytes_changed(edited):
    tmp_path, ids = edited
    with pytest.raises(CurateError, match="changed since it was scored") as e:
        export(tmp_path / "mix", "webdataset", tmp_path / "out")
    msg = str(e.value)
    assert any(str(i) in msg for i in ids) and "3 of 30 images" in msg and "00000.tar" in msg and "\n" not in msg
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.tar"))


# -- the scan against tarfile, the hash, types across windows ----------------------------------


@pytest.mark.parametrize("window", [8192, 65536, 1 << 26])
@pytest.mark.parametrize("fmt", ["tarwriter", tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT, tarfile.GNU_FORMAT])
def test_fast_scan_gives_what_tarfile_gives(fmt, window, caps, tmp_path):
    path = tmp_path / "a.tar"
    if fmt == "tarwriter":
        with open(path, "wb") as f:
            tw = wds.TarWriter(f)
            for i, c in enumerate(caps[:120]):
                # .json members of 0 to 3 blocks: data gathered across block boundaries
                tw.write({"__key__": f"{'x' * 110}/{i:05d}", "jpg": image(i), "txt": c,
                          "json": json.dumps({"pad": "x" * (i * 13 % 1500)})})
            tw.close()
    else:
        long_name_tar(path, caps[:120], fmt)
    size = path.stat().st_size
    with open(path, "rb") as f:
        fast = pl.concat(list(tarscan._members_fast(f, size, window)))
    slow = pl.concat(list(tarscan._members_tarfile(str(path), size)))
    assert fast.equals(slow)
    assert fast["hash"].null_count() == 2 * 120  # hashes for the 120 images only


def test_member_hash_follows_the_bytes_not_their_place():
    from curate.hashing import member_hashes

    data = [image(i)[: 100 + i * 13] for i in range(40)]
    starts = np.cumsum([0] + [(len(d) + 511) // 512 * 512 for d in data])[:-1]
    buf = np.zeros(int(starts[-1]) + 8192, np.uint8)
    for s, d in zip(starts, data):
        buf[s:s + len(d)] = np.frombuffer(d, np.uint8)
    lens = np.array([len(d) for d in data])
    h = member_hashes(buf, starts, lens)
    assert len(set(h.tolist())) == 40
    alone = [member_hashes(np.frombuffer(d + bytes(8), np.uint8), [0], [len(d)])[0] for d in data[:5]]
    assert alone == h[:5].tolist()  # the same bytes elsewhere: the same hash
    swapped = buf.copy()
    a = int(starts[3])
    swapped[a:a + 8], swapped[a + 8:a + 16] = buf[a + 8:a + 16], buf[a:a + 8]
    flipped = buf.copy()
    flipped[starts[7] + lens[7] - 1] ^= 0x80
    padded = buf.copy()
    padded[starts[9] + lens[9]] ^= 1  # after the member: not part of it
    assert (member_hashes(swapped, starts, lens) != h).tolist() == [i == 3 for i in range(40)]
    assert (member_hashes(flipped, starts, lens) != h).tolist() == [i == 7 for i in range(40)]
    assert (member_hashes(padded, starts, lens) == h).all()


def _member_hash_by_definition(d: bytes) -> int:
    """The definition in curate.hashing.member_hashes, word by word with Python integers."""
    mask, k1, k2 = (1 << 64) - 1, 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9

    def splitmix(x: int) -> int:
        x = (x + 0x9E3779B97F4A7C15) & mask
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
        return x ^ (x >> 31)

    s = t = 0
    padded = d + bytes(-len(d) % 8)
    for j in range(len(padded) // 8):  # the reference, not the package
        w = (int.from_bytes(padded[8 * j:8 * j + 8], "little") * k1) & mask
        m = ((w ^ (w >> 29)) * k2) & mask
        s, t = (s + m) & mask, (t + j * m) & mask
    return splitmix(s ^ splitmix(t ^ len(d)))


def test_member_hashes_are_fixed_by_their_definition_whatever_the_chunking(monkeypatch):
    """Stored image hashes stay valid: the numpy computation equals the definition, for
    members that cross chunk boundaries, end mid-word, are empty or larger than a chunk."""
    from curate import hashing

    data = [image(i)[: (0, 1, 7, 8, 9, 4095, 4096, 5000)[i % 8] + i] for i in range(48)]
    data[5] = image(5) * 60  # larger than the smallest chunk below
    starts = np.cumsum([0] + [(len(d) + 511) // 512 * 512 + 512 for d in data])[:-1]
    buf = np.zeros(int(starts[-1]) + len(data[-1]), np.uint8)  # the last member ends the buffer
    for s, d in zip(starts, data):
        buf[s:s + len(d)] = np.frombuffer(d, np.uint8)
    lens = np.array([len(d) for d in data])
    want = [_member_hash_by_definition(d) for d in data]
    assert want[:2] == [12035550249420947055, 14008233295558643071]  # pinned: never to change
    for chunk in (4096, 65536, hashing.HASH_CHUNK):
        monkeypatch.setattr(hashing, "HASH_CHUNK", chunk)
        assert hashing.member_hashes(buf, starts, lens).tolist() == want


def test_a_json_number_that_does_not_fit_the_column_is_one_line(caps, tmp_path, monkeypatch):
    monkeypatch.setattr(tarscan, "WINDOW", 65536)
    from curate.ingest import webdataset

    monkeypatch.setattr(webdataset, "INSPECT_WINDOW", 65536)
    with open(tmp_path / "a.tar", "wb") as f:
        tw = wds.TarWriter(f)
        for i, c in enumerate(caps[:300]):
            meta = {"width": 2.5 if i == 250 else 256}
            tw.write({"__key__": f"{i:05d}", "jpg": image(i), "txt": c, "json": json.dumps(meta)})
        tw.close()
    r = invoke("score", tmp_path / "a.tar", "--out", tmp_path / "run", "--carry-all")
    assert r.exit_code == 1 and r.output.count("\n") == 1, r.output
    assert "'width' holds 2.5 at row 250" in r.output and "a.tar" in r.output


def test_json_surrogate_escapes_lone_ones_become_u_fffd_pairs_stay(caps, tmp_path):
    """json.dumps writes an emoji as a pair of surrogate escapes; a lone one is no character."""
    from curate.ingest import webdataset

    with open(tmp_path / "a.tar", "wb") as f:
        tw = wds.TarWriter(f)
        for i, c in enumerate(caps[:50]):
            extra = {3: "\U0001F600 ok", 7: "bad \ud800 half", 8: "\udc80"}.get(i, "")
            tw.write({"__key__": f"{i:05d}", "jpg": image(i), "json": json.dumps({"caption": c + extra}, indent=4)})
        tw.close()
    got = pl.concat(webdataset.samples(str(tmp_path / "a.tar")))["caption"].to_list()
    assert got[3] == caps[3] + "\U0001F600 ok"
    assert got[7] == caps[7] + "bad \ufffd half" and got[8] == caps[8] + "\ufffd"
    assert [g for i, g in enumerate(got) if i not in (3, 7, 8)] == [c for i, c in enumerate(caps[:50]) if i not in (3, 7, 8)]


@pytest.mark.parametrize("fast", [True, False])
def test_a_tar_cut_between_members_is_one_line_naming_the_file(fast, caps, tmp_path, monkeypatch):
    whole = tmp_path / "whole.tar"
    with open(whole, "wb") as f:
        tw = wds.TarWriter(f)
        for i, c in enumerate(caps[:40]):
            tw.write({"__key__": f"{i:05d}", "jpg": image(i), "txt": c})
        tw.close()
    with tarfile.open(whole) as tf:
        members = tf.getmembers()
    cut_after = members[49]  # the 25th sample's .txt: the file ends right after a member
    end = cut_after.offset_data + (cut_after.size + 511) // 512 * 512
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:end])
    if not fast:
        monkeypatch.setattr(tarscan, "_members_fast", lambda *a, **k: (_ for _ in ()).throw(tarscan.Fallback()))
    res = invoke("score", whole, "--out", tmp_path / "ok")
    assert res.exit_code == 0, res.output
    res = invoke("score", cut, "--out", tmp_path / "run")
    assert res.exit_code == 1, res.output
    [line] = res.output.strip().splitlines()
    assert line.startswith(f"Error: {cut}: truncated tar") and cut_after.name in line and "end-of-archive" in line
