"""Reading inputs: formats, provenance (`row`, `source`, `sample_id`), text decoding."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import polars as pl
import pytest

from curate import hashing
from curate.errors import CurateError
from curate.ingest import inputs, readers


def read_all(path, caption="caption", id_column=None, carry=(), batch_rows=1000) -> pl.DataFrame:
    """Read one input the way `curate score` does, with the row index it assigns."""
    [inp] = inputs.resolve_inputs([str(path)])
    inputs.inspect_input(inp)
    inputs.check_columns(inp, caption, id_column)
    frames = list(readers.read_batches(inp, caption, id_column, list(carry), batch_rows))
    if not frames:
        return pl.DataFrame({"caption": [], "row": []}, schema={"caption": pl.String, "row": pl.Int64})
    df = pl.concat(frames)
    return df.with_columns(pl.int_range(0, df.height, dtype=pl.Int64).alias("row"))


# -- formats and row numbers -----------------------------------------------------------------


def test_parquet_rows_in_batches(tmp_path):
    p = tmp_path / "a.parquet"
    pl.DataFrame({"caption": [f"c{i}" for i in range(2500)], "n": range(2500)}).write_parquet(p, row_group_size=700)
    [inp] = inputs.resolve_inputs([str(p)])
    inputs.inspect_input(inp)
    batches = list(readers.read_batches(inp, "caption", None, ["n"], 1000))
    assert [b.height for b in batches] == [1000, 1000, 500]
    df = pl.concat(batches)
    assert df["caption"].to_list() == [f"c{i}" for i in range(2500)]
    assert df["n"].to_list() == list(range(2500))


def test_jsonl_blank_lines_count_as_rows_so_row_is_the_line_index(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"caption": "zero"}\n\n{"caption": "two"}\n   \n{"caption": "four"}\n')
    df = read_all(p)
    assert df["caption"].to_list() == ["zero", None, "two", None, "four"]


def test_jsonl_crlf_and_no_final_newline(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'{"caption": "zero"}\r\n\r\n{"caption": "two"}')
    assert read_all(p)["caption"].to_list() == ["zero", None, "two"]


def test_jsonl_byte_order_mark(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_bytes(b'\xef\xbb\xbf{"caption": "zero"}\n{"caption": "one"}\n')
    assert read_all(p)["caption"].to_list() == ["zero", "one"]


@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_jsonl_row_numbers_survive_chunk_boundaries(tmp_path, monkeypatch, chunk):
    """Chunks that split lines, and chunks made only of blank lines, keep row == line."""
    monkeypatch.setattr(readers, "JSONL_CHUNK_BYTES", chunk)
    lines = []
    for i in range(300):
        lines.append(json.dumps({"caption": f"caption number {i}", "k": i}) if i % 50 else "")
    lines[100:140] = [""] * 40  # a run of blank lines longer than a chunk
    p = tmp_path / "a.jsonl"
    p.write_text("\n".join(lines) + "\n")
    df = read_all(p, carry=["k"], batch_rows=37)
    assert df.height == 300
    expect = [json.loads(ln)["caption"] if ln else None for ln in lines]
    assert df["caption"].to_list() == expect


def test_jsonl_keys_missing_on_some_lines_and_mixed_value_types(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"caption": "zero", "url": "u0"}\n{"caption": 5}\n{"other": 1}\n{"caption": true, "url": null}\n')
    df = read_all(p, carry=["url"])
    assert df["caption"].to_list() == ["zero", "5", None, "true"]
    assert df["url"].to_list() == ["u0", None, None, None]


def test_csv_quoted_newlines_keep_one_row_per_record(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text('caption,n\n"first, with comma",0\n"second\nover two lines",1\nthird,2\n"fourth ""quoted""",3\n')
    df = read_all(p, carry=["n"])
    assert df["caption"].to_list() == ["first, with comma", "second\nover two lines", "third", 'fourth "quoted"']
    assert df["n"].to_list() == ["0", "1", "2", "3"]


def test_tsv_quotes_are_text(tmp_path):
    p = tmp_path / "a.tsv"
    p.write_text('caption\tn\na "quoted" word\t0\nplain\t1\n')
    assert read_all(p)["caption"].to_list() == ['a "quoted" word', "plain"]


