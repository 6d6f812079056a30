"""Invariants: same input, same output (to the byte); a caption's scores do not depend on
the order or company it is scored in; a stricter threshold never keeps more; one worker or
two give the same parts."""
from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, assume, given, settings
from helpers import ok
from hypothesis import strategies as st

from curate.scoring.chain import Chain, load_chain
from curate.scoring.decision import decide, is_empty_caption
from curate.scoring.frame import normalise_text, normalised, score_frame

CAPTIONS = [
    "A brown dog runs across a green field with a red ball in its mouth.",
    "Two children in yellow raincoats jump into a puddle on a cobbled street.",
    "A woman in a blue dress sits on a wooden bench reading a newspaper.",
    "nice photo",
    "IMG_4821.jpg",
    "shoes, cheap shoes, shoes sale, buy shoes, shoes online, best shoes, shoes",
    "",
    None,
    "Ein alter Mann mit Hut füttert Tauben auf einem sonnigen Platz.",
    "Un chat noir dort sur le rebord d'une fenêtre ensoleillée.",
    "一个男人在雨中骑着红色的自行车",
    "A red double-decker bus waits at a stop beside a stone church.",
    "Stock Photo - happy business team in a modern office",
    "a cat a cat a cat a cat a cat a cat a cat a cat",
    "A chef in a white apron slices vegetables on a steel counter.",
    'A shop sign that reads "OPEN 24 HOURS" above a glass door.',
    "Three horses graze in a fenced meadow below snowy mountains.",
]

DEFAULT = load_chain("default")


def parts(run: Path) -> list[Path]:
    return sorted((run / "scores").glob("part-*.parquet"))


def scores(run: Path) -> pl.DataFrame:
    return pl.read_parquet(run / "scores" / "part-*.parquet").sort("source", "row")


