"""`curate score` and `curate decide` runs: the tables and run.json they write, provenance
from every input format, resuming, and re-deciding without re-scoring."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from helpers import invoke, ok

import curate
from curate.hashing import input_fingerprint, text_hash64
from curate.scoring.chain import EMPTY, load_chain
from curate.scoring.decision import decide

CAPTIONS = [
    "A brown dog runs across a green field with a red ball in its mouth.",
    "Two children in yellow raincoats jump into a puddle on a cobbled street.",
    "A woman in a blue dress sits on a wooden bench reading a newspaper.",
    "nice photo",
    "IMG_4821.jpg",
    "shoes, cheap shoes, shoes sale, buy shoes, shoes online, best shoes, shoes",
    "",
    "   ",
    "Ein alter Mann mit Hut füttert Tauben auf einem sonnigen Platz.",
    "A red double-decker bus waits at a stop beside a stone church.",
    "Stock Photo - happy business team in a modern office",
    "a cat a cat a cat a cat a cat a cat a cat a cat",
    "A chef in a white apron slices vegetables on a steel counter.",
    "Three horses graze in a fenced meadow below snowy mountains.",
]


def scores(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "scores" / "part-*.parquet").sort("source", "row")


def run_json(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


@pytest.fixture
def three_formats(tmp_path) -> dict[str, Path]:
    """The same kind of captions as Parquet, JSONL (with blank lines) and CSV (with quoted
    newlines), each with a `url` column that tells which source row it is."""
    d = tmp_path / "in"
    d.mkdir()
    n = len(CAPTIONS)
    pq_path = d / "a.parquet"
    pl.DataFrame({"caption": CAPTIONS, "url": [f"pq/{i}" for i in range(n)]}).write_parquet(pq_path)
    jl_path = d / "b.jsonl"
    lines = []
    for i, c in enumerate(CAPTIONS):
        lines.append(json.dumps({"caption": c, "url": f"jl/{len(lines)}"}))
        if i % 4 == 1:
            lines.append("")  # a blank line is a row too (row == line index)
    jl_path.write_text("\n".join(lines) + "\n")
    csv_path = d / "c.csv"
    rows = ["caption,url"]
    for i, c in enumerate(CAPTIONS):
        c = c.replace(" on a ", " on a\n") if i % 3 == 0 else c  # quoted newlines
        rows.append('"' + c.replace('"', '""') + f'",csv/{i}')
    csv_path.write_text("\n".join(rows) + "\n")
    return {"parquet": pq_path, "jsonl": jl_path, "csv": csv_path}


# -- what a score run writes -----------------------------------------------------------------


def test_score_writes_the_documented_columns(three_formats, tmp_path):
    out = tmp_path / "run"
    ok("score", three_formats["parquet"], "--out", out)
    df = scores(out)
    chain = load_chain("default")
    schema = df.schema
    expect = {"sample_id": pl.UInt64, "source": pl.String, "row": pl.Int64, "caption": pl.String,
              "lang": pl.String, "keep": pl.Boolean, "reason": pl.String, "url": pl.String}
    for col, dtype in expect.items():
        assert schema.get(col) == dtype, col
    for step in chain.steps:
        assert schema.get(f"score__{step.id}") == pl.Float64, step.id
    assert df.height == len(CAPTIONS)
    # keep and reason agree; reasons are filter ids in the chain (or empty)
    assert (df["keep"] == df["reason"].is_null()).all()
    assert set(df["reason"].drop_nulls()) <= {EMPTY} | {s.id for s in chain.steps}
    # the stored decision is the chain's rule applied to the stored scores
    again = decide(df.drop("keep", "reason"), chain)
    assert again["reason"].to_list() == df["reason"].to_list()
    # the obviously bad ones are dropped, the descriptive ones kept
    by_caption = dict(zip(df["caption"], df["keep"]))
    assert by_caption[CAPTIONS[0]] and by_caption[CAPTIONS[2]] and by_caption[CAPTIONS[12]]
    for bad in ("nice photo", "IMG_4821.jpg", "", "   ", CAPTIONS[5], CAPTIONS[11]):
        assert not by_caption[bad], bad
    # a stock-photo affix is cleaned off a good description, which is then kept
    stock = df.filter(pl.col("caption") == CAPTIONS[10])
    assert stock["keep"][0] and stock["caption_clean"][0] == "Happy business team in a modern office"
    assert (out / "chain.toml").is_file()
    assert load_chain(str(out / "chain.toml")).to_dict() == chain.to_dict()


def test_run_json_records_inputs_chain_versions_models_and_counts(three_formats, tmp_path):
    out = tmp_path / "run"
    inputs = [three_formats["parquet"], three_formats["jsonl"]]
    ok("score", *inputs, "--out", out)
    info = run_json(out)
    df = scores(out)
    chain = load_chain("default")
    assert info["curate_version"] == curate.__version__
    assert [f["source"] for f in info["inputs"]] == [str(p) for p in inputs]
    for f, p in zip(info["inputs"], inputs):
        assert f["xxh3_128"] == input_fingerprint(p) and "blake2b" not in f
        assert f["bytes"] == p.stat().st_size
        assert f["rows"] == df.filter(pl.col("source") == str(p)).height
    assert info["chain"] == chain.to_dict()
    assert info["filters"] == {s.id: f"{s.filter.name}@{s.filter.version}" for s in chain.steps}
    assert sorted(info["model_files"]) == ["judgement/judgement.tsv", "lid.176.ftz", "wordfreq-small-lists"]
    assert all(len(digest) == 64 for digest in info["model_files"].values())
    assert set(info["timings"]) >= {"total_s", "score_s", "rows_per_s"}
    assert info["rows"] == df.height
    assert info["kept"] == df["keep"].sum()
    counts = df.filter(~pl.col("keep")).group_by("reason").len()
    assert info["dropped"] == dict(zip(counts["reason"], counts["len"])) or sorted(info["dropped"].items()) == sorted(
        zip(counts["reason"], counts["len"]))
    assert sum(info["dropped"].values()) + info["kept"] == info["rows"]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_row_and_source_point_back_to_the_input_row(three_formats, tmp_path, fmt):
    path = three_formats[fmt]
    out = tmp_path / "run"
    ok("score", path, "--out", out)
    df = scores(out)
    assert set(df["source"]) == {str(path)}
    assert df["row"].to_list() == list(range(df.height))
    if fmt == "parquet":
        src = pl.read_parquet(path)
        assert df["caption"].to_list() == src["caption"].to_list()
    elif fmt == "jsonl":
        lines = path.read_text().split("\n")[:-1]
        assert df.height == len(lines)
        for row, cap in zip(df["row"], df["caption"]):
            want = json.loads(lines[row])["caption"] if lines[row] else None
            assert cap == want
    else:
        src = pl.read_csv(path)
        assert df["caption"].to_list() == src["caption"].to_list()
    # the url column names the row it came from
    has = df.filter(pl.col("url").is_not_null())
    assert (has["url"].str.split("/").list.last().cast(pl.Int64) == has["row"]).all()


def test_sample_ids_are_stable_across_runs_and_unique(three_formats, tmp_path):
    ins = list(three_formats.values())
    ok("score", *ins, "--out", tmp_path / "r1")
    ok("score", *ins, "--out", tmp_path / "r2", "--batch-rows", "1000")
    a, b = scores(tmp_path / "r1"), scores(tmp_path / "r2")
    assert a["sample_id"].to_list() == b["sample_id"].to_list()
    assert a["sample_id"].n_unique() == a.height
    assert a["sample_id"].null_count() == 0


def test_id_column_gives_the_ids(tmp_path):
    inp = tmp_path / "in.parquet"
    ids = [f"img-{i:03d}" for i in range(len(CAPTIONS))]
    pl.DataFrame({"caption": CAPTIONS, "key_col": ids}).write_parquet(inp)
    ok("score", inp, "--out", tmp_path / "run", "--id-column", "key_col")
    df = scores(tmp_path / "run")
    assert df["id"].to_list() == ids
    assert df["sample_id"].to_list() == text_hash64(pl.Series(ids)).to_list()
    # ids follow the rows, not the positions: shuffled input, same id per caption
    shuffled = tmp_path / "shuffled.parquet"
    pl.read_parquet(inp).reverse().write_parquet(shuffled)
    ok("score", shuffled, "--out", tmp_path / "run2", "--id-column", "key_col")
    a = df.select("id", "sample_id").sort("id")
    b = scores(tmp_path / "run2").select("id", "sample_id").sort("id")
    assert a.equals(b)


def test_integer_id_column(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": CAPTIONS[:3], "n": [10, 20, 30]}).write_parquet(inp)
    ok("score", inp, "--out", tmp_path / "run", "--id-column", "n")
    df = scores(tmp_path / "run")
    assert df["sample_id"].to_list() == text_hash64(pl.Series(["10", "20", "30"])).to_list()


def test_folder_and_glob_read_the_same_rows_as_the_files(three_formats, tmp_path):
    files = sorted(three_formats.values())
    ok("score", *files, "--out", tmp_path / "files")
    ok("score", files[0].parent, "--out", tmp_path / "folder")
    ok("score", str(files[0].parent / "*.*"), "--out", tmp_path / "glob")
    a = scores(tmp_path / "files")
    assert a.equals(scores(tmp_path / "folder"))
    assert a.equals(scores(tmp_path / "glob"))
    assert set(a["source"]) == {str(p) for p in files}


def test_carry_and_caption_column(tmp_path):
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"text": CAPTIONS[:3], "kind": ["a", "b", "c"], "image_id": ["i0", "i1", "i2"]}).write_parquet(inp)
    ok("score", inp, "--out", tmp_path / "run", "--caption-column", "text", "--carry", "kind")
    df = scores(tmp_path / "run")
    assert df["caption"].to_list() == CAPTIONS[:3]
    assert df["kind"].to_list() == ["a", "b", "c"] and df["image_id"].to_list() == ["i0", "i1", "i2"]
    assert "text" not in df.columns


# -- resuming --------------------------------------------------------------------------------


#: Resuming does not depend on what the filters compute: a cheap chain keeps these fast.
LIGHT = """
[[filter]]
name = "length"

