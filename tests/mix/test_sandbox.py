"""Recipe SQL sees the run's columns and nothing else: both layers, each on its own, and a
recipe that tries gets a one-line error from `curate mix` and `curate explain`."""
from __future__ import annotations

import os

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.db import connect_sandboxed, lock_down
from curate.errors import CurateError
from curate.mix.guard import check_expression

COLS = ["sample_id", "source", "row", "caption", "keep", "score__x", "lang"]


@pytest.fixture()
def world(tmp_path):
    """A run folder with two Parquet parts, and secrets next to it."""
    run = tmp_path / "run"
    (run / "scores").mkdir(parents=True)
    t = pa.table({
        "sample_id": pa.array([1, 2, 3, 4, 5], pa.uint64()), "source": ["in.parquet"] * 5,
        "row": pa.array(range(5), pa.int64()), "caption": ["a dog", "a cat", "bird", "a b c", None],
        "keep": [True, False, True, True, True], "score__x": [0.1, 0.5, 0.9, 0.3, None],
        "lang": ["en", "de", "en", "en", "fr"],
    })
    pq.write_table(t.slice(0, 3), run / "scores" / "part-00000.parquet")
    pq.write_table(t.slice(3), run / "scores" / "part-00001.parquet")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.txt").write_text("TOPSECRET\n")
    (secret / "rows.csv").write_text("a,b\n1,2\n")
    pq.write_table(pa.table({"s": ["TOPSECRET"]}), secret / "other.parquet")
    # a sibling whose name starts with the allowed folder's name: not inside it
    pq.write_table(pa.table({"s": ["TOPSECRET"]}), tmp_path / "run_evil.parquet")
    (run / "scores" / "link.csv").symlink_to(secret / "rows.csv")  # a symlink out of the folder
    glob = str(run / "scores" / "part-*.parquet")
    con = connect_sandboxed([glob], threads=2, temp_dir=tmp_path / "mix" / ".duckdb-tmp")
    yield {"con": con, "glob": glob, "tmp": tmp_path, "secret": secret}
    con.close()


def run_expr(w, expr, where="true"):
    """As curate splices a field: the check first, then the locked connection."""
    check_expression("quality", expr, COLS)
    return w["con"].execute(
        f"SELECT sample_id, CAST((\n{expr}\n) AS DOUBLE) AS q FROM read_parquet('{w['glob']}') AS s "
        f"WHERE ({where}) ORDER BY sample_id").fetchall()


# -- what must keep working ------------------------------------------------------------------

@pytest.mark.parametrize("expr, want", [
    ("score__x * 2 + 1", [1.2, 2.0, 2.8, 1.6, None]),
    ("CASE WHEN keep THEN score__x ELSE 0 END", [0.1, 0.0, 0.9, 0.3, None]),
    ("coalesce(score__x, -1)", [0.1, 0.5, 0.9, 0.3, -1.0]),
    ("length(caption)", [5, 5, 4, 5, None]),
    ("regexp_matches(caption, '^a ')::INT", [1, 1, 0, 1, None]),
    ("CASE WHEN caption ILIKE '%cat%' OR lang IN ('fr') THEN 1 ELSE 0.5 END", [0.5, 1, 0.5, 0.5, 1]),
    ("least(greatest(score__x, 0.2), 0.8) / 1.0", [0.2, 0.5, 0.8, 0.3, 0.2]),
    ("row_number() OVER (PARTITION BY lang ORDER BY sample_id)", [1, 1, 2, 3, 1]),
    ("len(string_split(coalesce(caption, ''), ' '))", [2, 2, 1, 3, 1]),
    ("list_sum(list_transform([1, 2], lambda x: x * score__x))", [0.3, 1.5, 2.7, 0.9, None]),
    ("try_cast(lang = 'en' AS INTEGER)", [1, 0, 1, 1, 0]),
])
def test_column_expressions_work(world, expr, want):
    got = [q for _, q in run_expr(world, expr)]
    assert [None if g is None else round(g, 9) for g in got] == [None if x is None else round(x, 9) for x in want]


def test_hash_and_eligible_work(world):
    check_expression("eligible", "keep AND score__x > 0.2 AND hash(caption) % 7 >= 0", COLS)
    rows = run_expr(world, "1.0", where="keep AND score__x > 0.2 AND hash(caption) % 7 >= 0")
    assert [r[0] for r in rows] == [3, 4]


