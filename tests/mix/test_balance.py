"""Balanced mixtures: `curate concepts` (MetaCLIP's substring rule), the recipe's [balance]
table (per_concept, max_per_opening, length_mix), explain and the balance report.

Real captions from ../shared/data: web alt-text (c_*), human captions (a_*), long human and
model captions (d_*), multilingual captions (b_*).
"""
from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from helpers import make_runs, write_recipe

from curate.audit.explain import explain
from curate.cli import cli
from curate.errors import CurateError
from curate.layout import concepts_json_path, concepts_path
from curate.mix.balance import tail_shares
from curate.mix.balance_sql import concept_u
from curate.mix.build import build_mixture, inspect_sources
from curate.mix.concepts import annotate, concepts, concepts_problem
from curate.mix.recipe import load_recipe, parse_recipe
from curate.mix.sql import render_sql, seed_key
from curate.mix.vocabulary import STOPWORDS, Vocabulary, build_vocabulary, load_vocabulary, patterns
from curate.report.balance import concept_curves, openings
from curate.scoring.chain import load_chain
from curate.scoring.runner import ScoreOptions, score

QUALITY = "ln(1 + score__specificity) * (1 - score__junk)"
T = 20  # below the counts of the vocabulary's head (the commonest entry: ~1,700 rows)
T_TAIL = 60  # within them: about a sixth of the 300 entries have fewer rows (the tail)
SIZE = 1500


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir):
    """Copies of the shared scored runs (concepts are written into them), and the long
    captions scored again with their `origin` (human or model)."""
    shared = make_runs(tmp_path_factory, data_dir)
    base = tmp_path_factory.mktemp("balance-runs")
    out = {}
    for name in ("web", "human"):
        shutil.copytree(shared[name], base / name, symlinks=True)
        out[name] = base / name
    files = sorted(str(p) for p in data_dir.glob("d_*.parquet"))
    score(files, base / "long", load_chain(None), ScoreOptions(carry=("group_id", "origin")))
    out["long"] = base / "long"
    return out


@pytest.fixture(scope="module")
def head_vocab(runs):
    """web and human matched against the 300 commonest entries of their own default
    vocabulary: entries with counts well above T, as MetaCLIP's are above t."""
    return concepts([runs["web"], runs["human"]], max_entries=300)


def reference_normalise(text: str) -> str:
    """MetaCLIP's spacing() (metaclip/metaclip1/substr_matching.py), lower-cased."""
    spaced = f" {(text or '').lower()} "
    for punct in [",", ".", ";", ":", "?", "!", "`"]:
        spaced = spaced.replace(punct, f" {punct} ")
    for char in ["\t", "\n", "\r"]:
        spaced = spaced.replace(char, " ")
    return spaced


# -- matching ------------------------------------------------------------------------------


def test_matching_is_metaclips_substring_rule(read_data):
    texts = pl.concat([read_data(p, ["caption"]).head(600) for p in ("a_coco", "c_laion", "c_redcaps", "d_")])
    frame = texts.select(pl.col("caption").alias("t"))
    vocab = build_vocabulary([frame], min_df=3)
    entries = [p.strip(" ") for p in vocab.lists["*"]]
    assert len(entries) > 500
    got = annotate(frame, vocab)["concepts"].to_list()
    for text, mine in zip(texts["caption"].to_list(), got):
        spaced = reference_normalise(text)
        assert mine == sorted(e for e in entries if f" {e} " in spaced), text