def score_columns(df: pl.DataFrame) -> list[str]:
    return [c for c in df.columns if c.startswith("score__")] + ["lang", "junk_kind", "keep", "reason"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """2,500 rows (three parts at --batch-rows 1000): the captions above and variants."""
    d = tmp_path_factory.mktemp("corpus")
    rng = random.Random(3)
    caps = []
    for i in range(2500):
        c = CAPTIONS[i % len(CAPTIONS)]
        caps.append(None if c is None else f"{c} {rng.choice(['', 'at dusk', 'near a lake', str(i)])}".strip())
    p = d / "corpus.parquet"
    pl.DataFrame({"caption": caps}, schema={"caption": pl.String}).write_parquet(p)
    return p


# -- determinism -----------------------------------------------------------------------------


def test_same_input_same_output_byte_for_byte(corpus, tmp_path):
    ok("score", corpus, "--out", tmp_path / "a", "--batch-rows", "1000")
    ok("score", corpus, "--out", tmp_path / "b", "--batch-rows", "1000")
    pa_, pb = parts(tmp_path / "a"), parts(tmp_path / "b")
    assert [p.name for p in pa_] == [p.name for p in pb] and len(pa_) == 3
    for x, y in zip(pa_, pb):
        assert x.read_bytes() == y.read_bytes(), x.name
    ja, jb = (json.loads((tmp_path / r / "run.json").read_text()) for r in ("a", "b"))
    for volatile in ("timings", "created"):
        ja.pop(volatile), jb.pop(volatile)
    ja["decisions"][0].pop("seconds", None), jb["decisions"][0].pop("seconds", None)
    assert ja == jb


def test_one_worker_or_two_give_the_same_parts(corpus, tmp_path):
    ok("score", corpus, "--out", tmp_path / "one", "--batch-rows", "1000", "--workers", "1")
    ok("score", corpus, "--out", tmp_path / "two", "--batch-rows", "1000", "--workers", "2")
    assert json.loads((tmp_path / "two" / "run.json").read_text())["workers"] == 2
    p1, p2 = parts(tmp_path / "one"), parts(tmp_path / "two")
    assert [p.name for p in p1] == [p.name for p in p2] and len(p1) == 3
    assert scores(tmp_path / "one").equals(scores(tmp_path / "two"))
    for x, y in zip(p1, p2):
        assert x.read_bytes() == y.read_bytes(), x.name


def test_row_order_does_not_change_a_rows_scores_in_a_run(corpus, tmp_path):
    src = pl.read_parquet(corpus).with_row_index("orig")
    src.write_parquet(tmp_path / "ordered.parquet")
    shuffled = tmp_path / "shuffled.parquet"
    src.sample(fraction=1.0, shuffle=True, seed=11).write_parquet(shuffled)
    ok("score", tmp_path / "ordered.parquet", "--out", tmp_path / "a", "--carry", "orig", "--batch-rows", "1000")
    ok("score", shuffled, "--out", tmp_path / "b", "--carry", "orig", "--batch-rows", "1000")
    a = scores(tmp_path / "a").sort("orig")
    b = scores(tmp_path / "b").sort("orig")
    cols = score_columns(a)
    assert a.select("caption", *cols).equals(b.select("caption", *cols))


# -- a caption's scores depend on the caption alone ------------------------------------------

caption_st = st.one_of(
    st.sampled_from(CAPTIONS),
    st.text(max_size=60),
    st.lists(st.sampled_from("a the red dog sits on wooden bench two cats near lake ! , . \n".split(" ")),
             max_size=25).map(" ".join),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(caps=st.lists(caption_st, min_size=1, max_size=25), seed=st.integers(0, 2**32 - 1))
def test_scores_do_not_depend_on_order_or_company(caps, seed):
    frame = pl.DataFrame({"caption": caps}, schema={"caption": pl.String})
    base = score_frame(frame, DEFAULT)
    cols = score_columns(base)
    order = list(range(len(caps)))
    random.Random(seed).shuffle(order)
    shuffled = score_frame(frame[order], DEFAULT)
    back = shuffled.with_columns(pl.Series("_i", order)).sort("_i").drop("_i")
    assert back.select(cols).equals(base.select(cols))
    alone = score_frame(frame[order[:1]], DEFAULT)
    assert alone.select(cols).equals(base[order[:1]].select(cols))


ws_st = st.lists(
    st.one_of(st.sampled_from([" ", "  ", "\t", "\n", "\r\n", "\u00a0", "\u2028", "\u200b", "\x00", "\x7f", "\ufeff"]),
              st.text(max_size=8)),
    max_size=12,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(caps=st.lists(st.one_of(st.none(), st.text(max_size=40), ws_st), min_size=1, max_size=30))
def test_fast_normalisation_and_emptiness_match_their_reference(caps):
    frame = pl.DataFrame({"caption": caps}, schema={"caption": pl.String})
    reference = frame.select(normalise_text()).to_series()
    assert normalised(frame["caption"]).to_list() == reference.to_list()
    assert frame.select(is_empty_caption()).to_series().to_list() == (reference == "").to_list()


# -- a stricter threshold never keeps more ---------------------------------------------------


@pytest.fixture(scope="module")
def scored() -> pl.DataFrame:
    frame = pl.DataFrame({"caption": CAPTIONS * 3}, schema={"caption": pl.String})
    return score_frame(frame, DEFAULT).drop("keep", "reason")


def _chain_with(bounds: dict[str, tuple[float | None, float | None]]) -> Chain:
    """The default chain with other thresholds (None: no bound on that side)."""
    steps = [replace(s, min=bounds[s.id][0], max=bounds[s.id][1]) for s in DEFAULT.steps]
    return replace(DEFAULT, steps=steps)


bound = st.one_of(st.none(), st.floats(-5, 200, allow_nan=False))


def interval(data) -> tuple[float | None, float | None]:
    lo, hi = data.draw(bound), data.draw(bound)
    return (hi, lo) if lo is not None and hi is not None and lo > hi else (lo, hi)


def _tighter(a: float | None, b: float | None, pick) -> float | None:
    return a if b is None else b if a is None else pick(a, b)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_stricter_threshold_never_keeps_more(scored, data):
    """Strict thresholds are the loose ones intersected with other random ones."""
    loose, strict = {}, {}
    for step in DEFAULT.steps:
        (lo, hi), (a, b) = interval(data), interval(data)
        slo, shi = _tighter(lo, a, max), _tighter(hi, b, min)
        assume(slo is None or shi is None or slo <= shi)
        loose[step.id], strict[step.id] = (lo, hi), (slo, shi)
    keep_loose = decide(scored, _chain_with(loose))["keep"]
    keep_strict = decide(scored, _chain_with(strict))["keep"]
    assert not (keep_strict & ~keep_loose).any()


def test_a_stricter_chain_keeps_a_subset_through_decide(corpus, tmp_path):
    run = tmp_path / "run"
    ok("score", corpus, "--out", run, "--batch-rows", "1000")
    before = scores(run).select("sample_id", "keep")
    chain = load_chain("default")
    for step in chain.steps:
        if step.id == "specificity":
            step.min = (step.min or 0) + 10
        if step.id == "length":
            step.max = 12.0
    strict = tmp_path / "strict.toml"
    strict.write_text(chain.to_toml())
    ok("decide", run, "--chain", strict)
    after = scores(run).select("sample_id", "keep")
    assert after["sample_id"].to_list() == before["sample_id"].to_list()
    assert not (after["keep"] & ~before["keep"]).any()
    assert after["keep"].sum() < before["keep"].sum()