def test_curate_own_queries_still_read_the_run(world):
    con = world["con"]
    assert con.execute(f"DESCRIBE SELECT * FROM read_parquet('{world['glob']}')").fetchall()[0][0] == "sample_id"
    assert con.execute(f"SELECT count(*) FROM read_parquet('{world['glob']}')").fetchall() == [(5,)]
    con.register("want", pa.table({"sample_id": pa.array([2, 4], pa.uint64())}))  # audit.py registers Arrow
    n = con.execute(f"SELECT count(*) FROM read_parquet('{world['glob']}') JOIN want USING (sample_id)").fetchall()
    assert n == [(2,)]
    # an ORDER BY bigger than memory_limit is not needed; spilling goes to the allowed temp dir


# -- layer 2: the check refuses, with one line that names the culprit ------------------------

REFUSED = [
    ("read_text('{secret}/key.txt')", "function read_text is not allowed"),
    ("(SELECT content FROM read_text('{secret}/key.txt'))", "subqueries are not allowed"),
    ("length(read_blob('{secret}/key.txt'))", "function read_blob is not allowed"),
    ("read_csv('/etc/passwd')", "function read_csv is not allowed"),
    ("read_csv_auto('{secret}/rows.csv')", "function read_csv_auto is not allowed"),
    ("read_json('{secret}/rows.csv')", "function read_json is not allowed"),
    ("len(glob('{home}/*'))", "function glob is not allowed"),
    ("read_parquet('{secret}/other.parquet')", "function read_parquet is not allowed"),
    ("(SELECT max(s) FROM read_parquet('{secret}/other.parquet'))", "subqueries are not allowed"),
    ("(SELECT count(*) FROM '{secret}/rows.csv')", "subqueries are not allowed: \"(SELECT count(*) FROM"),
    ("score__x IN (SELECT a FROM '{secret}/rows.csv')", "subqueries are not allowed"),
    ("EXISTS (SELECT 1 FROM duckdb_settings())", "subqueries are not allowed"),
    ("COPY (SELECT 1) TO '{secret}/out.csv'", "COPY statements are not allowed"),
    ("ATTACH '{secret}/db.duckdb'", "ATTACH statements are not allowed"),
    ("INSTALL httpfs", "INSTALL statements are not allowed"),
    ("LOAD httpfs", "LOAD statements are not allowed"),
    ("SET enable_external_access = true", "SET statements are not allowed"),
    ("RESET enable_external_access", "RESET statements are not allowed"),
    ("PRAGMA version", "PRAGMA statements are not allowed"),
    ("1; COPY (SELECT 1) TO '{secret}/out.csv'", "';' is not allowed"),
    ("1;", "';' is not allowed"),
    ("1) AS DOUBLE) AS q FROM read_text('{secret}/key.txt') WHERE ((true", "')' without its '('"),
    ("score__x -- the rest of curate's line is gone", "SQL comments are not allowed"),
    ("score__x /* unterminated", "SQL comments are not allowed"),
    ("getenv('HOME')", "function getenv is not allowed"),
    ("length(current_setting('temp_directory'))", "function current_setting is not allowed"),
    ("main.read_text('x')", "function read_text is not allowed"),
    ("\"READ_TEXT\"('x')", "function read_text is not allowed"),
    ("query('SELECT 1')", "function query is not allowed"),
    ("random()", "function random is not allowed"),
    ("user = 'duckdb'", "function user is not allowed"),
    ("st_area(caption)", "unknown function st_area"),
]


@pytest.mark.parametrize("expr, msg", REFUSED)
def test_check_refuses(world, expr, msg):
    expr = expr.format(secret=world["secret"], home=os.path.expanduser("~"))
    with pytest.raises(CurateError) as e:
        check_expression("quality", expr, COLS)
    text = str(e.value)
    assert "\n" not in text
    assert text.startswith("quality: ")
    assert msg in text
    assert "TOPSECRET" not in text


def test_a_run_column_may_share_a_denied_name():
    check_expression("quality", "CASE WHEN user = 'x' THEN 1 ELSE 0 END", ["user"])


# -- layer 1: the lock holds even if the check misses something ------------------------------

ESCAPES = [
    "SELECT * FROM read_text('{secret}/key.txt')",
    "SELECT * FROM read_blob('{secret}/key.txt')",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_csv_auto('{secret}/rows.csv')",
    "SELECT * FROM read_json('{secret}/rows.csv')",
    "SELECT * FROM glob('{home}/*')",
    "SELECT * FROM glob('{secret}/*')",
    "SELECT * FROM read_parquet('{secret}/other.parquet')",
    "SELECT * FROM read_parquet('{tmp}/run_evil.parquet')",  # prefix of the allowed folder's name
    "SELECT * FROM read_parquet('{tmp}/run/scores/../../secret/other.parquet')",  # ..
    "SELECT * FROM read_csv('{tmp}/run/scores/link.csv')",  # symlink out of the allowed folder
    "SELECT (SELECT count(*) FROM '{secret}/rows.csv')",
    "SELECT * FROM parquet_metadata('{secret}/other.parquet')",
    "SELECT * FROM sniff_csv('{secret}/rows.csv')",
    "SELECT * FROM read_csv('https://example.com/x.csv')",
    "COPY (SELECT 1) TO '{secret}/out.csv'",
    "ATTACH '{secret}/db.duckdb' AS x",
    "INSTALL httpfs",
    "LOAD httpfs",
    "SET enable_external_access = true",
    "RESET enable_external_access",
    "SET lock_configuration = false",
    "SET allowed_directories = ['/']",
    "SET disabled_filesystems = ''",
    "SET temp_directory = '{secret}'",
    "PRAGMA enable_profiling",
    "SET autoload_known_extensions = true",
]