def test_other_languages_are_matched_in_their_own_vocabulary(read_data, tmp_path):
    rows = read_data("b_multi30k_task1", ["caption", "lang"]).filter(pl.col("lang").is_in(["en", "de"]))
    zh = read_data("b_flickr8k_cn", ["caption", "lang"])
    voc = tmp_path / "vocab.json"
    voc.write_text('{"*": ["dog", "man", "woman"], "de": ["hund", "mann", "frau"], "zh": ["狗", "男人"]}',
                   encoding="utf-8")
    vocab = load_vocabulary(voc)
    frame = pl.concat([rows, zh]).rename({"caption": "t"})
    got = pl.concat([frame, annotate(frame, vocab)], how="horizontal")
    for lang, own in (("en", ["dog", "man", "woman"]), ("de", ["hund", "mann", "frau"]), ("zh", ["狗", "男人"])):
        part = got.filter(pl.col("lang") == lang)
        assert set(part["concept_vocab"].unique()) == {"*" if lang == "en" else lang}
        for text, mine in zip(part["t"].to_list(), part["concepts"].to_list()):
            spaced = reference_normalise(text)
            # Chinese has no spaces between words: its entries need none around them
            want = [e for e in own if (e in spaced if lang == "zh" else f" {e} " in spaced)]
            assert mine == sorted(want), text
        assert part["concepts"].list.len().sum() > 50
    # German "man" (one) is not the English entry: German rows see only their own list
    assert not got.filter(pl.col("lang") == "de")["concepts"].list.contains("man").any()


def test_default_vocabulary_follows_its_rule(read_data):
    frame = read_data("a_flickr30k", ["caption"]).select(pl.col("caption").alias("t"))
    vocab = build_vocabulary([frame], min_df=5, max_df=0.5)
    entries = [p.strip(" ") for p in vocab.lists["*"]]
    words = [set(reference_normalise(t).split()) for t in frame["t"].to_list()]
    for e in entries[:300]:
        parts = e.split(" ")
        assert len(parts) <= 2 and not any(p in STOPWORDS for p in parts), e
        df = sum(1 for ws, t in zip(words, frame["t"].to_list()) if set(parts) <= ws and f" {e} " in reference_normalise(t))
        assert 5 <= df <= 0.5 * frame.height, (e, df)
    assert "dog" in entries and "man" in entries and "the" not in entries and "a" not in entries
    assert any(" " in e for e in entries)  # word pairs


def test_vocabulary_files_give_one_line_errors(tmp_path):
    (tmp_path / "v.csv").write_text("dog\n")
    (tmp_path / "bad.json").write_text('{"de": "hund"}')
    (tmp_path / "empty.txt").write_text("# nothing\n\n")
    for name, msg in (("v.csv", "give a .txt file"), ("bad.json", "language -> list"), ("empty.txt", "no entries"),
                      ("missing.txt", "not found")):
        with pytest.raises(CurateError, match=msg) as e:
            load_vocabulary(tmp_path / name)
        assert "\n" not in str(e.value)


def test_concepts_command_writes_its_files_beside_the_scores(runs, head_vocab):
    web = runs["web"]
    got = pl.read_parquet(concepts_path(web))
    scores = pl.read_parquet(web / "scores" / "part-*.parquet", columns=["sample_id", "source", "row"])
    assert got.select("sample_id", "source", "row").equals(scores)
    assert got.columns == ["sample_id", "source", "row", "concepts", "concept_vocab", "template"]
    assert head_vocab[0]["rows_annotated"] == scores.height
    assert concepts_problem(web) is None
    assert load_vocabulary(concepts_json_path(web)).sha256() == head_vocab[0]["vocabulary_source"]["sha256"]
    assert concepts_problem(runs["long"]).endswith(f"run `curate concepts {runs['long']}` first")
    templates = pl.read_parquet(concepts_path(web))["template"]
    assert templates.null_count() < templates.len()


# -- balance by concepts -------------------------------------------------------------------


def _recipe(d: Path, runs, size=SIZE, **balance) -> Path:
    path = write_recipe(d / "recipe.toml", runs, {"web": {"share": 0.5}, "human": {"share": 0.5}},
                        size=size, seed=5, quality=QUALITY)
    if balance:
        body = "\n".join(f"{k} = {v!r}" if not isinstance(v, str) else f'{k} = "{v}"' for k, v in balance.items())
        path.write_text(path.read_text() + "[balance]\n" + body + "\n")
    return path


