"""Chains: validation before any data is read, the one decision rule, and the shipped
chains (including the default chain's keep rate on real human captions)."""
from __future__ import annotations

import math
from pathlib import Path

import polars as pl
import pytest
import tomllib

from curate.errors import CurateError
from curate.scoring.chain import (
    EMPTY,
    load_chain,
    parse_chain,
    resolve_chain_path,
)
from curate.scoring.decision import decide, within
from curate.scoring.filters import FILTERS

FILTERS_DIR = Path(__file__).resolve().parents[2] / "filters"  # the chains a person edits
SHIPPED = sorted(p.stem for p in FILTERS_DIR.glob("*.toml"))


def chain_of(*entries: dict, **top) -> dict:
    return {"name": "t", **top, "filter": list(entries)}


def parse_error(data: dict) -> str:
    with pytest.raises(CurateError) as exc:
        parse_chain(data, "t.toml")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg.startswith("t.toml")
    return msg


# -- the shipped chains ----------------------------------------------------------------------


def test_the_required_chains_ship():
    assert {"default", "english-strict", "multilingual"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_chain_is_valid_and_round_trips(name):
    ch = load_chain(name)
    assert ch.name == name and ch.description and ch.steps
    again = parse_chain(tomllib.loads(ch.to_toml()), "again")
    assert again.to_dict() == ch.to_dict()
    assert again.digest() == ch.digest() and again.scoring_key() == ch.scoring_key()


def test_default_chain_is_used_when_none_is_named():
    assert resolve_chain_path(None) == FILTERS_DIR / "default.toml"
    assert load_chain(None).name == "default"


def test_chain_by_name_or_by_path(tmp_path):
    assert resolve_chain_path("english-strict") == FILTERS_DIR / "english-strict.toml"
    p = tmp_path / "mine.toml"
    p.write_text('[[filter]]\nname = "length"\n')
    ch = load_chain(str(p))
    assert ch.name == "mine" and ch.path == str(p)


def test_unknown_chain_lists_the_shipped_ones():
    with pytest.raises(CurateError) as exc:
        resolve_chain_path("nonesuch")
    for name in SHIPPED:
        assert name in str(exc.value)


# -- validation ------------------------------------------------------------------------------


def test_unknown_filter_lists_every_filter():
    msg = parse_error(chain_of({"name": "lenght"}))
    assert "unknown filter 'lenght'" in msg
    for name in FILTERS:
        assert name in msg


def test_missing_filter_name():
    assert "unknown filter None" in parse_error(chain_of({"min": 3}))


def test_unknown_parameter_lists_valid_parameters():
    msg = parse_error(chain_of({"name": "length", "params": {"units": "chars"}}))
    assert "no parameter 'units'" in msg and "valid parameters: unit" in msg


@pytest.mark.parametrize("value", [3, True, ["words"], None])
def test_bad_parameter_type(value):
    data = chain_of({"name": "length", "params": {"unit": value}})
    if value is None:  # TOML has no null; a dict can still hold one
        data["filter"][0]["params"] = {"unit": None}
    msg = parse_error(data)
    assert "'unit' must be str" in msg


def test_parameter_outside_its_choices_lists_them():
    msg = parse_error(chain_of({"name": "length", "params": {"unit": "lines"}}))
    assert "words, chars" in msg


def test_params_must_be_a_table():
    assert "params must be a table" in parse_error(chain_of({"name": "length", "params": "unit=chars"}))


@pytest.mark.parametrize("key", ["min", "max"])
@pytest.mark.parametrize("value", ["3", True, math.nan, [1]])
def test_threshold_must_be_a_number(key, value):
    msg = parse_error(chain_of({"name": "length", key: value}))
    assert f"{key} must be a number" in msg


def test_min_greater_than_max():
    msg = parse_error(chain_of({"name": "length", "min": 5, "max": 2}))
    assert "min 5.0 is greater than max 2.0" in msg


def test_min_greater_than_the_default_max():
    msg = parse_error(chain_of({"name": "length", "min": 5000, "params": {"unit": "chars"}}))
    assert "min 5000.0 is greater than max 2000.0" in msg


def test_min_equal_to_max_is_allowed():
    ch = parse_chain(chain_of({"name": "length", "min": 5, "max": 5}))
    assert (ch.steps[0].min, ch.steps[0].max) == (5.0, 5.0)


def test_unknown_entry_key_lists_valid_keys():
    msg = parse_error(chain_of({"name": "length", "maximum": 3}))
    assert "unknown key 'maximum'" in msg and "min, max, allow, deny, params" in msg


def test_unknown_top_level_key():
    msg = parse_error({"name": "t", "filters": [{"name": "length"}]})
    assert "unknown key 'filters'" in msg and "filter" in msg


@pytest.mark.parametrize("data", [{"name": "t"}, {"filter": []}, {"filter": {"name": "length"}}])
def test_a_chain_needs_filters(data):
    assert "at least one [[filter]]" in parse_error(data)


def test_allow_on_a_filter_without_labels_lists_those_with_labels():
    msg = parse_error(chain_of({"name": "length", "allow": ["en"]}))
    assert "allow needs a filter with a label column" in msg and "language" in msg


def test_allow_must_be_strings():
    msg = parse_error(chain_of({"name": "language", "allow": "en"}))
    assert "allow must be a list of strings" in msg


@pytest.mark.parametrize("values", [["EN"], ["en", "english"], ["en-US"]])
def test_allow_values_that_are_not_language_codes(values):
    msg = parse_error(chain_of({"name": "language", "allow": values}))
    assert "are not language codes" in msg and "en, de, zh" in msg


def test_deny_of_an_unknown_junk_kind_lists_the_kinds():
    msg = parse_error(chain_of({"name": "junk", "deny": ["filname"]}))
    assert "unknown junk kinds ['filname']" in msg and "filename, url, html" in msg


def test_language_codes_of_other_lid_models_and_junk_kinds_are_accepted():
    parse_chain(chain_of({"name": "language", "allow": ["en", "als", "eng_Latn"]},
                         {"name": "junk", "deny": ["url", "price"]}))


def test_duplicate_id_and_reserved_id():
    msg = parse_error(chain_of({"name": "length"}, {"name": "length", "params": {"unit": "chars"}}))
    assert "id 'length' is used twice" in msg
    assert "used twice" in parse_error(chain_of({"name": "length", "id": EMPTY}))


@pytest.mark.parametrize("ident", ["a-b", "a b", "", 3])
def test_bad_id(ident):
    assert "id must be letters, digits and '_'" in parse_error(chain_of({"name": "length", "id": ident}))


def test_two_filters_writing_the_same_label_column():
    msg = parse_error(chain_of({"name": "language"}, {"name": "language", "id": "lang2"}))
    assert "label column" in msg


def test_invalid_toml_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[[filter]\nname = 'length'\n")
    with pytest.raises(CurateError, match="invalid TOML"):
        load_chain(str(p))


def test_defaults_fill_missing_thresholds():
    ch = parse_chain(chain_of({"name": "length"}, {"name": "length", "id": "chars", "params": {"unit": "chars"}}))
    assert [(s.min, s.max) for s in ch.steps] == [(3.0, None), (10.0, 2000.0)]


def test_scoring_key_ignores_thresholds_but_not_params_or_ids():
    base = parse_chain(chain_of({"name": "length", "min": 3}))
    assert parse_chain(chain_of({"name": "length", "min": 7})).scoring_key() == base.scoring_key()
    assert parse_chain(chain_of({"name": "length", "min": 7})).digest() != base.digest()
    assert parse_chain(chain_of({"name": "length", "params": {"unit": "chars"}})).scoring_key() != base.scoring_key()
    assert parse_chain(chain_of({"name": "length", "id": "words"})).scoring_key() != base.scoring_key()


# -- the decision rule -----------------------------------------------------------------------


def test_within_is_inclusive_and_a_missing_score_fails():
    s = pl.DataFrame({"x": [None, 1.0, 2.0, 3.0, 4.0, math.nan]})
    got = s.select(within(pl.col("x"), 2.0, 3.0))["x"].to_list()
    assert got == [False, False, True, True, False, False]
    assert s.select(within(pl.col("x"), None, None))["x"].to_list() == [False, True, True, True, True, True]


def frame(**cols) -> pl.DataFrame:
    return pl.DataFrame(cols)


def test_reason_is_the_first_failing_filter_in_chain_order():
    ch = parse_chain(chain_of(
        {"name": "length", "min": 3, "max": 10},
        {"name": "junk", "max": 0.5},
        {"name": "repetition", "max": 0.3},
    ))
    df = frame(
        caption=["ok", "short", "junky", "both", "rep"],
        score__length=[5.0, 1.0, 5.0, 1.0, 5.0],
        score__junk=[0.0, 0.0, 1.0, 1.0, 0.0],
        score__repetition=[0.0, 0.0, 0.0, 0.9, 0.9],
    )
    out = decide(df, ch)
    assert out["reason"].to_list() == [None, "length", "junk", "length", "repetition"]
    assert out["keep"].to_list() == [True, False, False, False, False]
    # another order, another first reason
    ch2 = parse_chain(chain_of(
        {"name": "repetition", "max": 0.3}, {"name": "junk", "max": 0.5}, {"name": "length", "min": 3, "max": 10},
    ))
    assert decide(df, ch2)["reason"].to_list() == [None, "length", "junk", "repetition", "repetition"]


def test_empty_comes_before_every_filter():
    ch = parse_chain(chain_of({"name": "length", "min": 0}))
    df = frame(caption=[None, "", " \t", "\u200b\n", "a"], score__length=[0.0] * 5)
    assert decide(df, ch)["reason"].to_list() == [EMPTY, EMPTY, EMPTY, EMPTY, None]


def test_allow_and_deny_act_on_the_label():
    ch = parse_chain(chain_of({"name": "language", "min": 0.5, "allow": ["en", "de"]}))
    df = frame(caption=["a"] * 4, lang=["en", "fr", None, "de"], score__language=[0.9, 0.9, 0.9, 0.4])
    assert decide(df, ch)["reason"].to_list() == [None, "language", "language", "language"]
    ch = parse_chain(chain_of({"name": "language", "min": 0.0, "deny": ["fr"]}))
    assert decide(df, ch)["reason"].to_list() == [None, "language", None, None]


def test_decide_needs_every_score_column():
    ch = parse_chain(chain_of({"name": "length"}, {"name": "junk"}))
    with pytest.raises(CurateError, match="score__junk"):
        decide(frame(caption=["a"], score__length=[3.0]), ch)


# -- the default chain on real human captions ------------------------------------------------


def test_default_chain_keeps_at_least_95_percent_of_human_captions(read_data, tmp_path):
    """The a_* files are human captions of COCO, Flickr30k and Flickr8k: good captions."""
    from curate.scoring.runner import ScoreOptions, score

    src = tmp_path / "a.parquet"
    read_data("a_", columns=["caption"]).write_parquet(src)
    run = score([str(src)], tmp_path / "run", load_chain("default"), ScoreOptions())
    rate = run["kept"] / run["rows"]
    breakdown = ", ".join(f"{k} {v}" for k, v in run["dropped"].items())
    print(f"default chain keeps {rate:.2%} of {run['rows']} a_* captions; dropped: {breakdown}")
    assert run["rows"] > 8000
    assert rate >= 0.95, f"kept {rate:.2%}; dropped: {breakdown}"
    # no filter alone drops more than 2% of good human captions
    for reason, n in run["dropped"].items():
        assert n / run["rows"] <= 0.02, (reason, n)


def test_none_switches_a_default_bound_off_and_survives_a_round_trip(tmp_path):
    from curate.scoring.chain import load_chain

    p = tmp_path / "c.toml"
    p.write_text('[[filter]]\nname = "specificity"\nmin = "none"\n\n[[filter]]\nname = "length"\nmax = "none"\n')
    chain = load_chain(str(p))
    spec, length = chain.steps
    assert spec.min is None and length.max is None and length.min == 3.0
    again = tmp_path / "again.toml"
    again.write_text(chain.to_toml())
    assert load_chain(str(again)).to_dict() == chain.to_dict()


def test_default_dedup_is_the_default_chain_then_neardup():
    """`curate decide RUN --chain default-dedup` must apply to a run scored with the default
    chain: the same cleaning and filters, then neardup."""
    a, b = load_chain("default").to_dict(), load_chain("default-dedup").to_dict()
    assert b["clean"] == a["clean"]
    assert b["filter"][:-1] == a["filter"] and b["filter"][-1]["name"] == "neardup"
