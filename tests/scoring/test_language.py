"""The language filter: fastText lid.176 plus script and letter rules.

Accuracy is measured on real, labelled third-party captions in ``../shared/data``; the
literal tests below use captions written for these tests.
"""
from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest

from curate.scoring.filters import language as language_module
from curate.scoring.filters.language import Language, bundled_lid_model, load_fasttext
from curate.scoring.frame import normalise_text

TARGET = ("en", "de", "fr", "cs", "es", "ar", "uk", "zh")
COL = "score__language"


def lang(texts: list[str | None]) -> pl.DataFrame:
    return Language().score(pl.DataFrame({"_text": texts}, schema={"_text": pl.String}), COL)


def one(text: str) -> tuple[str | None, float]:
    row = lang([text]).row(0)
    return row[0], row[1]


# -- accuracy on labelled real captions -----------------------------------------------------

@pytest.fixture(scope="module")
def labelled(read_data) -> pl.DataFrame:
    """Every labelled caption (b_* multilingual files, a_* English, CC3M), as the pipeline
    sees it, with the filter's prediction beside the source's label."""
    df = pl.concat(
        [read_data(p, ["caption", "lang"]) for p in ("b_", "a_", "c_cc3m")], how="diagonal_relaxed"
    ).filter(pl.col("lang").is_not_null())
    df = df.with_columns(normalise_text())
    out = Language().score(df, COL)
    return df.with_columns(
        pred=out["lang"], score=out[COL], ok=pl.col("lang").eq_missing(out["lang"])
    )


@pytest.fixture(scope="module")
def per_language(labelled) -> dict[str, tuple[int, float]]:
    acc = labelled.group_by("lang").agg(n=pl.len(), acc=pl.col("ok").mean()).sort("lang")
    print("\nlanguage accuracy on ../shared/data:")
    for row in acc.iter_rows(named=True):
        mark = "" if row["lang"] in TARGET else "  (not a target)"
        print(f"  {row['lang']}: {row['acc']:.4f} of {row['n']}{mark}")
    return {r["lang"]: (r["n"], r["acc"]) for r in acc.iter_rows(named=True)}


def test_overall_accuracy_over_target_languages(labelled, per_language):
    target = labelled.filter(pl.col("lang").is_in(TARGET))
    assert set(TARGET) <= set(per_language), "a target language has no labelled captions"
    overall = target["ok"].mean()
    print(f"overall over {', '.join(TARGET)}: {overall:.4f} of {target.height}")
    assert overall >= 0.99


@pytest.mark.parametrize("code", TARGET)
def test_accuracy_per_target_language(per_language, code):
    n, acc = per_language[code]
    assert n >= 500, f"too few labelled {code} captions to measure ({n})"
    assert acc >= 0.98, f"{code}: accuracy {acc:.4f} of {n} captions"


def test_labelled_chinese_is_not_dropped_by_a_low_score(labelled):
    # Han text is decided by script; its score is the share of Han words, not the model's
    # (often meaningless) probability, so a chain's min does not drop clean Chinese.
    zh = labelled.filter(pl.col("lang") == "zh")["score"]
    assert (zh >= 0.5).mean() >= 0.99


# -- literal cases ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "text, expected",
    [
        ("一只小狗在草地上奔跑", "zh"),  # unpunctuated Chinese: the model alone says wuu
        ("一个男人在Starbucks门口喝咖啡", "zh"),  # Han with a Latin brand name
        ("公園で犬が走っている", "ja"),  # kana
        ("공원에서 개가 뛰고 있다", "ko"),
        ("Дівчина їде на велосипеді", "uk"),
        ("Собака бежит по траве", "ru"),
        ("Dívka běží po pláži", "cs"),
        ("رجل يركب دراجة في الشارع", "ar"),
        ("مردی در خیابان دوچرخه سواری می کند", "fa"),
        ("Ein Mann fährt Fahrrad", "de"),
        ("Un homme fait du vélo", "fr"),
        ("Un hombre monta en bicicleta", "es"),
        ("A MAN RIDING A HORSE ON THE BEACH", "en"),  # all caps: the cased model says ja
        ("A statue of Antonín Dvořák in a park", "en"),  # a Czech name does not make it cs
    ],
)
def test_literal_captions(text, expected):
    assert one(text)[0] == expected