@pytest.fixture(scope="module")
def mixes(runs, head_vocab, tmp_path_factory):
    d = tmp_path_factory.mktemp("balance-mixes")
    out = {}
    for name, bal in (("plain", {}), ("balanced", {"per_concept": T}), ("tail", {"per_concept": T_TAIL})):
        build_mixture(_recipe(d / name, runs, **bal), d / name / "mix")
        out[name] = d / name / "mix"
    return out


@pytest.fixture(scope="module")
def pool(runs, head_vocab):
    """The rows the balance draws from, recomputed without the query: eligible (keep,
    quality not null) rows of both sources with their entries, counts, p and draws."""
    frames = []
    for name in ("web", "human"):
        s = pl.read_parquet(runs[name] / "scores" / "part-*.parquet")
        s = s.filter(pl.col("keep")).with_columns(
            ((1 + pl.col("score__specificity")).log() * (1 - pl.col("score__junk"))).alias("q"))
        s = s.filter(pl.col("q").is_not_null() & ~pl.col("q").is_nan())
        c = pl.read_parquet(concepts_path(runs[name]))
        frames.append(s.select("sample_id", "source", "row").join(c, on=["sample_id", "source", "row"])
                      .with_columns(pl.lit(name).alias("run")))
    rows = pl.concat(frames)
    pairs = rows.select("run", "sample_id", "row", "concept_vocab", pl.col("concepts").alias("entry")).explode("entry")
    pairs = pairs.drop_nulls("entry")
    counts = pairs.group_by("concept_vocab", "entry").agg(pl.len().alias("count"))
    pairs = pairs.join(counts, on=["concept_vocab", "entry"])
    u = concept_u(pairs["sample_id"].to_numpy(), pairs["entry"].to_list(), seed_key(5))
    pairs = pairs.with_columns(pl.Series("u", u), (T / pl.col("count")).clip(upper_bound=1.0).alias("p"))
    return rows, pairs.with_columns((pl.col("u") < pl.col("p")).alias("draws"))


def test_per_concept_keeps_exactly_the_rows_metaclips_rule_keeps(mixes, pool):
    rows, pairs = pool
    kept = pairs.filter("draws").select("run", "sample_id", "row").unique()
    m = pl.read_parquet(mixes["balanced"] / "manifest.parquet")
    # every selected row is one the rule keeps, and the entry named as its drawer drew it
    sel = m.select("run", "sample_id", "row", "concept_drawn_by")
    assert sel.join(kept, on=["run", "sample_id", "row"], how="anti").is_empty()
    drawers = (pairs.filter("draws").sort("count", "entry").group_by("run", "sample_id", "row", maintain_order=True)
               .agg(pl.col("entry").first().alias("want")))
    both = sel.join(drawers, on=["run", "sample_id", "row"])
    assert both.height == m.height and (both["concept_drawn_by"] == both["want"]).all()
    # the query's balanced rows are exactly the rule's
    con = duckdb.connect()
    recipe = load_recipe(mixes["balanced"] / "recipe.toml")
    sql = render_sql(recipe, inspect_sources(recipe, con), upto="balanced")
    got = con.sql(f"SELECT run, sample_id, \"row\" FROM ({sql})").pl()
    assert got.sort(got.columns).equals(kept.cast(got.schema).sort(got.columns))


def test_each_entry_draws_t_rows_in_expectation(pool):
    """What MetaCLIP guarantees: an entry matched by c >= T rows draws each with p = T/c, so
    the rows it draws are Binomial(c, T/c): mean T, at most T + 5 sd for every entry; an
    entry with fewer than T rows draws all of them; a row that matches one entry only is
    kept exactly when that entry draws it."""
    _, pairs = pool
    per = pairs.group_by("concept_vocab", "entry").agg(pl.col("count").first(), pl.col("draws").sum().alias("drawn"))
    head = per.filter(pl.col("count") >= T)
    tail = per.filter(pl.col("count") < T)
    assert head.height > 200
    sd = math.sqrt(T)
    assert (head["drawn"] <= T + 5 * sd).all()
    assert abs(head["drawn"].mean() - T) < 4 * sd / math.sqrt(head.height)
    assert (tail["drawn"] == tail["count"]).all()
    single = pairs.filter(pl.len().over("run", "sample_id", "row") == 1)
    assert single.height > 100


