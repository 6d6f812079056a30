"""The extension points are registries: every input format, export shard format and trainer
that the code registers is reachable from the CLI and documented for users.

Each input format is written from real captions (``../shared/data``) under each of its
suffixes, and one ``curate score`` of the folder reads them all; the run is mixed and
exported through every ``--format`` writer.
"""
from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path

import polars as pl
import pyarrow.feather as feather
import pytest
from helpers import invoke, ok, write_recipe

from curate.export.writers import SHARD_FORMATS, TRAINERS
from curate.ingest.formats import FORMATS, SUFFIXES

DOCS = Path(__file__).resolve().parents[2] / "docs"
ROWS = 30


def _tar(df: pl.DataFrame, path: Path) -> None:
    with tarfile.open(path, "w") as tf:
        for i, caption in enumerate(df["caption"].to_list()):
            data = caption.encode()
            info = tarfile.TarInfo(f"{i:09d}.txt")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


#: how this test writes a sample of each registered input format
WRITE = {
    "parquet": lambda df, p: df.write_parquet(p),
    "jsonl": lambda df, p: df.write_ndjson(p),
    "csv": lambda df, p: df.write_csv(p),
    "tsv": lambda df, p: df.write_csv(p, separator="\t", quote_style="never"),
    "webdataset": _tar,
    "arrow": lambda df, p: feather.write_feather(df.to_arrow(), str(p)),
}


@pytest.fixture(scope="module")
def scored(tmp_path_factory, read_data) -> tuple[Path, pl.DataFrame, dict]:
    """One run over a folder holding a sample of every format under every suffix."""
    captions = read_data("c_laion", ["caption"]).filter(
        pl.col("caption").str.contains(r"^[^\t\n\r\"]+$")).head(ROWS * len(SUFFIXES))
    d = tmp_path_factory.mktemp("registries")
    folder = d / "inputs"
    folder.mkdir()
    for i, (suffix, name) in enumerate(sorted(SUFFIXES.items())):
        WRITE[name](captions.slice(i * ROWS, ROWS), folder / f"sample{suffix}")
    chain = d / "length.toml"
    chain.write_text('[[filter]]\nname = "length"\nmin = 3\n')
    ok("score", folder, "--chain", chain, "--out", d / "run")
    run = json.loads((d / "run" / "run.json").read_text())
    return d, captions, run


def test_every_input_format_has_a_sample_here():
    assert set(WRITE) == set(FORMATS), "write a sample of the new format in WRITE"


def test_every_input_format_and_suffix_is_read_by_curate_score(scored):
    _, captions, run = scored
    by_suffix = {Path(i["source"]).suffix: i for i in run["inputs"]}
    assert set(by_suffix) == set(SUFFIXES)
    assert {s: i["format"] for s, i in by_suffix.items()} == SUFFIXES
    assert all(i["rows"] == ROWS for i in run["inputs"])
    for name, fmt in FORMATS.items():  # the run's summary line names every format it read
        assert f" {fmt.noun or name + ' file'}" in run["read"], (name, run["read"])
    scores = pl.read_parquet(scored[0] / "run" / "scores" / "*.parquet")
    assert sorted(scores["caption"].to_list()) == sorted(captions["caption"].to_list())


def test_every_input_suffix_is_documented():
    text = (DOCS / "inputs-and-outputs.md").read_text()
    missing = [s for s in SUFFIXES if f"`{s}`" not in text]
    assert not missing, f"docs/inputs-and-outputs.md does not name {missing}"


def test_cli_choices_are_the_registries():
    from curate.cli import cli

    params = {p.name: p for p in cli.commands["export"].params}
    assert list(params["fmt"].type.choices) == list(SHARD_FORMATS)
    assert list(params["trainer"].type.choices) == list(TRAINERS)
    help_text = invoke("export", "--help").output
    assert all(name in help_text for name in [*SHARD_FORMATS, *TRAINERS])


def test_every_shard_format_is_documented():
    text = (DOCS / "inputs-and-outputs.md").read_text()
    listed = re.search(r"--format ([a-z|]+)", text)
    assert listed and listed.group(1).split("|") == list(SHARD_FORMATS)
    for w in SHARD_FORMATS.values():
        assert f"{w.prefix}-00000{w.ext}" in text


def test_every_trainer_is_documented():
    text = (DOCS / "trainers.md").read_text()
    for name, t in TRAINERS.items():
        assert f"| `{name}`" in text and f"`{t.mix_file}`" in text, name
        assert f"--for {name}" in text


@pytest.mark.parametrize("fmt", list(SHARD_FORMATS))
def test_every_shard_format_exports_from_the_cli(scored, fmt, tmp_path):
    d, _, _ = scored
    mix = d / "mix"
    if not (mix / "manifest.parquet").exists():
        recipe = write_recipe(d / "recipe.toml", {"web": d / "run"}, {"web": {"share": 1.0}}, size=100, seed=1)
        ok("mix", recipe, "--out", mix)
    ok("export", mix, "--format", fmt, "--out", tmp_path / "out", "--shard-rows", 40)
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    w = SHARD_FORMATS[fmt]
    assert index["format"] == fmt and index["rows"] == 100
    assert [s["file"] for s in index["shards"]] == [f"{w.prefix}-{i:05d}{w.ext}" for i in range(3)]
    assert all((tmp_path / "out" / s["file"]).stat().st_size > 0 for s in index["shards"])
