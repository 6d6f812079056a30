"""The clean stage: transforms, their order, the properties they keep on real captions
(idempotent, never empty, byte for byte where nothing needs repair, mojibake restored),
the model-caption signals, and caption_clean through scores, run.json and the manifest."""
from __future__ import annotations

import json
import unicodedata

import polars as pl
import pytest

from curate.clean import TRANSFORMS, clean_captions, parse_clean
from curate.clean.signals import HEDGES, MARKDOWN_LEFT, TRUNCATED, signals
from curate.clean.text import MOJIBAKE_SCREEN, ftfy_config
from curate.errors import CurateError
from curate.scoring.chain import load_chain, parse_chain
from curate.scoring.frame import score_frame

SAFE = ["unicode", "html", "whitespace"]
ALL = ["unicode", "html", "urls", "boilerplate", "markdown", "preamble", "whitespace"]
FILES = ["a_", "b_", "c_", "d_", "e_"]


def run(texts, names):
    clean, ops = clean_captions(pl.Series("caption", texts, pl.String), [TRANSFORMS[n]() for n in names])
    return clean.to_list(), ops.to_list()


@pytest.fixture(scope="module")
def captions(read_data) -> pl.Series:
    return pl.concat([read_data(p, ["caption"]) for p in FILES])["caption"].drop_nulls()


# -- each transform on tiny literal examples (my own text) --------------------------------

@pytest.mark.parametrize("name, before, after", [
    ("unicode", "Stra\u00c3\u0178e in M\u00c3\u00bcnchen", "Straße in München"),
    ("unicode", "cafe\u0301 on the corner", "café on the corner"),
    ("html", "Tea &amp; cake &#34;fresh&#34; (Photo&#47; A. Baker)", 'Tea & cake "fresh" (Photo/ A. Baker)'),
    ("html", "Review: <em>Rocket Race</em>", "Review: Rocket Race"),
    ("html", "<div class='x'><span>A boy kicks a ball</span></div>", "A boy kicks a ball"),
    ("html", "&amp;quot;twice&amp;quot; escaped", '"twice" escaped'),
    ("urls", "Harbour at dawn https://example.org/x/1", "Harbour at dawn"),
    ("boilerplate", "Stock Photo - Goats on a hill", "Goats on a hill"),
    ("boilerplate", "Goats on a hill | Shutterstock #9876543", "Goats on a hill"),
    ("boilerplate", "Free stock photo of a goat", "A goat"),
    ("preamble", "The image shows a goat on a hill.", "A goat on a hill."),
    ("preamble", "In this picture, we see two kites.", "Two kites."),
    ("preamble", "In the image, there is a red door.", "A red door."),
    ("preamble", "The image is a close-up of a shell.", "A close-up of a shell."),
    ("preamble", "The image shows an iPad on a desk.", "An iPad on a desk."),
    ("preamble", "the image depicts a lake", "a lake"),
    ("markdown", "A desk.\n\n**Items:**\n- A lamp\n- Two pens", "A desk. Items: A lamp. Two pens"),
    ("markdown", "## View\n1. **Sky:** grey\n2. **Sea:** calm", "View. Sky: grey. Sea: calm"),
    ("whitespace", "  Two  goats\n\non a\thill ", "Two goats on a hill"),
    ("whitespace", "soft\u00adware and a no\u00a0break", "software and a no break"),
])
def test_each_transform_before_after(name, before, after):
    clean, ops = run([before], [name])
    assert clean == [after] and ops == [[name]]


@pytest.mark.parametrize("name, text", [
    ("html", "Fish & chips at 5 < 6"), ("boilerplate", "Homemade chicken stock"),
    ("preamble", "The image shows that the bridge is closed."), ("preamble", "The image links are broken."),
    ("markdown", "A dog - brown, small - on a mat"), ("unicode", "Číšník nese polévku"),
    ("whitespace", "Persian joiner \u200c stays"[:-6] + "stays"), ("urls", "A sign for Example Street"),
])
def test_what_is_not_broken_is_left_alone(name, text):
    assert run([text], [name]) == ([text], [[]])


def test_a_caption_is_never_emptied_and_nulls_stay_null():
    clean, ops = run(["<br/>", "https://example.org/only", "Stock photo", "The image shows", None, ""], ALL)
    assert clean[:4] == ["<br/>", "https://example.org/only", "Stock photo", "The image shows"]
    assert clean[4] is None and clean[5] == "" and ops[4] == []


def test_ops_name_every_transform_that_changed_the_row_in_chain_order():
    clean, ops = run(["**The image shows** a goat in  snow"], ALL)
    assert clean == ["A goat in snow"] and ops == [["markdown", "preamble", "whitespace"]]


# -- properties on real captions ------------------------------------------------------------

@pytest.mark.parametrize("names", [SAFE, ALL], ids=["default", "all"])
def test_cleaning_is_idempotent_and_never_empties_real_captions(captions, names):
    clean, _ = clean_captions(captions, [TRANSFORMS[n]() for n in names])
    again, ops = clean_captions(clean, [TRANSFORMS[n]() for n in names])
    assert again.equals(clean)
    assert ops.list.len().sum() == 0
    had = captions.str.contains(r"\p{L}")
    assert not (had & ~clean.str.contains(r"\p{L}")).any()