def test_balancing_halves_the_commonest_entry_of_the_pool(pool):
    """The rows the balance keeps: the commonest entry's count falls to at most half
    (from ~1,700 rows to ~700 at T = 20); an entry is lost only when it drew none of its
    rows, which for c >= T rows happens with probability (1 - T/c)^c < e^-T."""
    rows, pairs = pool
    kept = pairs.filter(pl.col("draws").any().over("run", "sample_id", "row"))
    before = pairs.group_by("entry").agg(pl.col("sample_id").n_unique().alias("n")).sort("n", descending=True)
    after = kept.group_by("entry").agg(pl.col("sample_id").n_unique().alias("n")).sort("n", descending=True)
    assert after["n"][0] <= before["n"][0] / 2
    assert after.height == before.height


def test_tail_shares_are_metaclips_t_to_p_and_p_to_t(head_vocab, pool):
    """concepts.json relates T to the counts as MetaCLIP's curate.py does (t_to_p, p_to_t)."""
    c = pool[1].group_by("concept_vocab", "entry").agg(pl.col("count").first())["count"].to_numpy()
    got = tail_shares(c)

    def t_to_p(t):  # metaclip/curation/curate.py
        return float(c[c < t].sum() / c.sum())

    def p_to_t(p):
        s = np.sort(c)
        return int(s[np.abs(np.cumsum(s) / s.sum() - p).argmin()])

    assert [x["per_concept"] for x in got["ladder"]][:4] == [1, 2, 5, 10]
    for x in got["ladder"]:
        assert x["tail_share"] == pytest.approx(t_to_p(x["per_concept"]), abs=1e-6)
        assert x["entries_below"] == int((c < x["per_concept"]).sum())
    assert got["per_concept_for"] == {str(p): p_to_t(p) for p in (0.05, 0.1, 0.25, 0.5)}
    assert 0 < got["per_concept_for"]["0.05"] < got["per_concept_for"]["0.5"] <= c.max()
    assert head_vocab[0]["tail_shares"]["ladder"][0]["per_concept"] == 1


def test_balanced_mixtures_cover_more_entries_and_more_of_the_tail(mixes, pool):
    """Mixtures of the same size with and without balancing: entries covered do not fall,
    and the share of matches on tail entries (fewer than T_TAIL rows in the pool) rises."""
    rows, pairs = pool
    tails = set(pairs.filter(pl.col("count") < T_TAIL)["entry"].to_list())
    assert len(tails) > 20
    stats = {}
    for name, mix in mixes.items():
        m = pl.read_parquet(mix / "manifest.parquet", columns=["run", "sample_id", "row"])
        e = m.join(rows, on=["run", "sample_id", "row"]).select(pl.col("concepts").explode()).drop_nulls()
        stats[name] = {"covered": e["concepts"].n_unique(),
                       "tail_share": e["concepts"].is_in(list(tails)).mean()}
    assert stats["balanced"]["covered"] >= stats["plain"]["covered"]
    assert stats["tail"]["covered"] >= stats["plain"]["covered"]
    assert stats["tail"]["tail_share"] > stats["plain"]["tail_share"]


