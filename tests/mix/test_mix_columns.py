"""One name and one type per column in a mixture, and caps that fit every source, on real
web captions: a LAION-style Parquet (``URL``) and img2dataset-style shards (``url``) in one
recipe keep every link; other case clashes are one-line errors; carried numbers stay numbers;
a per-source ``group_by`` (or an expression) caps sources that lack the recipe's column."""
from __future__ import annotations

import io
import json
import tarfile

import polars as pl
import pyarrow.parquet as pq
import pytest

from helpers import ok, fails_in_one_line


def write_shard(path, df: pl.DataFrame) -> None:
    """img2dataset's layout: key.jpg, key.txt, key.json with ``url`` (lower case)."""
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for i, r in enumerate(df.iter_rows(named=True)):
            key = f"{i:09d}"
            meta = {"url": r["URL"], "key": key, "similarity": str(r["similarity"]), "status": "success"}
            for ext, data in (("jpg", b"\xff\xd8" + key.encode() * 40), ("txt", r["caption"].encode()),
                              ("json", json.dumps(meta, indent=4).encode())):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, read_data):
    """A LAION-style Parquet run (URL, similarity as numbers, group_id) and a WebDataset run
    (url; its similarity written as text, as some shards hold it), each of 600 real web captions with their real links."""
    d = tmp_path_factory.mktemp("mixcols")
    web = read_data("c_laion", ["caption", "image_id", "group_id"]).filter(pl.col("image_id").str.starts_with("http"))
    web = web.unique("image_id", keep="first", maintain_order=True).with_row_index("i").with_columns(
        pl.col("image_id").alias("URL"), (pl.col("i").cast(pl.Float64) / 1000).alias("similarity"))
    assert web.height >= 1200
    laion = web.head(600).select("caption", "URL", "similarity", "group_id")
    shards = web.slice(600, 600)
    laion.write_parquet(d / "laion.parquet")
    write_shard(d / "00000.tar", shards)
    ok("score", d / "laion.parquet", "--out", d / "laion", "--carry", "similarity", "--carry", "group_id")
    ok("score", d / "00000.tar", "--out", d / "wds", "--carry", "similarity")
    return d, laion, shards


def recipe(d, name: str, caps: str = "", wds_extra: str = "") -> str:
    text = (f'size = 400\nseed = 1\neligible = "true"\n{caps}\n'
            f'[[source]]\nname = "laion"\nrun = "{d / "laion"}"\nshare = 0.5\n\n'
            f'[[source]]\nname = "wds"\nrun = "{d / "wds"}"\nshare = 0.5\n{wds_extra}\n')
    (d / f"{name}.toml").write_text(text)
    return d / f"{name}.toml"


def test_url_and_URL_are_one_column_and_every_link_is_kept(two_runs):
    d, laion, shards = two_runs
    ok("mix", recipe(d, "links"), "--out", d / "m-links")
    m = pl.read_parquet(d / "m-links" / "manifest.parquet")  # polars reads it: one field per name
    table = pq.read_table(d / "m-links" / "manifest.parquet")  # and pyarrow
    assert table.schema.names.count("url") == 1 and "URL" not in table.schema.names
    assert m["url"].null_count() == 0
    want = {"laion": laion["URL"].to_list(), "wds": shards["URL"].to_list()}  # by the input's row
    assert all(want[r][i] == u for r, i, u in zip(m["run"], m["row"], m["url"]))
    assert set(m["run"]) == {"laion", "wds"}
    assert "url" in json.loads((d / "laion" / "run.json").read_text())["carried_columns"]  # named at score