def test_captions_with_nothing_to_repair_are_byte_for_byte_unchanged(captions):
    """Nothing to repair, by a test independent of the transforms' screens: printable,
    single-spaced, stripped, NFC, no & or < (the default chain's three transforms)."""
    texts = captions.to_list()
    plain = [t.isprintable() and "  " not in t and t == t.strip() and "&" not in t and "<" not in t
             and unicodedata.is_normalized("NFC", t) for t in texts]
    mask = pl.Series(plain)
    assert mask.mean() > 0.9
    clean, ops = clean_captions(captions.filter(mask), [TRANSFORMS[n]() for n in SAFE])
    assert clean.to_list() == captions.filter(mask).to_list()
    assert ops.list.len().sum() == 0


def test_the_mojibake_screen_selects_every_row_ftfy_changes(captions):
    import ftfy

    accented = captions.filter(captions.str.contains(r"[À-ž]")).head(4000)
    broken = pl.Series([t.encode("utf-8").decode("latin-1") for t in accented.to_list()])
    both = pl.concat([captions.filter(captions.str.len_chars() != captions.str.len_bytes()), broken])
    cfg = ftfy_config()
    fixed = pl.Series([ftfy.fix_text(t, cfg) for t in both.to_list()])
    assert not ((fixed != both) & ~both.str.contains(MOJIBAKE_SCREEN)).any()


@pytest.mark.parametrize("codec", ["latin-1", "cp1252"])
def test_mojibake_made_from_real_accented_captions_is_restored(read_data, codec):
    df = read_data("b_multi30k", ["caption", "group_id"]).filter(pl.col("caption").str.contains(r"[À-ž]"))
    originals, broken = [], []
    for t in df["caption"].to_list():
        try:
            broken.append(t.encode("utf-8").decode(codec))
            originals.append(t)
        except UnicodeDecodeError:  # cp1252 leaves five bytes undefined
            pass
    clean, ops = run(broken, ["unicode"])
    restored = sum(a == b for a, b in zip(clean, originals)) / len(originals)
    print(f"{codec}: {restored:.4f} of {len(originals)} mojibake captions restored exactly")
    assert len(originals) > 1000 and restored >= 0.98


# -- model-caption signals --------------------------------------------------------------------

def test_signals_on_literal_examples():
    s = pl.DataFrame(signals(pl.Series(["A goat. It stands on the", "a goat on a hill", "It appears to be a goat, "
                                        "possibly young.", "- a goat\n- a hill", None])))
    assert s[TRUNCATED].to_list() == [True, False, False, False, None]
    assert s[HEDGES].to_list() == [0, 0, 2, 0, None]
    assert s[MARKDOWN_LEFT].to_list() == [False, False, False, True, None]


def test_signals_separate_model_captions_from_human_ones(read_data):
    model = read_data("d_comprecap", ["caption"])["caption"]
    human = read_data("a_coco", ["caption"])["caption"]
    m, h = pl.DataFrame(signals(model)), pl.DataFrame(signals(human))
    assert (m[HEDGES] > 0).mean() > 0.15 > 0.02 > (h[HEDGES] > 0).mean()
    assert h[TRUNCATED].mean() < 0.01  # human captions without a full stop are not "cut off"


# -- chains, scores, run.json, the manifest ---------------------------------------------------------

@pytest.mark.parametrize("entry, msg", [
    ({"name": "nope"}, "valid transforms: unicode"), ({"name": "html", "x": 1}, "valid keys"),
    ({"name": "html", "params": {"a": 1}}, "no parameter 'a'"), ({"name": "html", "version": 99}, "re-score"),
])
def test_clean_tables_are_validated_in_one_line(entry, msg):
    with pytest.raises(CurateError, match=msg):
        parse_chain({"clean": [entry], "filter": [{"name": "length"}]}, "c.toml")
    with pytest.raises(CurateError, match="twice"):
        parse_clean([{"name": "html"}, {"name": "html"}], "c.toml")


def test_packaged_chains_clean_and_round_trip():
    default, synthetic = load_chain("default"), load_chain("synthetic")
    # the rubric's fix rows (stock affixes, credits, file names, model openers) are cleaned by default
    assert [t.name for t in default.clean] == ["unicode", "html", "urls", "boilerplate", "affixes", "preamble",
                                               "whitespace"]
    assert [t.name for t in synthetic.clean] == ["unicode", "html", "urls", "markdown", "preamble", "whitespace"]
    import tomllib

    again = parse_chain(tomllib.loads(synthetic.to_toml()), "again")
    assert again.to_dict() == synthetic.to_dict() and again.scoring_key() == synthetic.scoring_key()
    assert default.scoring_key() != parse_chain({**tomllib.loads(default.to_toml()), "clean": []}, "x").scoring_key()