@pytest.fixture(scope="module")
def whole(runs, head_vocab, pool, tmp_path_factory):
    """One recipe without and with per_concept whose size is the whole pool (each source's
    weight its eligible rows): MetaCLIP's comparison of the balanced set with the pool."""
    rows, _ = pool
    n = dict(rows.group_by("run").len().iter_rows())
    d = tmp_path_factory.mktemp("balance-whole")
    out = {}
    for name, bal in (("plain", ""), ("balanced", f"[balance]\nper_concept = {T}\n")):
        path = write_recipe(d / name / "recipe.toml", runs, {k: {"weight": n[k]} for k in ("web", "human")},
                            size=sum(n.values()), seed=5, quality=QUALITY)
        path.write_text(path.read_text() + bal)
        build_mixture(path, d / name / "mix")
        out[name] = d / name / "mix"
    return out


def test_balance_halves_the_commonest_entry_of_the_same_recipe(whole, pool):
    """Quotas are ceilings under per_concept: the balanced recipe takes the rows the balance
    keeps and is not filled up again, so against the same recipe without balancing (the
    whole pool) the commonest entry falls to at most half, no entry is lost and the share
    of matches on tail entries rises."""
    rows, pairs = pool
    tails = set(pairs.filter(pl.col("count") < T_TAIL)["entry"].to_list())
    stats = {}
    for name, mix in whole.items():
        m = pl.read_parquet(mix / "manifest.parquet", columns=["run", "sample_id", "row", "repeat"])
        e = m.join(rows, on=["run", "sample_id", "row"]).select(pl.col("concepts").explode()).drop_nulls()
        stats[name] = {"rows": m.height, "top": e["concepts"].value_counts()["count"].max(),
                       "covered": e["concepts"].n_unique(), "tail_share": e["concepts"].is_in(list(tails)).mean()}
        assert (m["repeat"] == 1).all()
    plain, bal = stats["plain"], stats["balanced"]
    assert plain["rows"] == rows.height and bal["rows"] < plain["rows"] / 2
    assert bal["top"] <= plain["top"] / 2
    assert bal["covered"] >= plain["covered"]
    assert bal["tail_share"] > plain["tail_share"]
    info = json.loads((whole["balanced"] / "manifest.json").read_text())["counts"]["balance"]["concepts"]
    assert all(q["rows"] < q["quota"] for q in info["quotas"].values())
    assert sum(q["rows"] for q in info["quotas"].values()) == bal["rows"]


def test_per_concept_with_repeat_is_a_one_line_error(tmp_path):
    base = {"size": 10, "source": [{"name": "a", "run": "r", "share": 1.0, "repeat": 3}]}
    with pytest.raises(CurateError, match="per_concept takes each row the balance keeps once; remove repeat") as e:
        parse_recipe({**base, "balance": {"per_concept": 5}}, "r.toml", tmp_path)
    assert "\n" not in str(e.value)


def test_balanced_manifest_is_byte_identical_across_reruns(mixes, whole, tmp_path):
    for i, mix in enumerate((mixes["balanced"], whole["balanced"])):
        build_mixture(mix / "recipe.toml", tmp_path / str(i), threads=1)
        for f in ("manifest.parquet", "query.sql"):
            assert (tmp_path / str(i) / f).read_bytes() == (mix / f).read_bytes()


def test_per_concept_without_concepts_is_a_one_line_error(runs, tmp_path):
    path = write_recipe(tmp_path / "r.toml", runs, {"long": {"share": 1.0}}, size=10)
    path.write_text(path.read_text() + "[balance]\nper_concept = 5\n")
    with pytest.raises(CurateError, match=r"run `curate concepts .*long` first") as e:
        build_mixture(path, tmp_path / "mix")
    assert "\n" not in str(e.value)