[[filter]]
name = "length"
id = "chars"
params = { unit = "chars" }

[[filter]]
name = "junk"
"""
N_MANY = 3500


@pytest.fixture
def many(tmp_path) -> Path:
    """3,500 rows: four parts at --batch-rows 1000."""
    inp = tmp_path / "many.parquet"
    pl.DataFrame({"caption": [CAPTIONS[i % len(CAPTIONS)] + f" #{i}" for i in range(N_MANY)]}).write_parquet(inp)
    return inp


@pytest.fixture
def light(tmp_path) -> Path:
    p = tmp_path / "light.toml"
    p.write_text(LIGHT)
    return p


def part_times(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "scores").glob("part-*.parquet"))}


def test_resume_rewrites_only_the_missing_part(many, light, tmp_path):
    out = tmp_path / "run"
    ok("score", many, "--out", out, "--batch-rows", "1000", "--chain", light)
    before = scores(out)
    times = part_times(out)
    assert len(times) == 4
    (out / "scores" / "part-00000-00002.parquet").unlink()
    (out / "run.json").unlink()
    ok("score", many, "--out", out, "--batch-rows", "1000", "--chain", light)
    after = part_times(out)
    assert set(after) == set(times)
    changed = {k for k in times if after[k] != times[k]}
    assert changed == {"part-00000-00002.parquet"}
    assert scores(out).equals(before)
    assert run_json(out)["rows"] == N_MANY


def test_an_interrupted_run_completes_on_rerun(many, light, tmp_path, interrupt_scoring):
    out = tmp_path / "run"
    restore = interrupt_scoring(3)
    res = invoke("score", many, "--out", out, "--batch-rows", "1000", "--chain", light)
    assert res.exit_code == 1 and "interrupted" in res.output
    # nothing appears under the documented names until the run is complete
    assert not (out / "run.json").exists() and not (out / "scores").exists()
    [staged] = list((out / ".v").iterdir())  # the two finished parts wait in a version folder
    assert len(part_times(staged)) == 2
    assert not list(out.rglob(".tmp-*"))
    restore()
    times = part_times(staged)
    ok("score", many, "--out", out, "--batch-rows", "1000", "--chain", light)
    after = part_times(out)
    assert {k: after[k] for k in times} == times  # finished parts not rewritten
    ok("score", many, "--out", tmp_path / "fresh", "--batch-rows", "1000", "--chain", light)
    assert scores(out).equals(scores(tmp_path / "fresh"))


def test_a_folder_holding_another_run_needs_overwrite(many, light, three_formats, tmp_path):
    out = tmp_path / "run"
    ok("score", many, "--out", out, "--batch-rows", "1000", "--chain", light)
    res = invoke("score", three_formats["parquet"], "--out", out)
    assert res.exit_code == 1
    assert res.output.strip().startswith("Error:") and "--overwrite" in res.output
    assert len(part_times(out)) == 4 and run_json(out)["rows"] == N_MANY  # untouched
    # another chain (other params) is another run too
    chain = tmp_path / "c.toml"
    chain.write_text('[[filter]]\nname = "length"\nparams = { unit = "chars" }\n')
    assert invoke("score", many, "--out", out, "--batch-rows", "1000", "--chain", chain).exit_code == 1
    ok("score", three_formats["parquet"], "--out", out, "--overwrite")
    assert len(part_times(out)) == 1
    assert run_json(out)["rows"] == len(CAPTIONS)
    assert set(scores(out)["source"]) == {str(three_formats["parquet"])}


def test_rerunning_a_finished_run_rewrites_no_part(many, light, tmp_path):
    out = tmp_path / "run"
    ok("score", many, "--out", out, "--batch-rows", "1000", "--chain", light)
    times = part_times(out)
    ok("score", many, "--out", out, "--batch-rows", "1000", "--chain", light)
    assert part_times(out) == times
    assert run_json(out)["rows"] == N_MANY


def test_a_run_inside_its_input_folder_does_not_read_its_own_parts(many, light, tmp_path):
    out = many.parent / "run"  # --out inside the folder that is the input
    ok("score", many.parent, "--out", out, "--batch-rows", "1000", "--chain", light)
    times = part_times(out)
    ok("score", many.parent, "--out", out, "--batch-rows", "1000", "--chain", light)
    assert part_times(out) == times
    assert [f["source"] for f in run_json(out)["inputs"]] == [str(many)]
    res = invoke("score", out, "--out", out, "--chain", light)
    assert res.exit_code == 1 and "every input is a part of the run" in res.output
    ok("score", many, "--out", many.parent, "--chain", light)  # --out is the input's folder
    assert run_json(many.parent)["rows"] == N_MANY


def test_resuming_with_other_thresholds_decides_every_part_with_them(many, light, tmp_path):
    out = tmp_path / "run"
    ok("score", many, "--out", out, "--batch-rows", "1000", "--chain", light)
    (out / "scores" / "part-00000-00001.parquet").unlink()
    (out / "run.json").unlink()
    chain = load_chain(str(light))
    [length] = [s for s in chain.steps if s.id == "length"]
    length.max = 12.0  # same scores, another threshold: drops the longer captions
    strict = tmp_path / "strict.toml"
    strict.write_text(chain.to_toml())
    ok("score", many, "--out", out, "--batch-rows", "1000", "--chain", strict)
    ok("score", many, "--out", tmp_path / "fresh", "--batch-rows", "1000", "--chain", strict)
    assert scores(out).equals(scores(tmp_path / "fresh"))


# -- decide ----------------------------------------------------------------------------------


def test_decide_equals_scoring_with_the_other_chain(three_formats, tmp_path):
    ins = list(three_formats.values())
    out = tmp_path / "run"
    ok("score", *ins, "--out", out)
    first = scores(out)
    ok("decide", out, "--chain", "english-strict")
    decided = scores(out)
    ok("score", *ins, "--out", tmp_path / "direct", "--chain", "english-strict")
    direct = scores(tmp_path / "direct")
    cols = sorted(direct.columns)
    assert sorted(decided.columns) == cols
    assert decided.select(cols).equals(direct.select(cols))
    # scores untouched; only decisions changed
    score_cols = [c for c in cols if c.startswith("score__")]
    assert decided.select(score_cols).equals(first.select(score_cols))
    assert decided["keep"].sum() <= first["keep"].sum()

    info = run_json(out)
    assert [d["chain"] for d in info["decisions"]] == ["default", "english-strict"]
    assert info["decisions"][-1]["digest"] == load_chain("english-strict").digest()
    assert info["kept"] == decided["keep"].sum()
    assert info["decision_chain"] == load_chain("english-strict").to_dict()
    assert load_chain(str(out / "chain.toml")).digest() == load_chain("english-strict").digest()

    # deciding with the first chain again gives back the first decisions
    ok("decide", out, "--chain", "default")
    assert scores(out).select(first.columns).equals(first)


def test_an_interrupted_decide_leaves_the_run_as_it_was(many, light, tmp_path, monkeypatch):
    import curate.scoring.decide

    out = tmp_path / "run"
    ok("score", many, "--out", out, "--batch-rows", "1000", "--chain", light)
    before, info, times = scores(out), run_json(out), part_times(out)
    real, calls = curate.scoring.decide.decide, []

    def interrupted(frame, chain):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(frame, chain)

    monkeypatch.setattr(curate.scoring.decide, "decide", interrupted)
    strict = tmp_path / "strict.toml"
    strict.write_text(LIGHT.replace('name = "junk"', 'name = "junk"\nmax = 0.0').replace(
        'name = "length"\n', 'name = "length"\nmin = 12\n', 1))
    res = invoke("decide", out, "--chain", strict)
    assert res.exit_code == 1 and "interrupted" in res.output
    assert part_times(out) == times and scores(out).equals(before) and run_json(out) == info
    assert sorted(p.name for p in (out / "scores").iterdir()) == sorted(times)
    monkeypatch.setattr(curate.scoring.decide, "decide", real)
    ok("decide", out, "--chain", strict)
    assert run_json(out)["kept"] == scores(out)["keep"].sum() < before["keep"].sum()


def test_decide_can_reorder_and_drop_filters(three_formats, tmp_path):
    out = tmp_path / "run"
    ok("score", three_formats["parquet"], "--out", out)
    chain = tmp_path / "only-junk.toml"
    chain.write_text('[[filter]]\nname = "junk"\nmax = 0.0\n\n[[filter]]\nname = "length"\nmin = 1\n')
    ok("decide", out, "--chain", chain)
    df = scores(out)
    assert set(df["reason"].drop_nulls()) <= {"junk", "length", EMPTY}
    assert df.filter(pl.col("caption") == "IMG_4821.jpg")["reason"].to_list() == ["junk"]
    assert df.filter(pl.col("caption") == "nice photo")["keep"].to_list() == [True]
    # every scored column is still there
    assert {f"score__{s.id}" for s in load_chain("default").steps} <= set(df.columns)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "csv"])
def test_row_is_exact_across_parts(tmp_path, light, fmt):
    """Several parts per file (and several row groups): `row` still counts from the file's start."""
    n = 2600
    caps = [f"caption {i}\nsecond line" if i % 7 == 0 else f"caption {i}" for i in range(n)]
    path = tmp_path / f"big.{fmt}"
    if fmt == "parquet":
        pl.DataFrame({"caption": caps}).write_parquet(path, row_group_size=300)
    elif fmt == "jsonl":
        lines = [json.dumps({"caption": c}) for c in caps]
        for i in range(0, n, 500):
            lines[i] = ""  # blank lines are rows (row == line index)
        path.write_text("\n".join(lines) + "\n")
        caps = [None if not ln else c for ln, c in zip(lines, caps)]
    else:
        pl.DataFrame({"caption": caps}).write_csv(path)
    ok("score", path, "--out", tmp_path / "run", "--batch-rows", "1000", "--chain", light)
    assert len(list((tmp_path / "run" / "scores").glob("part-*.parquet"))) == 3
    df = scores(tmp_path / "run")
    assert df["row"].to_list() == list(range(n))
    assert df["caption"].to_list() == caps
    assert df["sample_id"].n_unique() == n


def test_small_text_inputs_are_scored_without_a_worker_pool(three_formats, tmp_path):
    """Starting worker processes costs seconds; a small JSONL or CSV does not need them."""
    ok("score", three_formats["jsonl"], three_formats["csv"], "--out", tmp_path / "run")
    assert run_json(tmp_path / "run")["workers"] == 1


def test_decide_on_a_run_scored_with_another_lid_model(tmp_path):
    """`--lid-model` is chosen when scoring; a decision chain that names none uses the run's."""
    from curate.scoring.filters.language import bundled_lid_model

    model = tmp_path / "my-lid.ftz"
    model.write_bytes(bundled_lid_model().read_bytes())
    inp = tmp_path / "in.parquet"
    pl.DataFrame({"caption": CAPTIONS}).write_parquet(inp)
    ok("score", inp, "--out", tmp_path / "run", "--lid-model", model)
    info = run_json(tmp_path / "run")
    assert "my-lid.ftz" in info["model_files"]
    ok("decide", tmp_path / "run", "--chain", "english-strict")
    [lang] = [f for f in run_json(tmp_path / "run")["chain"]["filter"] if f["name"] == "language"]
    assert lang["params"]["model"] == str(model)