def test_csv_values_stay_text(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("caption,id\n007,0012\n1e3,x\n")
    df = read_all(p, id_column="id")
    assert df["caption"].to_list() == ["007", "1e3"]
    assert df["id"].to_list() == ["0012", "x"]


def test_numeric_parquet_caption_is_refused(tmp_path):
    p = tmp_path / "a.parquet"
    pl.DataFrame({"caption": [1, None, 3], "text": ["a", "b", "c"]}).write_parquet(p)
    with pytest.raises(CurateError, match="holds Int64 values, not text.*text columns: text"):
        read_all(p)


def test_lossy_binary_decoding_keeps_one_value_per_row():
    s = pl.Series("caption", [b"ok", b"\xff", None, b"caf\xe9\x00x", b"", b"\xe2\x82"], dtype=pl.Binary)
    out = readers.to_text(s)
    assert out.to_list() == ["ok", "\ufffd", None, "caf\ufffd\x00x", "", "\ufffd"]


def test_caption_column_of_structs_is_an_error():
    with pytest.raises(CurateError, match="not text"):
        readers.to_text(pl.Series("caption", [{"en": "x"}]))


def test_carried_bytes_lists_and_structs_become_text(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({
        "caption": ["one", "two"],
        "url": pa.array([b"http://x/\xff", None], pa.binary()),
        "tags": [["a", "b"], None],
        "size": [{"w": 1, "h": None}, {"w": 2, "h": 3}],
    }), p)
    df = read_all(p, carry=["url", "tags", "size"])
    assert df["url"].to_list() == ["http://x/\ufffd", None]
    assert df["tags"].to_list() == ['["a","b"]', None]
    assert df["size"].to_list() == ['{"w":1,"h":null}', '{"w":2,"h":3}']


def test_binary_id_column_with_invalid_utf8_is_decoded_like_a_caption(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"caption": ["one", "two"], "key": pa.array([b"k\xff", b"k2"], pa.binary())}), p)
    assert read_all(p, id_column="key")["id"].to_list() == ["k\ufffd", "k2"]


# -- resolving inputs ------------------------------------------------------------------------