def test_explain_names_the_drawing_entry_or_why_none_drew(mixes, pool):
    m = pl.read_parquet(mixes["balanced"] / "manifest.parquet")
    first = m.row(0, named=True)
    got = explain(first["sample_id"], mix=mixes["balanced"])["mix"]
    assert got["selected"] and got["manifest"]["concept_drawn_by"] == first["concept_drawn_by"]
    assert got["balance"]["concepts"]["drawn_by"] == first["concept_drawn_by"]
    _, pairs = pool
    out = pairs.filter(~pl.col("draws").any().over("run", "sample_id", "row")).sort("sample_id")
    sid = out["sample_id"][0]
    got = explain(sid, mix=mixes["balanced"])["mix"]
    assert not got["selected"] and got["why"].startswith("balanced out: none of its concept entries drew it")
    entries = {x["entry"]: x for x in got["balance"]["concepts"]["entries"]}
    for r in out.filter(pl.col("sample_id") == sid).iter_rows(named=True):
        assert entries[r["entry"]]["entry_count"] == r["count"] and not entries[r["entry"]]["draws"]


def test_report_curves_before_and_after(mixes):
    got = concept_curves(mixes["tail"])
    assert set(got["sources"]) == {"web", "human"}
    for name, s in got["sources"].items():
        b, a = s["before"], s["after"]
        assert b["curve"][0]["count"] > a["curve"][0]["count"]
        assert a["tail_share"] > b["tail_share"], name
    assert concept_curves(mixes["plain"]) == {}


# -- openings and templates ----------------------------------------------------------------


def test_opening_cap_on_model_captions(runs, tmp_path):
    long = {"long": {"share": 1.0, "eligible": "keep AND origin = 'model'"}}

    def commonest(mix):
        m = pl.read_parquet(mix / "manifest.parquet", columns=["caption_clean"])
        first = m["caption_clean"].str.to_lowercase().str.extract_all(r"[\p{L}\p{N}]+").list.head(3).list.join(" ")
        return first.value_counts().sort("count", descending=True).row(0)

    plain = write_recipe(tmp_path / "plain.toml", runs, long, size=200, seed=1)
    build_mixture(plain, tmp_path / "plain")
    before = commonest(tmp_path / "plain")[1]
    assert before >= 20  # model captions collapse onto a few openings
    cap = before // 2
    capped = write_recipe(tmp_path / "capped.toml", runs, long, size=200, seed=1)
    capped.write_text(capped.read_text() + f"[balance]\nmax_per_opening = {cap}\n")
    build_mixture(capped, tmp_path / "capped")
    opening, n = commonest(tmp_path / "capped")
    assert n <= cap
    report = openings(runs["long"])
    comprecap = next(v for k, v in report.items() if "comprecap" in k)
    tops = comprecap["openings"]  # the model openers ("The image shows") are cleaned away by now
    assert 0 < len(tops) <= 20 and all(len(t["opening"].split()) <= 3 for t in tops)
    assert [t["rows"] for t in tops] == sorted((t["rows"] for t in tops), reverse=True) and tops[0]["rows"] >= 2
    words = [re.findall(r"[^\W_]+", t.lower()) for t in
             pl.read_parquet(runs["long"] / "scores" / "part-*.parquet").filter(pl.col("source").str.contains("comprecap"))
             ["caption_clean"].to_list()]
    flat = [w for ws in words for w in ws]
    assert comprecap["distinct_1"] == pytest.approx(len(set(flat)) / len(flat), abs=1e-6)


# -- length mix ----------------------------------------------------------------------------


def test_length_mix_is_met_within_one_point(runs, head_vocab, tmp_path):
    bins = {"0-8": 0.25, "9-15": 0.5, "16-": 0.25}
    path = _recipe(tmp_path, runs, size=2000)
    path.write_text(path.read_text() + "[balance]\nlength_mix = { "
                    + ", ".join(f'"{k}" = {v}' for k, v in bins.items()) + " }\n")
    build_mixture(path, tmp_path / "mix")
    plain = _recipe(tmp_path / "p", runs, size=2000)
    build_mixture(plain, tmp_path / "plain")

    def shares(mix):
        m = pl.read_parquet(mix / "manifest.parquet", columns=["caption_clean", "repeat"])
        n = m["caption_clean"].str.split(" ").list.eval(pl.element().filter(pl.element() != "")).list.len()
        n = m["caption_clean"].str.extract_all(r"\S+").list.len()
        edges = [(0, 8), (9, 15), (16, 10**9)]
        return [float(((n >= lo) & (n <= hi)).cast(pl.Int64).dot(m["repeat"]) / m["repeat"].sum()) for lo, hi in edges]

    for got, want in zip(shares(tmp_path / "mix"), bins.values()):
        assert abs(got - want) <= 0.01
    assert max(abs(g - w) for g, w in zip(shares(tmp_path / "plain"), bins.values())) > 0.01


