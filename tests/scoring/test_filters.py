"""Per-filter behaviour on literal captions (length, junk, repetition), and rates on real data."""
from __future__ import annotations

import polars as pl
import pytest

from curate.scoring.filters import FILTERS
from curate.scoring.filters.junk import KINDS, Junk
from curate.scoring.filters.length import Length
from curate.scoring.filters.repetition import Repetition
from curate.scoring.frame import normalise_text


def frame(texts: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"caption": texts}).with_columns(normalise_text())


def junk(text: str) -> tuple[float, str | None]:
    out = Junk().score(frame([text]), "s")
    return out["s"][0], out["junk_kind"][0]


def repetition(text: str) -> float:
    return Repetition().score(frame([text]), "s")["s"][0]


# -- length -------------------------------------------------------------------------------

def test_length_counts_words():
    out = Length().score(frame(["A dog runs.", "two  words", "", "don't stop me now"]), "s")["s"]
    assert out.to_list() == [3.0, 2.0, 0.0, 4.0]


def test_length_counts_two_cjk_characters_as_a_word():
    # 8 Han characters -> 4 words; mixed text adds its Latin words
    assert Length().score(frame(["一个男人骑自行车", "一个男人 riding a bike"]), "s")["s"].to_list() == [4.0, 5.0]


def test_length_in_chars():
    f = Length(unit="chars")
    assert f.score(frame(["abc de"]), "s")["s"][0] == 6.0
    assert f.thresholds() == (10.0, 2000.0)


def test_length_defaults_are_caption_scale():
    # no word maximum: dense human descriptions run to 450 words and are good captions
    assert Length().thresholds() == (3.0, None)


# -- junk: one assertion per kind -----------------------------------------------------------

JUNK_EXAMPLES = {
    "refusal": "I'm sorry, but I can't identify the people in this image.",
    "preamble": "Sure! Here is a detailed description of the photo you sent.",
    "image_may_contain": "Image may contain: 2 people, people smiling, outdoor",
    "placeholder": "untitled",
    "filename": "IMG_20190812_153012.jpg",
    "url": "Visit https://shop.example.org for the full range",
    "html": "<a href=\"/p/123\">Garden chair</a>",
    "stock": "Happy family at the beach - stock photo",
    "call_to_action": "Summer dress collection, click here to see all colours",
    "seo": "wedding dress | bridal gown | lace dress | cheap",
    "codes": "1920x1080 wallpaper 2707",
    "html_entity": "Fish &amp; chips on a table",
    "commerce": "Three bedroom cottage for sale near the harbour",
    "price": "Leather wallet only $19.99",
    "size": "Mountain lake wallpaper 1920x1080",
    "encoding": "CafÃ© terrace at night with lanterns",
}


def test_every_kind_has_an_example():
    assert set(JUNK_EXAMPLES) == set(KINDS)


@pytest.mark.parametrize("kind", list(JUNK_EXAMPLES))
def test_junk_kind(kind):
    score, found = junk(JUNK_EXAMPLES[kind])
    assert found == kind
    assert score > 0


@pytest.mark.parametrize("text", [
    "A man in a red jacket stands next to a wooden fence.",
    "Two children play with a ball on a sandy beach at sunset.",
    "A woman holds a sign that says \"www.example.com\" at a rally.",
    "The number 23 bus waits at a stop on 5th Avenue.",
    "An outdoor stall sells tomatoes, peppers, beans, carrots, zucchini, eggplants and turnips.",
])
def test_clean_captions_are_not_junk(text):
    assert junk(text) == (0.0, None)


def test_soft_kinds_pass_the_default_and_hard_kinds_fail():
    assert junk(JUNK_EXAMPLES["price"])[0] <= Junk.default_max
    assert junk(JUNK_EXAMPLES["stock"])[0] > Junk.default_max
    # two soft signs together fail
    assert junk("Leather wallet $19.99 for sale")[0] > Junk.default_max


def test_quoted_text_in_a_long_description_is_not_junk():
    long = ("A close-up photograph shows a white cotton t-shirt folded on a wooden table, "
            "with blue embroidered letters across the chest that read \"www.example.net\" and a small "
            "red logo below them; the fabric has soft creases and the table shows a dark grain.")
    assert junk(long)[0] <= Junk.default_max


# -- repetition ---------------------------------------------------------------------------

def test_natural_caption_repeats_little():
    assert repetition("A brown dog runs across the grass toward a red ball.") == 0.0
    assert repetition("a man next to a man") == pytest.approx(0.2)


def test_model_loop_scores_high():
    assert repetition("a dog on a couch a dog on a couch a dog on a couch") > Repetition.default_max


def test_keyword_stuffing_scores_high():
    assert repetition("shoes cheap shoes shoes sale buy shoes online") > Repetition.default_max
    assert repetition("cute cute cute cute") > Repetition.default_max


def test_short_captions_score_zero():
    assert repetition("dog dog") == 0.0


# -- shared contract ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["length", "junk", "repetition", "specificity", "language"])
def test_filters_keep_height_and_order(name):
    texts = ["A dog.", "", "一只猫在沙发上睡觉", "x" * 5000, "Stock photo - a cat", "a b c d e f g"]
    f = FILTERS[name]()
    df = frame(texts)
    out = f.score(df, "score__x")
    assert out.height == len(texts)
    rev = f.score(df.reverse(), "score__x").reverse()
    assert out.equals(rev)


@pytest.mark.parametrize("name", list(FILTERS))
def test_filter_is_documented(name):
    cls = FILTERS[name]
    assert cls.__doc__ and "Rule" in cls.__doc__, f"{name} must state its rule"
    assert isinstance(cls.version, int)


# -- real data ------------------------------------------------------------------------------

def _rates(df: pl.DataFrame) -> tuple[float, float]:
    f = frame(df["caption"].to_list())
    j = Junk().score(f, "s")["s"]
    r = Repetition().score(f, "s")["s"]
    return float((j > Junk.default_max).mean()), float((r > Repetition.default_max).mean())


def test_human_captions_are_rarely_junk(read_data):
    junk_rate, rep_rate = _rates(read_data("a_", ["caption"]))
    assert junk_rate < 0.002
    assert rep_rate < 0.002


def test_web_alt_text_has_far_more_junk_than_human_captions(read_data):
    web, _ = _rates(read_data("c_laion", ["caption"]))
    human, _ = _rates(read_data("a_", ["caption"]))
    assert web > 0.05
    assert web > 20 * max(human, 1e-4)


def test_long_model_captions_keep_their_quoted_text(read_data):
    junk_rate, rep_rate = _rates(read_data("d_", ["caption"]))
    assert junk_rate < 0.01
    assert rep_rate < 0.02  # a few model outputs really are stuck in a loop


def test_junk_screen_loses_nothing_on_real_data(read_data):
    from curate.scoring.filters.junk import evaluate

    df = pl.concat([read_data(p, ["caption"]) for p in ("a_", "c_", "d_", "b_")])
    f = frame(df["caption"].to_list())
    screened = Junk().score(f, "s")
    full = evaluate(f.select(pl.col("_text").str.to_lowercase().alias("t")).with_row_index("i"), "s")
    assert screened["s"].equals(full["s"].fill_null(0.0))
    assert screened["junk_kind"].equals(full["junk_kind"])


@pytest.mark.parametrize("kind", list(JUNK_EXAMPLES))
def test_junk_screen_lets_every_kind_through(kind):
    from curate.scoring.filters.junk import screen

    text = JUNK_EXAMPLES[kind].lower()
    assert pl.select(screen(pl.lit(text))).item()