def test_folder_glob_and_duplicates_resolve_to_sorted_unique_files(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    for name in ("b.parquet", "a.jsonl", "sub/c.csv", ".hidden.parquet", "notes.txt"):
        (d / name).write_text("x")
    got = [f.path for f in inputs.resolve_inputs([str(d)])]
    assert got == [str(d / "a.jsonl"), str(d / "b.parquet"), str(d / "sub" / "c.csv")]
    got = [f.path for f in inputs.resolve_inputs([str(d / "*.parquet"), str(d / "b.parquet"), str(d) + "/./b.parquet",
                                                os.path.relpath(d / "b.parquet")])]
    assert got == [str(d / "b.parquet")]
    assert [f.format for f in inputs.resolve_inputs([str(d)])] == ["jsonl", "parquet", "csv"]


def test_a_glob_reads_the_input_files_it_matches_like_a_folder(tmp_path):
    for name in ("b.parquet", "a.jsonl", "README.md", "notes.txt"):
        (tmp_path / name).write_text("x")
    got = [f.path for f in inputs.resolve_inputs([str(tmp_path / "*")])]
    assert got == [str(tmp_path / "a.jsonl"), str(tmp_path / "b.parquet")]
    with pytest.raises(CurateError, match=r"matches no input files .*README.md"):
        inputs.resolve_inputs([str(tmp_path / "*.md")])
    with pytest.raises(CurateError, match="unsupported input type '.txt'"):
        inputs.resolve_inputs([str(tmp_path / "notes.txt")])  # named on its own: an error


def test_no_inputs():
    with pytest.raises(CurateError, match="no inputs"):
        inputs.resolve_inputs([])


def test_fingerprint_changes_with_content(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text('{"caption": "a"}\n')
    f1 = hashing.file_fingerprint(p)
    p.write_text('{"caption": "b"}\n')
    assert hashing.file_fingerprint(p) != f1
    assert f1 == hashlib.blake2b(b'{"caption": "a"}\n', digest_size=16).hexdigest()


def test_input_fingerprint_is_xxh3_128_and_old_blake2b_records_still_match(tmp_path):
    import xxhash

    p = tmp_path / "a.tar"
    body = bytes(range(256)) * 40_000  # over two read blocks
    p.write_bytes(body)
    new = hashing.input_fingerprint(p)
    assert new == xxhash.xxh3_128(body).hexdigest() == hashing.input_fingerprints([str(p)])[0]
    old = {"source": "a.tar", "blake2b": hashlib.blake2b(body, digest_size=16).hexdigest()}
    assert hashing.fingerprint_matches(p, {hashing.FINGERPRINT: new})
    assert hashing.fingerprint_matches(p, old)  # a run recorded with blake2b stays verifiable
    assert not hashing.fingerprint_matches(p, {"source": "a.tar"})
    p.write_bytes(body[:-1] + b"x")
    assert not hashing.fingerprint_matches(p, {hashing.FINGERPRINT: new})
    assert not hashing.fingerprint_matches(p, old)


# -- ids -------------------------------------------------------------------------------------


def test_derived_ids_are_stable_unique_and_batch_independent():
    whole = hashing.derived_ids("data/a.parquet", 0, 10_000)
    pieces = np.concatenate([hashing.derived_ids("data/a.parquet", s, 1000) for s in range(0, 10_000, 1000)])
    assert (whole == pieces).all()
    assert len(np.unique(whole)) == 10_000
    other = hashing.derived_ids("data/b.parquet", 0, 10_000)
    assert not np.isin(whole, other).any()
    # a fixed value: the id of row 0 must not change between releases
    assert int(hashing.derived_ids("data/a.parquet", 0, 1)[0]) == int(
        hashing.splitmix64(np.array([hashing.key64("data/a.parquet")], dtype=np.uint64))[0]
    )


def test_splitmix64_reference_value():
    # SplitMix64 finaliser of 0 (first output of the generator seeded with 0)
    assert int(hashing.splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF


def test_text_hash64_is_the_lower_half_of_md5():
    s = pl.Series("id", ["abc", "x", "0012"])
    got = hashing.text_hash64(s).to_list()
    want = [int.from_bytes(hashlib.md5(v.encode()).digest()[8:], "little") for v in s]
    assert got == want
    assert hashing.text_hash64(s).name == "id"


def test_inputs_are_read_in_bounded_batches(tmp_path):
    p = tmp_path / "a.jsonl"
    p.write_text("".join(json.dumps({"caption": f"c{i}"}) + "\n" for i in range(5000)))
    [inp] = inputs.resolve_inputs([str(p)])
    inputs.inspect_input(inp)
    sizes = [b.height for b in readers.read_batches(inp, "caption", None, [], 1000)]
    assert sizes == [1000] * 5
    assert os.path.getsize(p) > 0


@pytest.mark.parametrize("blank", [False, True])
def test_jsonl_invalid_utf8_becomes_replacement_characters_with_or_without_blank_lines(tmp_path, blank):
    p = tmp_path / "a.jsonl"
    gap = b"\n" if blank else b""
    p.write_bytes(b'{"caption": "caf\xe9 au lait"}\n' + gap + b'{"caption": "two \xff\xfe dogs"}\n{"caption": "ok"}\n')
    expect = ["caf\ufffd au lait", *([None] if blank else []), "two \ufffd\ufffd dogs", "ok"]
    assert read_all(p)["caption"].to_list() == expect


@pytest.mark.parametrize("chunk", [5, 17, 64])
def test_compressed_csv_is_cut_only_at_record_ends(tmp_path, monkeypatch, chunk):
    """Blocks of a few bytes end inside quoted fields, inside doubled quotes and between
    records: every record is read whole, once, in order."""
    import gzip

    from curate.ingest import compressed

    monkeypatch.setattr(compressed, "CHUNK_BYTES", chunk)
    caps = ["plain", "with, comma", "over\ntwo lines", 'say ""hi""\nthen', "\n\nleading newlines", "last"]
    text = "caption,n\n" + "".join(f'"{c}",{i}\n' for i, c in enumerate(caps))
    p = tmp_path / "a.csv.gz"
    p.write_bytes(gzip.compress(text.encode()))
    df = read_all(p, carry=["n"])
    assert df["caption"].to_list() == [c.replace('""', '"') for c in caps]
    assert df["n"].to_list() == [str(i) for i in range(len(caps))]