def test_balance_table_errors_are_one_line(tmp_path):
    base = {"size": 10, "source": [{"name": "a", "run": "r", "share": 1.0}]}
    for bal, msg in (({"per_concpt": 3}, "unknown key 'per_concpt'; valid keys: per_concept"),
                     ({"per_concept": 0}, "per_concept must be a whole number >= 1"),
                     ({"length_mix": {"0-10": 0.5, "10-": 0.5}}, "overlap"),
                     ({"length_mix": {"0-10": 0.5, "11-": 0.4}}, "add up to 1"),
                     ({"length_mix": {"short": 1.0}}, "LO-HI or LO-"),
                     ({"unmatched": "keep"}, "unmatched needs per_concept")):
        with pytest.raises(CurateError, match=re.escape(msg)) as e:
            parse_recipe({**base, "balance": bal}, "r.toml", tmp_path)
        assert "\n" not in str(e.value)


def test_resolved_recipe_keeps_the_balance(mixes):
    again = load_recipe(mixes["balanced"] / "recipe.toml")
    assert again.balance.per_concept == T and again.balance.unmatched == "drop"


def test_cli_concepts_and_balance(runs, mixes, tmp_path):
    voc = tmp_path / "v.txt"
    voc.write_text("# entries\nimage\nwhite\n")
    r = CliRunner().invoke(cli, ["concepts", str(runs["long"]), "--vocabulary", str(voc)])
    assert r.exit_code == 0, r.output
    assert "rows match an entry" in r.output and "per_concept for a tail share" in r.output
    r = CliRunner().invoke(cli, ["balance", str(mixes["balanced"])])
    assert r.exit_code == 0, r.output
    assert "tail share" in r.output and "distinct-2" in r.output
    assert Vocabulary({"*": patterns(["White"])}, {}).to_json() == {"*": ["white"]}
    assert (pl.read_parquet(concepts_path(runs["long"]))["concept_vocab"] == "*").all()


def test_unmatched_rows_are_dropped_or_kept_as_the_recipe_says(runs, tmp_path):
    voc = tmp_path / "v.txt"
    voc.write_text("image\nwoman\n")
    concepts([runs["long"]], voc)
    got = {}
    for rule in ("drop", "keep"):
        # "image" and "woman" draw about 5 rows each; "keep" adds every row without them
        size = 4 if rule == "drop" else 300
        path = write_recipe(tmp_path / f"{rule}.toml", runs, {"long": {"share": 1.0}}, size=size, seed=3)
        path.write_text(path.read_text() + f'[balance]\nper_concept = 5\nunmatched = "{rule}"\n')
        build_mixture(path, tmp_path / rule)
        got[rule] = pl.read_parquet(tmp_path / rule / "manifest.parquet")
    assert (got["drop"]["concepts"].list.len() > 0).all()
    none = got["keep"].filter(pl.col("concepts").list.len() == 0)
    assert none.height > 50 and none["concept_drawn_by"].null_count() == none.height
    assert got["keep"].filter(pl.col("concepts").list.len() > 0)["concept_drawn_by"].null_count() == 0


def test_the_shipped_balanced_recipe_parses():
    recipe = load_recipe(Path(__file__).resolve().parents[2] / "mixtures" / "balanced.toml")
    assert recipe.balance.per_concept == 50 and all(s.repeat == 1 for s in recipe.sources)