def test_pure_chinese_scores_one():
    assert one("一只小狗在草地上奔跑") == ("zh", 1.0)


@pytest.mark.parametrize("text", ["", "   ", None])
def test_empty_text_has_no_language_and_scores_zero(text):
    assert one(text) == (None, 0.0)


def test_newline_inside_a_caption_does_not_crash_or_cut_it():
    out = lang(["A dog runs\non the beach", "x\n\n\ny", "\n"])
    assert out.height == 3
    assert out["lang"][0] == "en"


def test_one_megabyte_caption():
    text = "a brown dog runs across the sandy beach " * 26_000
    assert len(text) > 1_000_000
    code, score = one(text)
    assert code == "en" and 0.0 <= score <= 1.0


def test_scores_are_between_zero_and_one():
    texts = ["A dog.", "", "一只猫在沙发上睡觉", "x" * 5000, "Stock photo", "!!!", "123 456",
             "ラーメン", "Ωμέγα", "a b c d e f g", "Група дітей у парку"]
    s = lang(texts)[COL]
    assert s.null_count() == 0
    assert ((s >= 0.0) & (s <= 1.0)).all()


def test_output_columns_and_height():
    out = lang(["a dog", "un chien"])
    assert out.columns == ["lang", COL]
    assert out.schema["lang"] == pl.String and out.schema[COL] == pl.Float64


def test_deterministic():
    texts = ["a dog on a beach", "ein Hund am Strand", "一只狗在海滩上", "Pes na pláži"]
    assert lang(texts).equals(lang(texts))


def test_row_order_does_not_change_results():
    texts = ["a dog on a beach", "ein Hund am Strand", "一只狗在海滩上", "Pes na pláži", "",
             "Собака на пляжі", "كلب على الشاطئ", "un chien sur la plage", "浜辺の犬"]
    order = list(range(len(texts)))
    random.Random(7).shuffle(order)
    forward = lang(texts)
    shuffled = lang([texts[i] for i in order])
    for pos, i in enumerate(order):
        assert shuffled.row(pos) == forward.row(i)


# -- the rules, with the model's label fixed -------------------------------------------------

@pytest.mark.parametrize(
    "text, model_says, expected",
    [
        ("狗在草地上", "ja", "zh"),  # Han without kana is not Japanese
        ("狗在草地上", "en", "zh"),  # nor English: the script decides
        ("東京 tower at night", "en", "en"),  # a few Han characters keep the model's label
        ("犬が走る", "zh", "ja"),  # kana
        ("개가 뛴다", "ja", "ko"),  # Hangul
        ("whatever", "wuu", "zh"),  # Chinese varieties are zh
        ("whatever", "yue", "zh"),
        ("whatever", "arz", "ar"),  # Egyptian Arabic is within the ar macrolanguage
        ("whatever", "min", "min"),  # lid.176's min is Minangkabau, not Min Chinese
        ("Група людей у парку", "ru", "ru"),  # no letter settles it: keep the model
        ("Діти в парку", "ru", "uk"),  # і is not Russian
        ("Дівчина їде", "be", "uk"),  # ї is not Belarusian
        ("Дзіця ў парку", "be", "be"),  # і is Belarusian
        ("Дзіця ў парку", "ru", "ru"),  # ў is Belarusian, not Ukrainian
        ("Мы идём в парк", "uk", "ru"),  # ы and ё are not Ukrainian
        ("Muž řídí auto", "sk", "cs"),  # ř is not Slovak
        ("Dívka běží", "sl", "cs"),
        ("Muž v parku", "sk", "sk"),  # no Czech-only letter: keep the model
        ("Dívka se směje", "sk", "cs"),  # ě
        ("Pes se koupe ve vodě", "sk", "cs"),
        ("Žena se dívá z okna", "sk", "cs"),  # se is Czech; Slovak writes sa
        ("Dom ze dreva", "sk", "cs"),  # ze: Slovak writes zo
        ("Žena sa pozerá z okna", "sk", "sk"),  # sa is Slovak
        ("Kôň sa pasie, se", "sk", "sk"),  # ô is not Czech
        ("Pes sedí vedle auta", "sk", "sk"),  # ve inside a word does not count
        ("Kôň v lese", "cs", "sk"),  # ô is not Czech
        ("Dvořák", "de", "de"),  # letters only decide between close relatives
        ("رجل في الشارع", "fa", "ar"),  # ي without any Persian letter
        ("مردی در خیابان", "fa", "fa"),  # ی is Persian
        ("گربه روی میز", "fa", "fa"),
    ],
)
def test_rules_given_the_models_label(monkeypatch, text, model_says, expected):
    def fake_predict(model, lines):
        return (pl.Series([model_says] * len(lines)), pl.Series([0.5] * len(lines)))

    monkeypatch.setattr(language_module, "predict_top1", fake_predict)
    assert one(text)[0] == expected


