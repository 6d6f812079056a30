"""Bad input: each case ends in one clear line (`Error: ...`, exit 1, no traceback) or in a
documented per-row outcome, and a failed run never leaves output that looks complete."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import invoke


def fails(*args: str) -> str:
    """Run the CLI, assert it failed with one `Error:` line, and return that line."""
    res = invoke(*args)
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, SystemExit), f"uncaught {res.exception!r}"
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    return lines[0]


def scores(run: Path) -> pl.DataFrame:
    res_files = sorted((run / "scores").glob("part-*.parquet"))
    assert res_files, f"no parts in {run}"
    return pl.concat([pl.read_parquet(f) for f in res_files]).sort("source", "row")


def score_ok(inp: Path, out: Path, *extra: str) -> pl.DataFrame:
    res = invoke("score", inp, "--out", out, *extra)
    assert res.exit_code == 0, res.output
    assert (out / "run.json").is_file()
    return scores(out)


def assert_nothing_complete(out: Path) -> None:
    """No run.json and no part under a final name."""
    assert not (out / "run.json").exists()
    assert not list(out.glob("scores/part-*.parquet"))


def write_jsonl_bytes(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(ln + b"\n" for ln in lines))
    return path


GOOD = "A brown dog runs across a green field with a red ball in its mouth."


# -- columns -----------------------------------------------------------------------------


def test_missing_caption_column_lists_the_columns(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"text": [GOOD], "url": ["u"]}).write_parquet(inp)
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert "'caption'" in msg and "text, url" in msg and "--caption-column" in msg
    assert not (tmp_path / "run").exists()


def test_missing_id_column_lists_the_columns(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [GOOD]}).write_parquet(inp)
    msg = fails("score", inp, "--out", tmp_path / "run", "--id-column", "key")
    assert "'key'" in msg and "caption" in msg


def test_null_ids_are_an_error(tmp_path):
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(json.dumps(r) for r in [{"caption": GOOD, "id": "a"}, {"caption": GOOD, "id": None}]) + "\n")
    msg = fails("score", inp, "--out", tmp_path / "run", "--id-column", "id")
    assert "id column 'id'" in msg and "row 1" in msg
    assert_nothing_complete(tmp_path / "run")


def test_caption_column_of_lists_is_an_error(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [["a", "b"]]}).write_parquet(inp)
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert str(inp) in msg and "not text" in msg


@pytest.mark.parametrize("column, extra", [
    ("source", []), ("row", []), ("sample_id", []), ("keep", []), ("lang", []), ("junk_kind", []),
    ("score__length", []), ("caption", ["--caption-column", "text"]),
])
def test_carrying_a_column_named_like_an_output_column_is_an_error(tmp_path, column, extra):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption" if column != "caption" else "text": [GOOD], column: ["x"]}).write_parquet(inp)
    msg = fails("score", inp, "--out", tmp_path / "run", "--carry", column, *extra)
    assert f"cannot carry column {column!r}" in msg and "sample_id, source, row" in msg
    assert not (tmp_path / "run").exists()


# -- row-level problems: a documented outcome, every row kept in the table -------------------


def test_null_empty_and_whitespace_captions_are_reason_empty(tmp_path):
    inp = tmp_path / "in.parquet"
    caps = [None, "", "   ", "\t\n", "\u200b", "\x00", GOOD]
    pl.DataFrame({"caption": caps}, schema={"caption": pl.String}).write_parquet(inp)
    df = score_ok(inp, tmp_path / "run")
    assert df["row"].to_list() == list(range(len(caps)))
    assert df["reason"].to_list() == ["empty"] * 6 + [None]
    assert df["keep"].to_list() == [False] * 6 + [True]
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["rows"] == 7 and run["kept"] == 1 and run["dropped"] == {"empty": 6}


def test_non_utf8_bytes_in_jsonl_survive_as_replacement_chars(tmp_path):
    inp = write_jsonl_bytes(tmp_path / "in.jsonl", [
        b'{"caption": "A caf\xe9 with red chairs and a striped awning on a street corner"}',
        b'{"caption": "' + GOOD.encode() + b'"}',
    ])
    df = score_ok(inp, tmp_path / "run")
    assert df.height == 2
    assert df["caption"][0] == "A caf\ufffd with red chairs and a striped awning on a street corner"
    assert df["caption"][1] == GOOD


def test_non_utf8_bytes_in_csv_survive_as_replacement_chars(tmp_path):
    inp = tmp_path / "in.csv"
    inp.write_bytes(b'caption,n\n"Two \xff\xfe dogs on a wooden dock beside a blue boat",1\nsecond row caption text here,2\n')
    df = score_ok(inp, tmp_path / "run")
    assert df["caption"].to_list() == [
        "Two \ufffd\ufffd dogs on a wooden dock beside a blue boat", "second row caption text here"
    ]


def test_parquet_binary_caption_with_invalid_utf8(tmp_path):
    inp = tmp_path / "in.parquet"
    tbl = pa.table({"caption": pa.array(
        [b"A caf\xe9 with red chairs on a sunny street corner", GOOD.encode(), None, b"\xc3"],
        pa.binary(),
    )})
    pq.write_table(tbl, inp)
    df = score_ok(inp, tmp_path / "run")
    assert df["caption"].to_list() == [
        "A caf\ufffd with red chairs on a sunny street corner", GOOD, None, "\ufffd"
    ]
    assert df["reason"][2] == "empty"
    assert df["keep"][1]


def test_parquet_binary_caption_valid_utf8(tmp_path):
    inp = tmp_path / "in.parquet"
    pq.write_table(pa.table({"caption": pa.array([GOOD.encode(), "Ein Hund läuft".encode()], pa.binary())}), inp)
    df = score_ok(inp, tmp_path / "run")
    assert df["caption"].to_list() == [GOOD, "Ein Hund läuft"]


def test_one_megabyte_captions_are_scored_and_rejected_by_length(tmp_path):
    inp = tmp_path / "in.parquet"
    caps = ["word " * 200_000, ("x" * 3500 + " ") * 290, GOOD]
    pl.DataFrame({"caption": caps}).write_parquet(inp)
    df = score_ok(inp, tmp_path / "run")
    # no word maximum (long descriptions are good captions): a megabyte is a blob by its characters
    assert df["reason"].to_list() == ["chars", "chars", None]
    assert df["score__length"][0] == 200_000
    assert df["score__length"][1] == 290 and df["score__chars"][1] > 1_000_000
    assert df["caption"][1] == caps[1]  # stored as given


def test_newlines_and_control_characters_inside_captions(tmp_path):
    inp = tmp_path / "in.parquet"
    caps = [
        "A dog\non a\x00 couch\x07 with a red\r\nblanket and two sleeping cats",
        "A dog on a couch with a red blanket and two sleeping cats",
    ]
    pl.DataFrame({"caption": caps}).write_parquet(inp)
    df = score_ok(inp, tmp_path / "run")
    assert df["caption"].to_list() == caps  # the stored caption is untouched
    # filters see normalised text: control characters and line breaks do not change the scores
    for col in ("score__length", "score__repetition", "score__junk", "keep"):
        assert df[col][0] == df[col][1], col


# -- whole-file problems: one line, nothing that looks finished ------------------------------


def test_truncated_parquet(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [GOOD] * 5000}).write_parquet(inp)
    data = inp.read_bytes()
    inp.write_bytes(data[: len(data) // 2])
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert str(inp) in msg and "Parquet" in msg
    assert_nothing_complete(tmp_path / "run")


def test_damaged_parquet_pages(tmp_path):
    """Footer intact, data pages overwritten: the error comes while reading rows."""
    inp = tmp_path / "in.parquet"
    pq.write_table(pa.table({"caption": [f"{GOOD} {i}" for i in range(3000)]}), inp, compression="zstd")
    data = bytearray(inp.read_bytes())
    for i in range(8, len(data) // 2):
        data[i] = 0xAB
    inp.write_bytes(bytes(data))
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert str(inp) in msg
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.parametrize("name, content", [
    ("zero.parquet", None),
    ("zero.jsonl", b""),
    ("blank.jsonl", b"\n\n  \n"),
    ("zero.csv", b""),
    ("header.csv", b"caption\n"),
    ("zero.tsv", b""),
])
def test_empty_input(tmp_path, name, content):
    inp = tmp_path / name
    if content is None:
        inp.write_bytes(b"")
    else:
        inp.write_bytes(content)
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert str(inp) in msg
    assert ("no rows" in msg) or ("0 bytes" in msg)
    assert not (tmp_path / "run").exists()


def test_parquet_with_zero_rows(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": []}, schema={"caption": pl.String}).write_parquet(inp)
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert "no rows" in msg and str(inp) in msg
    assert not (tmp_path / "run").exists()


def test_an_empty_file_beside_real_ones_is_zero_rows(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_bytes(b"")
    pl.DataFrame({"caption": [GOOD]}).write_parquet(tmp_path / "in" / "b.parquet")
    score_ok(tmp_path / "in", tmp_path / "run")
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert [(f["source"].rsplit("/", 1)[1], f["rows"]) for f in run["inputs"]] == [("a.jsonl", 0), ("b.parquet", 1)]


def test_glob_matching_nothing(tmp_path):
    msg = fails("score", str(tmp_path / "nothing-*.parquet"), "--out", tmp_path / "run")
    assert "no files match" in msg and "nothing-*.parquet" in msg
    assert not (tmp_path / "run").exists()


def test_nonexistent_path(tmp_path):
    msg = fails("score", tmp_path / "missing.parquet", "--out", tmp_path / "run")
    assert "does not exist" in msg and "missing.parquet" in msg


def test_folder_without_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("x")
    msg = fails("score", tmp_path / "empty", "--out", tmp_path / "run")
    assert "holds no input files" in msg and ".parquet" in msg


def test_unsupported_extension_lists_the_supported_ones(tmp_path):
    inp = tmp_path / "captions.txt"
    inp.write_text(GOOD + "\n")
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert "'.txt'" in msg and ".parquet" in msg and ".jsonl" in msg and ".csv" in msg


def test_unwritable_output_folder(tmp_path):
    """Under a regular file, mkdir fails even for root (chmod does not stop root)."""
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [GOOD]}).write_parquet(inp)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    msg = fails("score", inp, "--out", blocker / "run")
    assert "cannot write to" in msg and "a-file" in msg


def test_output_folder_whose_scores_is_a_file(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [GOOD]}).write_parquet(inp)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "scores").write_text("in the way")
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert "cannot write to" in msg
    assert not (tmp_path / "run" / "run.json").exists()


@pytest.mark.parametrize("lines, bad_line", [
    ([b'{"caption": "a dog on a red couch"}', b'{"caption": oops}'], 2),
    ([b'{"caption": "a dog on a red couch"}', b"", b"[1, 2]"], 3),
    ([b'{"caption": "a dog on a red couch"', b'{"caption": "x"}'], 1),
])
def test_malformed_json_line_is_named(tmp_path, lines, bad_line):
    inp = write_jsonl_bytes(tmp_path / "in.jsonl", lines)
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert str(inp) in msg and f"line {bad_line} " in msg
    assert_nothing_complete(tmp_path / "run")


def test_malformed_json_beyond_the_first_chunk(tmp_path, monkeypatch):
    """A bad line past the part that inspection reads is found while reading, by line."""
    import curate.ingest.readers

    monkeypatch.setattr(curate.ingest.readers, "JSONL_CHUNK_BYTES", 256)
    lines = [json.dumps({"caption": f"{GOOD} {i}"}).encode() for i in range(20)] + [b"{nope"]
    inp = tmp_path / "in.jsonl"
    # pad so the bad line falls outside the first MiB that inspect_input reads
    pad = [json.dumps({"caption": "x" * 1000}).encode()] * 1100
    write_jsonl_bytes(inp, pad + lines)
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert f"line {len(pad) + 21} " in msg


def test_unknown_chain_lists_the_shipped_ones(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [GOOD]}).write_parquet(inp)
    msg = fails("score", inp, "--chain", "nonesuch", "--out", tmp_path / "run")
    assert "'nonesuch'" in msg and "default" in msg and "english-strict" in msg and "multilingual" in msg
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("body, expect", [
    ('[[filter]]\nname = "lenght"\n', ["unknown filter 'lenght'", "length", "language", "junk"]),
    ('[[filter]]\nname = "length"\nparams = { foo = 1 }\n', ["no parameter 'foo'", "unit"]),
    ('[[filter]]\nname = "length"\nparams = { unit = 3 }\n', ["'unit'", "str"]),
    ('[[filter]]\nname = "length"\nparams = { unit = "lines" }\n', ["'unit'", "words", "chars"]),
    ('[[filter]]\nname = "length"\nmin = "3"\n', ["min must be a number"]),
    ('[[filter]]\nname = "length"\nmin = 5\nmax = 2\n', ["min 5.0 is greater than max 2.0"]),
    ('[[filter]]\nname = "length"\nmax_ = 2\n', ["unknown key 'max_'", "min", "max", "params"]),
    ('name = "x"\n', ["at least one [[filter]]"]),
    ('[[filter\n', ["invalid TOML"]),
])
def test_bad_chain_is_one_line_before_any_data_is_read(tmp_path, body, expect):
    chain = tmp_path / "bad.toml"
    chain.write_text(body)
    # the input does not even exist: the chain is validated first
    msg = fails("score", tmp_path / "missing.parquet", "--chain", chain, "--out", tmp_path / "run")
    for part in expect:
        assert part in msg
    assert "bad.toml" in msg
    assert not (tmp_path / "run").exists()


def test_chain_filter_name_that_is_not_a_string(tmp_path):
    chain = tmp_path / "bad.toml"
    chain.write_text('[[filter]]\nname = ["length"]\n')
    msg = fails("score", tmp_path / "missing.parquet", "--chain", chain, "--out", tmp_path / "run")
    assert "unknown filter ['length']" in msg and "valid filters: length" in msg


def test_missing_lid_model_is_named(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [GOOD]}).write_parquet(inp)
    msg = fails("score", inp, "--lid-model", tmp_path / "lid.bin", "--out", tmp_path / "run")
    assert "language model" in msg and "lid.bin" in msg and "does not exist" in msg
    assert not (tmp_path / "run").exists()


def test_a_failed_run_that_wrote_nothing_leaves_nothing_and_blocks_nothing(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [GOOD]}).write_parquet(inp)
    bad_model = tmp_path / "lid.bin"
    bad_model.write_text("not a fastText model")
    out = tmp_path / "run"
    msg = fails("score", inp, "--lid-model", bad_model, "--out", out)
    assert "cannot load fastText model" in msg
    assert not out.exists()
    # a state file left by an older attempt that wrote no part does not block another run
    out.mkdir()
    (out / "scores").mkdir()
    (out / ".curate-state.json").write_text('{"key": "another-run"}')
    assert score_ok(inp, out)["caption"].to_list() == [GOOD]


# -- decide on what is not a finished run ----------------------------------------------------


def test_decide_on_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "x").mkdir()
    msg = fails("decide", tmp_path / "x")
    assert "not a curate run" in msg


def test_decide_on_an_unfinished_run(tmp_path, interrupt_scoring):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [GOOD] * 2500}).write_parquet(inp)
    interrupt_scoring(2)
    msg = fails("score", inp, "--out", tmp_path / "run", "--batch-rows", "1000")
    assert "interrupted" in msg
    assert not (tmp_path / "run" / "run.json").exists()
    assert len(list((tmp_path / "run").glob(".v/*/scores/part-*.parquet"))) == 1  # kept for a rerun
    msg = fails("decide", tmp_path / "run")
    assert "did not finish" in msg


def run_scored_by_length_alone(tmp_path) -> None:
    """tmp_path/run: one caption scored by a chain of the length filter only."""
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [GOOD]}).write_parquet(inp)
    chain = tmp_path / "short.toml"
    chain.write_text('[[filter]]\nname = "length"\nmin = 3\n')
    score_ok(inp, tmp_path / "run", "--chain", chain)


def test_decide_with_a_filter_that_was_not_scored(tmp_path):
    run_scored_by_length_alone(tmp_path)
    msg = fails("decide", tmp_path / "run", "--chain", "default")
    assert "'chars' was not scored" in msg and "scored filters: length" in msg


def test_decide_with_other_params(tmp_path):
    run_scored_by_length_alone(tmp_path)
    before = scores(tmp_path / "run")
    other = tmp_path / "chars.toml"
    other.write_text('[[filter]]\nname = "length"\nmin = 3\nparams = { unit = "chars" }\n')
    msg = fails("decide", tmp_path / "run", "--chain", other)
    assert "'length' differs" in msg and "re-score" in msg
    assert scores(tmp_path / "run").equals(before)  # nothing rewritten


def test_a_dead_worker_is_one_line(tmp_path, monkeypatch):
    from concurrent.futures.process import BrokenProcessPool

    import curate.scoring.workers

    def dies(frame, chain, part):
        raise BrokenProcessPool("A process in the process pool was terminated abruptly")

    monkeypatch.setattr(curate.scoring.workers, "score_and_write", dies)
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": [GOOD]}).write_parquet(inp)
    msg = fails("score", inp, "--out", tmp_path / "run")
    assert "worker process died" in msg and "rerun" in msg
    assert_nothing_complete(tmp_path / "run")


def test_jsonl_lone_surrogates_become_replacement_characters(tmp_path):
    """A lone surrogate escape is no character: it becomes U+FFFD, flagged as junk kind
    `encoding`; a proper pair stays the character it encodes."""
    inp = tmp_path / "in.jsonl"
    inp.write_bytes(b'{"caption": "a red bus \\udc80 on a wet street"}\n'
                    b'{"caption": "a black dog on a sofa \\ud800"}\n'
                    b'{"caption": "a smiling child \\ud83d\\ude00 in a garden"}\n')
    df = score_ok(inp, tmp_path / "run").sort("row")
    assert df["caption"].to_list() == ["a red bus \ufffd on a wet street", "a black dog on a sofa \ufffd",
                                       "a smiling child \U0001F600 in a garden"]
    assert df["junk_kind"].to_list()[:2] == ["encoding", "encoding"]
    assert "\x00" not in "".join(df["caption"].to_list())