@pytest.mark.parametrize("sql", ESCAPES)
def test_lock_holds_without_the_check(world, sql):
    sql = sql.format(secret=world["secret"], home=os.path.expanduser("~"), tmp=world["tmp"])
    with pytest.raises(duckdb.Error) as e:
        world["con"].execute(sql).fetchall()
    assert "TOPSECRET" not in str(e.value)
    assert not (world["secret"] / "out.csv").exists()
    assert not (world["secret"] / "db.duckdb").exists()


def test_lock_settings(world):
    got = dict(world["con"].execute(
        "SELECT name, value FROM duckdb_settings() WHERE name IN ('enable_external_access', 'lock_configuration', "
        "'autoload_known_extensions', 'autoinstall_known_extensions', 'allow_community_extensions')").fetchall())
    assert got == {"enable_external_access": "false", "lock_configuration": "true",
                   "autoload_known_extensions": "false", "autoinstall_known_extensions": "false",
                   "allow_community_extensions": "false"}


def test_views_made_before_the_lock_do_not_leak(tmp_path):
    (tmp_path / "s.csv").write_text("a\nTOPSECRET\n")
    con = duckdb.connect()
    con.execute(f"CREATE VIEW v AS SELECT * FROM read_csv('{tmp_path}/s.csv')")
    lock_down(con, [])
    with pytest.raises(duckdb.Error):
        con.execute("SELECT * FROM v").fetchall()


def test_refuses_to_allow_everything():
    with pytest.raises(CurateError):
        connect_sandboxed(["/"])


# -- through the commands ---------------------------------------------------------------------


def test_mix_and_explain_refuse_a_recipe_that_reads_a_file(tmp_path):
    from click.testing import CliRunner

    from curate.cli import cli

    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET\n")
    pa_table = pa.table({"caption": ["A brown dog runs on a beach.", "Two red buses on a bridge at night."]})
    pq.write_table(pa_table, tmp_path / "in.parquet")
    run = CliRunner().invoke(cli, ["score", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "run")])
    assert run.exit_code == 0, run.output
    good = tmp_path / "good.toml"
    good.write_text(f'size = 1\n[[source]]\nname = "a"\nrun = "{tmp_path / "run"}"\nshare = 1.0\n')
    assert CliRunner().invoke(cli, ["mix", str(good), "--out", str(tmp_path / "mix")]).exit_code == 0
    for field, expr, culprit in (("quality", f"length(read_text('{secret}')[1].content)", "read_text"),
                                 ("eligible", f"keep AND len(glob('{tmp_path}/*')) > 0", "glob"),
                                 ("eligible", f"keep AND (SELECT count(*) FROM read_csv('{secret}')) > 0", "subqueries")):
        bad = tmp_path / f"bad-{field}.toml"
        bad.write_text(f'size = 1\n{field} = "{expr}"\n[[source]]\nname = "a"\nrun = "{tmp_path / "run"}"\nshare = 1.0\n')
        res = CliRunner().invoke(cli, ["mix", str(bad), "--out", str(tmp_path / f"mix-{field}")])
        assert res.exit_code == 1, res.output
        [line] = res.output.strip().splitlines()
        assert line.startswith("Error: ") and culprit in line and "TOPSECRET" not in line
        assert not (tmp_path / f"mix-{field}").exists()
    # a recipe.toml changed after the mixture was made: explain re-runs it, and refuses
    rec = tmp_path / "mix" / "recipe.toml"
    rec.write_text(rec.read_text().replace('quality = "1.0"', f"quality = \"length(read_text('{secret}')[1].content)\""))
    sid = pq.read_table(tmp_path / "mix" / "manifest.parquet")["sample_id"][0].as_py()
    res = CliRunner().invoke(cli, ["explain", str(sid), "--mix", str(tmp_path / "mix")])
    assert res.exit_code == 1 and "read_text" in res.output and "TOPSECRET" not in res.output
