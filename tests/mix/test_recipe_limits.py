"""Recipe SQL that is too deep, not deterministic, too big or too slow: one-line errors that
name the expression, and memory and time bounds that hold (on a run of real captions)."""
from __future__ import annotations

import hashlib
import time

import duckdb
import pytest

from helpers import ok, fails_in_one_line
from curate.errors import CurateError
from curate.layout import pinned_scores_glob
from curate.mix.guard import check_expression

LIGHT = '[[filter]]\nname = "length"\nmin = 3\n\n[[filter]]\nname = "junk"\n'


@pytest.fixture(scope="module")
def run(tmp_path_factory, read_data):
    """6,000 real human and web captions, scored with a light chain, from two input files."""
    d = tmp_path_factory.mktemp("limits")
    read_data("a_coco", ["caption", "group_id"]).head(3000).write_parquet(d / "human.parquet")
    read_data("c_laion", ["caption", "group_id"]).head(3000).write_parquet(d / "web.parquet")
    (d / "light.toml").write_text(LIGHT)
    ok("score", d / "human.parquet", d / "web.parquet", "--chain", d / "light.toml", "--out", d / "run")
    return d


def recipe(d, name: str, quality: str, size: int = 500) -> str:
    (d / f"{name}.toml").write_text(f'size = {size}\neligible = "true"\nquality = {quality!r}\n'
                                    f'[[source]]\nname = "r"\nrun = "{d / "run"}"\n')
    return d / f"{name}.toml"


@pytest.mark.parametrize("expr", ["abs(" * 400 + "1" + ")" * 400, " + ".join(["score__length"] * 3000)])
def test_a_deeply_nested_expression_is_a_one_line_error(run, expr):
    msg = fails_in_one_line("mix", recipe(run, "deep", expr), "--out", run / "m-deep")
    assert "quality" in msg and ("deep" in msg or "depth" in msg), msg


@pytest.mark.parametrize("expr", [
    "reservoir_quantile(score__length, 0.5) OVER (PARTITION BY source)", "random()", "uuid()::VARCHAR = ''",
    "epoch(now())", "gen_random_uuid() IS NULL", "row_number() OVER (PARTITION BY source)",
    "first(score__length) OVER (PARTITION BY source)", "stddev(score__length) OVER ()", "len(list(caption) OVER ())",
])
def test_functions_whose_result_changes_from_run_to_run_are_refused(expr):
    with pytest.raises(CurateError, match="is not allowed"):
        check_expression("quality", expr)


ARGS = ["score__length, 0.5, 10", "score__length, 0.5", "score__length", "score__length, score__junk",
        "caption, ' '", "caption", "keep", "score__length::BIGINT"]


@pytest.fixture(scope="module")
def accepted(run) -> list[str]:
    """Every aggregate and window function of DuckDB's catalogue the guard accepts, each
    with the first arguments it runs with over the run, windowed per source (an
    order-sensitive one ordered by sample_id, the only way the guard accepts it)."""
    con = duckdb.connect()
    names = sorted({r[0] for r in con.execute(
        "SELECT function_name FROM duckdb_functions() WHERE function_type IN ('aggregate', 'window')").fetchall()})
    glob = pinned_scores_glob(run / "run")
    out = []
    for name in names:
        for window in ("PARTITION BY source", "PARTITION BY source ORDER BY sample_id"):
            found = None
            for args in ARGS + [""]:
                expr = f"{name}({args}) OVER ({window})"
                try:
                    check_expression("quality", expr)
                    con.execute(f"SELECT {expr} FROM read_parquet('{glob}') LIMIT 2").fetchall()
                except CurateError:
                    break
                except duckdb.Error:
                    continue
                found = expr
                break
            if found:
                out.append(found)
                break
    return out


def test_every_accepted_aggregate_gives_the_same_result_for_any_row_order(run, accepted):
    exprs = accepted
    assert len(exprs) > 50 and not any(e.startswith("reservoir_quantile(") for e in exprs)
    assert any(e.startswith("row_number(") and "ORDER BY sample_id" in e for e in exprs)
    con = duckdb.connect()
    con.execute("SET threads = 2")
    glob = pinned_scores_glob(run / "run")
    differ = []
    for expr in exprs:
        got = []
        # a list's text grows with the square of the partition (a running list per row):
        # its digest is of the lists' hashes, any other value's of its text
        typ = con.execute(f"DESCRIBE SELECT ({expr}) AS x FROM read_parquet('{glob}')").fetchall()[0][1]
        x = "hash(x)" if typ.endswith("]") else "x"
        for order in ("sample_id", "sample_id DESC", "hash(sample_id)"):
            sql = (f"SELECT md5(string_agg(CAST({x} AS VARCHAR), ',' ORDER BY sample_id)) FROM "
                   f"(SELECT sample_id, {expr} AS x FROM (SELECT * FROM read_parquet('{glob}') ORDER BY {order}))")
            got.append(con.execute(sql).fetchone()[0])
        if len(set(got)) > 1:
            differ.append(expr)
    assert differ == []


def test_the_manifest_is_byte_identical_over_runs_for_the_accepted_aggregates(run, accepted):
    numeric = []
    con = duckdb.connect()
    glob = pinned_scores_glob(run / "run")
    for expr in accepted:
        typ = con.execute(f"DESCRIBE SELECT ({expr}) AS x FROM read_parquet('{glob}')").fetchall()[0][1]
        if typ not in ("BIGINT", "HUGEINT", "DOUBLE", "FLOAT", "INTEGER", "UBIGINT", "BOOLEAN") \
                and not typ.startswith("DECIMAL"):
            continue
        v = f"coalesce(nullif(CAST(({expr}) AS DOUBLE), 'NaN'::DOUBLE), 0)"
        numeric.append(f"ln(2 + least(abs({v}), 1e300))")
    assert len(numeric) > 20
    quality = "score__length * (" + " + ".join(numeric) + ")"
    r = recipe(run, "aggs", quality, size=2000)
    digests = []
    for threads in ("1", "2", "2"):
        ok("mix", r, "--out", run / "m-aggs", "--overwrite", "--threads", threads)
        digests.append(hashlib.sha256((run / "m-aggs" / "manifest.parquet").read_bytes()).hexdigest())
    assert len(set(digests)) == 1


def test_recipe_sql_past_the_memory_limit_is_stopped_with_one_line(run):
    t0 = time.perf_counter()
    msg = fails_in_one_line("mix", recipe(run, "mem", "len(range(300000000))"), "--out", run / "m-mem",
                         "--memory-limit", "700MB")
    assert "memory limit" in msg and "len(range(300000000))" in msg and "source 'r'" in msg
    assert time.perf_counter() - t0 < 60
    assert not (run / "m-mem").exists()


def test_recipe_sql_past_the_time_limit_is_stopped_with_one_line(run):
    slow = "list_sum(list_transform(range(200000), lambda x: x * score__length))"
    t0 = time.perf_counter()
    msg = fails_in_one_line("mix", recipe(run, "slow", slow), "--out", run / "m-slow", "--timeout", "3")
    assert "time limit" in msg and "3 s" in msg and "list_transform" in msg
    assert time.perf_counter() - t0 < 30