def test_a_run_scored_with_URL_before_names_were_lower_case_mixes_as_url():
    """Runs written before score lower-cased the link columns still carry ``URL``: the mix
    reads it as the mixture's ``url``, and a second spelling in one run is an error."""
    from types import SimpleNamespace

    from curate.errors import CurateError
    from curate.mix.columns import carried_names

    old = SimpleNamespace(name="old", info={"carried_columns": ["URL", "Width"]}, columns={"URL": "VARCHAR", "Width": "BIGINT"})
    new = SimpleNamespace(name="new", info={"carried_columns": ["url"]}, columns={"url": "VARCHAR"})
    carried_names([old, new])
    assert old.names == {"url": "URL", "width": "Width"} and new.names == {"url": "url"}
    both = SimpleNamespace(name="both", info={"carried_columns": ["URL", "url"]}, columns={"URL": "VARCHAR", "url": "VARCHAR"})
    with pytest.raises(CurateError, match="one column 'url'"):
        carried_names([both])


def test_a_carried_number_stays_a_number_or_the_mix_says_which_run_disagrees(two_runs):
    d, laion, _ = two_runs
    one = d / "laion-only.toml"
    one.write_text(f'size = 100\neligible = "true"\n[[source]]\nname = "laion"\nrun = "{d / "laion"}"\n')
    ok("mix", one, "--out", d / "m-one")
    m = pl.read_parquet(d / "m-one" / "manifest.parquet")
    assert m["similarity"].dtype == pl.Float64
    assert set(m["similarity"].to_list()) <= set(laion["similarity"].to_list())
    res = ok("mix", recipe(d, "types"), "--out", d / "m-types")
    notes = json.loads((d / "m-types" / "manifest.json").read_text())["notes"]
    assert any("'similarity'" in n and "DOUBLE in laion" in n and "VARCHAR in wds" in n for n in notes), notes
    assert "similarity" in res.output


def test_names_that_differ_only_in_case_are_a_one_line_error_naming_both_sources(two_runs, tmp_path):
    d, laion, _ = two_runs
    laion.rename({"group_id": "Group_ID"}).write_parquet(tmp_path / "other.parquet")
    ok("score", tmp_path / "other.parquet", "--out", tmp_path / "other", "--carry", "Group_ID")
    r = tmp_path / "r.toml"
    r.write_text(f'size = 100\neligible = "true"\n[[source]]\nname = "laion"\nrun = "{d / "laion"}"\nshare = 0.5\n'
                 f'[[source]]\nname = "other"\nrun = "{tmp_path / "other"}"\nshare = 0.5\n')
    msg = fails_in_one_line("mix", r, "--out", tmp_path / "m")
    assert "'group_id'" in msg and "'Group_ID'" in msg and "'laion'" in msg and "'other'" in msg


def test_a_source_without_the_group_column_is_named_or_left_uncapped_on_request(two_runs):
    d, _, _ = two_runs
    msg = fails_in_one_line("mix", recipe(d, "g1", '[caps]\ngroup_by = "group_id"\n'), "--out", d / "m-g1")
    assert "source 'wds'" in msg and "'group_id'" in msg and "missing" in msg
    ok("mix", recipe(d, "g2", '[caps]\ngroup_by = "group_id"\nmissing = "null"\n'), "--out", d / "m-g2")


def test_per_source_group_by_and_expressions_cap_every_source(two_runs):
    d, _, _ = two_runs
    caps = '[caps]\ngroup_by = "group_id"\nper_group = 1\n'
    ok("mix", recipe(d, "g3", caps, 'group_by = "regexp_extract(url, \'^https?://([^/]+)\', 1)"'), "--out", d / "m-g3")
    m = pl.read_parquet(d / "m-g3" / "manifest.parquet")
    hosts = m.filter(pl.col("run") == "wds")["url"].str.extract(r"^https?://([^/]+)", 1)
    assert hosts.n_unique() == hosts.len()  # one row per host: the source's own group
    assert m.filter(pl.col("run") == "laion")["group_id"].n_unique() == (m["run"] == "laion").sum()
    sql = (d / "m-g3" / "query.sql").read_text()
    assert "cap_group" in sql and "regexp_extract" in sql
    expr = '[caps]\ngroup_by = "coalesce(group_id, url)"\nmissing = "null"\n'
    msg = fails_in_one_line("mix", recipe(d, "g4", expr), "--out", d / "m-g4")
    assert "source 'wds'" in msg and "group_id" in msg  # an expression over a column it lacks