def test_scores_keep_the_caption_as_read_and_filters_score_the_clean_text():
    raw = ["A goat &amp; a lamb graze on a green hill", "The image shows a goat on a green hill."]
    out = score_frame(pl.DataFrame({"caption": raw}), load_chain("default"))
    assert out["caption"].to_list() == raw
    assert out["caption_clean"].to_list() == ["A goat & a lamb graze on a green hill", "A goat on a green hill."]
    assert out["clean_ops"].to_list() == [["html"], ["preamble"]]
    assert out["junk_kind"].to_list() == [None, None]  # the entity is gone before junk looks
    syn = score_frame(pl.DataFrame({"caption": raw}), load_chain("synthetic"))
    assert syn["caption_clean"][1] == "A goat on a green hill."


def test_run_json_and_manifest_carry_the_cleaning(tmp_path, data_dir):
    from helpers import write_recipe

    from curate.mix.build import build_mixture
    from curate.scoring.runner import score

    score([str(data_dir / "c_laion_web_alttext_sample.parquet")], tmp_path / "web", load_chain("default"))
    info = json.loads((tmp_path / "web" / "run.json").read_text())
    assert info["cleaning"]["per_transform"]["html"] > 10
    assert set(info["model_signals"]) >= {"truncated", "hedging", "markdown", "openings", "template"}
    recipe = write_recipe(tmp_path / "r.toml", {"web": tmp_path / "web"}, {"web": {"share": 1.0}}, size=500)
    build_mixture(recipe, tmp_path / "mix")
    m = pl.read_parquet(tmp_path / "mix" / "manifest.parquet")
    scores = pl.read_parquet(tmp_path / "web" / "scores" / "*.parquet").select("sample_id", "caption_clean")
    joined = m.select("sample_id", "caption_clean").join(scores, on="sample_id", suffix="_run")
    assert joined.height == m.height and (joined["caption_clean"] == joined["caption_clean_run"]).all()


def test_opening_words_equal_those_of_every_word_on_real_and_cut_captions(read_data):
    """The openings statistic searches a caption's first characters for its first words; on
    every real caption, and on captions whose words straddle the cut, it gives what the
    search of the whole caption gives."""
    from curate.db import connect
    from curate.scoring.stats import OPENING_PREFIX, OPENING_WORD, OPENING_WORDS, openings_sql

    real = pl.concat([read_data(p, ["caption"]) for p in ("a_", "b_", "c_", "d_")])["caption"].drop_nulls()
    n = OPENING_PREFIX
    made = ["x" * (n - 2) + " ab cd ef", "x" * (n - 1) + "y z w", "12 " * n + "one two three", "a " * (n // 2) + "b",
            "ab cd " + "e" * n + " fg", "— " * n + "Mot", "one two" + " " * n + "three four", "l'été est là mais",
            "ÉCOLE d'été " + "n" * n, ""]
    con = connect(threads=1)
    df = pl.DataFrame({"caption_clean": pl.concat([real, pl.Series(made)])}).with_row_index("i")
    con.register("captions", df.to_arrow())
    fast = con.execute(f"SELECT o FROM ({openings_sql('captions')})").fetchall()
    whole = con.execute(
        f"SELECT lower(array_to_string(list_slice(regexp_extract_all(caption_clean, {OPENING_WORD}), 1, "
        f"{OPENING_WORDS}), ' ')) FROM captions").fetchall()
    assert len(fast) == df.height > 30_000
    assert fast == whole
    assert (df["caption_clean"].str.len_chars() > n).sum() > 5_000  # many are longer than the cut


def test_affixes_cut_exactly_the_closer_that_a_search_for_closers_finds(captions):
    """The closer is found from the start (a fast search); it must be the match a plain
    search for CLOSERS finds, also after a line break and with several closers."""
    from curate.clean.affixes import CLOSERS, OPENERS, TAIL_CHARS, Affixes

    real = captions.head(3000)
    ends = [" Photo by Jane Doe", "\n(AP Photo/J. Smith)", " - 14600135", " [OC]", " © 2014 Jane Doe.",
            " | Price: $12\nfree", " on Flickr", " photo by Jane Doe on example.com", "\nTaken in May. Photo by Jane Doe"]
    text = pl.concat([real] + [real.head(200) + e for e in ends])
    tail = text.str.tail(TAIL_CHARS)
    cut = tail.str.len_chars() - tail.str.replace(CLOSERS, "").str.len_chars()
    expect = pl.DataFrame({"t": text, "c": cut}).select(pl.col("t").str.head(pl.col("t").str.len_chars() - pl.col("c")))
    fixed = Affixes._fix(text)
    # rows the opener, extension, capital and emptying rules leave alone are the plain cut
    plain = ((cut > 0) & ~text.str.contains(r"(?i)\.(?:jpe?g|png|gif|webp|bmp|tiff?|heic|svg|eps)\b")
             & ~text.str.contains(f"(?i){OPENERS}"))
    assert plain.sum() > 1000
    got = fixed.filter(plain).str.strip_chars(" ,;|–—-").str.to_lowercase()
    want = expect.to_series().filter(plain).str.strip_chars(" ,;|–—-").str.to_lowercase()
    assert got.to_list() == want.to_list()