# -- the installed fastText distribution -------------------------------------------------------

#: sha256 (first 16 hex digits) of the top-2 labels and float32 probabilities that fastText's
#: C++ (fasttext-numpy2-wheel 0.9.2, the binding curate used before) gives with lid.176.ftz
#: for every caption of each file: its first 120 characters, lower-cased, white space as spaces.
CPP_TOP2 = {
    "a_coco_captions_val2017.parquet": "be0d57374486021a",
    "a_flickr30k_captions.parquet": "2fe7b3e24b78491a",
    "a_flickr8k_captions.parquet": "8321df31b4f94376",
    "b_coco_cn_ext_zh.parquet": "5671b8cec5a20d45",
    "b_flickr8k_cn_zh.parquet": "a722be1ccd3fb15b",
    "b_multi30k_task1_en_de_fr_cs.parquet": "1a2de8de80189fe4",
    "b_multi30k_task2_de.parquet": "72def397b30384e3",
    "b_multiscript30k_mt.parquet": "d95986309cde959e",
    "c_cc3m_validation.parquet": "24444c4b6b689774",
    "c_laion_web_alttext_sample.parquet": "f42fac2ff9888d6b",
    "c_redcaps_sample.parquet": "385c4f509f5ca945",
    "d_comprecap_mllm_long.parquet": "ade73dbec7d196c6",
    "d_imageinwords_long.parquet": "a2507fea014ed924",
    "e_imageinwords_sxs_judgments.parquet": "8996b1a60cc9ef25",
    "e_thumb_mscoco_human_scores.parquet": "94d0a7df1b8c7f98",
}


def test_predictions_are_bit_identical_to_fasttext_cpp_on_every_real_caption_file(data_dir):
    """The binding curate installs (fasttext-new) returns fastText C++'s labels and
    probabilities to the bit, through curate's batched call, on every file."""
    import hashlib

    model = load_fasttext(str(bundled_lid_model()))
    files = {f.name: f for f in sorted(data_dir.glob("*.parquet"))}
    assert set(CPP_TOP2) <= set(files)
    for name, expected in CPP_TOP2.items():
        cap = pl.read_parquet(files[name], columns=["caption"])["caption"]
        lines = cap.fill_null("").str.slice(0, 120).str.to_lowercase().str.replace_all(r"\s", " ").to_list()
        labels, probs, counts = language_module.predict_batch(model, lines, 2)
        assert probs.dtype == np.float32 and len(probs) == len(labels) == counts.sum()
        h = hashlib.sha256("\n".join(labels).encode())
        h.update(probs.tobytes())
        assert h.hexdigest()[:16] == expected, name


def test_batch_prediction_returns_labels_and_probabilities():
    model = load_fasttext(str(bundled_lid_model()))
    lab, p = language_module.predict_top1(model, ["a dog runs on the beach", "un chien court sur la plage", ""])
    assert lab.to_list()[:2] == ["en", "fr"] and len(lab) == 3
    assert p.dtype == pl.Float64 and ((p > 0) & (p <= 1)).all()
    with pytest.raises(ValueError, match="one line at a time"):
        language_module.predict_batch(model, ["two\nlines"], 1)


def test_predict_uses_one_thread_in_a_worker_and_every_core_alone(monkeypatch):
    monkeypatch.setenv("POLARS_MAX_THREADS", "1")
    assert language_module.predict_threads() == 1
    monkeypatch.delenv("POLARS_MAX_THREADS")
    assert language_module.predict_threads() >= 1
