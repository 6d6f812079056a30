"""The default chain's keep/drop against careful labels, on images nothing was tuned on.

Labels: ``../shared/data/labels/caption_worth_3500.parquet`` (rubric ``labels/RUBRIC.md``),
split by image (crc32 of ``group_id``): the ``judgement`` model and every threshold come
from the even half; the figures below are asserted on the odd (held-out) half, a little
below what ``benchmarks/validate_judgement.py`` measured (in the comments).
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.clean import TRANSFORMS
from curate.scoring.chain import load_chain
from curate.scoring.filters import judgement as J
from curate.scoring.filters.language import Language
from curate.scoring.frame import score_frame

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def _script(name: str):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def held_out(data_dir):
    df, per_file = _script("validate_judgement").evaluate()
    return df, dict(zip(per_file["file"], per_file["agreement"])), _script("validate_judgement").targets(df)


def test_held_out_agreement_with_the_labels(held_out):
    df, per_file, targets = held_out
    got = {name: value for name, value, _ in targets}
    assert got["agreement, all"] >= 0.83  # measured 0.848 (judgement model 1: 0.836; before it: 0.752)
    assert got["agreement, web alt-text (c_*)"] >= 0.73  # measured 0.754 (model 1: 0.739; before: 0.612)
    assert got["agreement, c_laion"] >= 0.71  # measured 0.736 (model 1: 0.733; before: 0.554)
    assert per_file["c_cc3m_validation"] >= 0.80  # measured 0.834 (model 1: 0.817; before: 0.724)
    assert per_file["c_redcaps_sample"] >= 0.67  # measured 0.703 (model 1: 0.673; before: 0.578)


def test_held_out_good_captions_are_kept(held_out):
    df, per_file, targets = held_out
    got = {name: value for name, value, _ in targets}
    assert got["human captions kept (a_*)"] >= 0.99  # measured 0.996 (model 1: 0.991)
    assert got["long descriptions kept (d_*)"] >= 0.97  # measured 1.000 (previous: 0.980)
    for f in ("b_coco_cn_ext_zh", "b_flickr8k_cn_zh", "b_multi30k_task1_en_de_fr_cs"):
        assert per_file[f] >= 0.93, f  # measured 1.0, 1.0, 0.99 (flickr8k_cn before the judgement: 0.595)


def test_held_out_fix_rows_are_cleaned(held_out):
    df, _, targets = held_out
    got = {name: value for name, value, _ in targets}
    assert got["fix rows cleaned"] >= 0.83  # measured 0.854 (model 1's cleaning: 0.755; before it: 0.021)
    model = df.filter(pl.col("file") == "d_comprecap_mllm_long")
    assert model["cleaned"].all()  # every "The image shows" opener removed


def test_shipped_weights_are_what_the_labels_give(data_dir):
    """A cheap rebuild: the final fit with the recorded strength on the same labels gives
    the shipped file byte for byte (the full rebuild, with the cross-validation that chose
    the strength and the threshold, is ``benchmarks/train_judgement.py --check``)."""
    train = _script("train_judgement")
    meta = json.loads((J.MODELS / J.META).read_text())
    tune = train.training_rows()
    assert train.labels_sha256(tune) == meta["training"]["labels_sha256"]
    fs = J.FeatureSet.of(meta)
    assert train.weights_text(tune, meta["c"], fs) == (J.MODELS / J.WEIGHTS).read_text(encoding="utf-8")
    assert (tune["half"] == 0).all()


def test_feature_keys_are_the_features(read_data):
    """Scoring by 64-bit keys gives what the feature strings of training give."""
    text = read_data("c_laion", ["caption"])["caption"].head(500).cast(pl.String)
    text = pl.concat([text, pl.Series(["", "a", "Ärger über 2 Äpfel!!", "x " * 400])])
    tab = pl.read_csv(J.MODELS / J.WEIGHTS, separator="\t", quote_char=None, schema={"f": pl.String, "w": pl.Float64})
    bias, weights = float(tab["w"][0]), tab.slice(1)
    fs = J.FeatureSet.of(json.loads((J.MODELS / J.META).read_text()))
    f = J.features(text, fs)
    z = f.join(weights, on="f", how="left").group_by("i").agg(pl.col("w").fill_null(0.0).sum(), pl.len().alias("k"))
    ref = np.full(len(text), bias)
    ref[z["i"].to_numpy()] += (z["w"] / z["k"].sqrt()).to_numpy()
    got = J.predict(text, J.key_table(weights), bias, fs)
    assert np.abs(got - 1 / (1 + np.exp(-ref))).max() < 1e-12


def test_long_human_descriptions_are_kept(read_data):
    d = read_data("d_imageinwords", ["caption", "origin"]).filter(pl.col("origin") == "human")
    words = d["caption"].str.count_matches(r"\S+")
    long = d.filter(words >= 300)
    assert long.height >= 5
    out = score_frame(long.select("caption"), load_chain("default"))
    assert out["keep"].all(), out.filter(~pl.col("keep"))["reason"].to_list()


def test_explain_shows_a_drop_by_the_judgement(read_data, tmp_path):
    from curate.audit.explain import explain
    from curate.scoring.runner import ScoreOptions, score

    web = read_data("c_laion", ["caption"]).head(300)
    web.write_parquet(tmp_path / "web.parquet")
    run = tmp_path / "run"
    score([str(tmp_path / "web.parquet")], run, load_chain("default"), ScoreOptions())
    rows = pl.read_parquet(run / "scores" / "*.parquet")
    dropped = rows.filter(pl.col("reason") == "judgement")
    assert dropped.height >= 20
    e = explain(dropped["sample_id"][0], run=run)
    entry = next(s for s in e["scores"] if s["filter"] == "judgement")
    assert entry["pass"] is False and entry["name"] == "judgement@2"
    assert entry["score"] < entry["min"] == json.loads((J.MODELS / J.META).read_text())["threshold"]


def test_short_product_names_keep_their_caption():
    out = Language().score(pl.DataFrame({"_text": ["2006 Dodge Charger SE RWD, exterior", "Clown Shoes Flip Flops",
                                                   "12345 678", "Ein Hund läuft über die Wiese"]}), "s")
    assert out["lang"].to_list() == ["und", "en", "und", "de"]  # lid.176 said "pa" for the first
    assert out["s"][0] >= 0.8 and out["s"][2] == 0.0  # a row of numbers is still no caption
    kept = score_frame(pl.DataFrame({"caption": ["Picture of 2006 Dodge Charger SE RWD, exterior"]}),
                       load_chain("default"))
    assert kept["caption_clean"][0] == "2006 Dodge Charger SE RWD, exterior" and kept["reason"][0] != "language"


def test_short_caption_language_id_per_language(data_dir):
    lid = {r["lang"]: r for r in _script("validate_judgement").short_lid().iter_rows(named=True)}
    for lang in ("en", "de", "cs", "fr", "zh", "ar", "uk"):
        assert lid[lang]["wrong"] <= 0.05, lid[lang]  # measured 0 to 0.004, cs 0.041
        assert lid[lang]["correct"] >= 0.93, lid[lang]  # measured 0.951 (cs) to 1.0


@pytest.mark.parametrize("before,after", [
    ("Image may contain: a dog on a beach", "A dog on a beach"),
    ("itap of a frozen lake at dawn", "a frozen lake at dawn"),
    ("Picture of 2006 Dodge Charger SE RWD, exterior", "2006 Dodge Charger SE RWD, exterior"),
    ("Fishing boats in the harbour (AP Photo/Jane Doe)", "Fishing boats in the harbour"),
    ("Sunset over the lake. Photo by John Smith", "Sunset over the lake."),
    ("Styling machine.png", "Styling machine"),
    ("IMG_4821.jpg", "IMG_4821.jpg"),
    ("Cogs working in the head - 14600135", "Cogs working in the head"),
    ("fall day, park day. {oc}", "fall day, park day."),
    ("A photo booth at a wedding", "A photo booth at a wedding"),
    ("A photo by the river of a man fishing", "A photo by the river of a man fishing"),
    ("Stock", "Stock"),
    ("View Image 2 of Red Canvas Tote Bag", "Red Canvas Tote Bag"),
    ("Click to view larger image of Blue Glass Vase", "Blue Glass Vase"),
    ("Display product reviews for Oak Garden Bench", "Oak Garden Bench"),
    ("9f3b2c1d0e7a Yellow Rain Boots", "Yellow Rain Boots"),
    ("Lighthouse at dusk watercolor - examplejournal.com", "Lighthouse at dusk watercolor"),
    ('"Brass ""Anchor"" Door Knocker"', 'Brass "Anchor" Door Knocker'),
    ("Walnut Desk Lamp view 3", "Walnut Desk Lamp"),
    ("Mountain Lake Poster 24x36", "Mountain Lake Poster"),
    ("Leather Hiking Boots RRP £120", "Leather Hiking Boots"),
    ("Steel Jump Rings (100-Pcs)", "Steel Jump Rings"),
    ("Round Pendant Lamp Brushed Nickel PL-20345", "Round Pendant Lamp Brushed Nickel"),
    ("old_red_barn_in_the_snow", "old red barn in the snow"),
    ("Harbour at night — Stok fotoğraf", "Harbour at night"),
    ("A man in a well-known t-shirt", "A man in a well-known t-shirt"),
    ("The B-52 bomber over the desert", "The B-52 bomber over the desert"),
    ("just got this bike for $45", "just got this bike for $45"),
    ("Clip art preview 1", "Clip art preview 1"),
    ("Apollo 11 launch in 1969", "Apollo 11 launch in 1969"),
])
def test_affixes(before, after):
    text = pl.Series([before])
    for name in ("boilerplate", "affixes"):  # the default chain's order
        text = TRANSFORMS[name]().apply(text)
    assert text[0] == after


def test_label_files_hold_tune_half_labels_only(data_dir):
    """Every extra label (benchmarks/labels/caption_worth_*.csv) names a caption of the
    data by file and row, of an image in the tune half, with a short reason that does not
    copy the caption (``benchmarks/add_labels.py``'s checks)."""
    add = _script("add_labels")
    data = _script("judgement_data")
    assert len(data.EXTRAS) >= 2
    labels = add.read_inputs(list(data.EXTRAS))
    assert labels.height >= 3000
    assert add.problems(labels).height == 0
    held = labels.head(3).with_columns(file=pl.lit("c_laion_web_alttext_sample"), row=pl.Series([0, 1, 2]))
    assert (add.problems(held)["problem"] == "held-out image").sum() == 2  # rows 0 and 1 are held out


def test_model_choice_follows_the_one_standard_error_rule():
    """The shipped model is the cheapest candidate within one standard error of the best
    cross-validated chain agreement on the tune half (``train_judgement.choose``)."""
    train = _script("train_judgement")
    meta = json.loads((J.MODELS / J.META).read_text())
    cv = meta["cv_chain_agreement"]
    assert len(cv) == len(train.FEATURE_SETS) * len(train.C_GRID)
    fs = J.FeatureSet.of(meta)
    chosen = cv[f"{' '.join(fs.kinds)} / {fs.max_tokens} tokens / C={meta['c']}"]
    top = max(cv.values())
    assert top - chosen <= np.sqrt(top * (1 - top) / meta["training"]["rows"])
    assert "s" not in fs.kinds and meta["features"] < 9590  # fewer features than model 1


def test_two_word_captions_are_judged_not_dropped_by_length(data_dir):
    chain = load_chain(str(BENCH.parent / "filters" / "default.toml"))
    out = score_frame(pl.DataFrame({"caption": ["white owl", "snowy owl", "owl"]}), chain)
    assert out["reason"].to_list()[2] == "length"  # one word is still too short
    assert out["keep"].to_list()[:2] == [True, True], out.select("caption", "reason", "score__judgement")
