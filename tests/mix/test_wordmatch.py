"""Concept matching as word sequences (curate.mix.wordmatch) against a plain reference of
MetaCLIP's substr_matching, and template signatures against a plain reference of their rule,
on real captions of ../shared/data: web alt-text, human and long captions, German, Czech,
French and Chinese rows, with entries cut from the captions themselves (punctuation,
several words, pieces of words), repeated spaces, empty captions and nulls.
"""
from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest

from curate.layout import concepts_json_path, concepts_path
from curate.mix.concepts import annotate, concepts
from curate.mix.templates import KEEP_IN_TEMPLATE, TEMPLATE_WORDS
from curate.mix.vocabulary import FALLBACK, Vocabulary, load_vocabulary, patterns
from curate.mix.wordmatch import Table

NO_SPACE = re.compile(r"[\u0e00-\u0eff\u0f00-\u0fff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


def spacing(text: str | None) -> str:
    """MetaCLIP's spacing() (metaclip/metaclip1/substr_matching.py), lower-cased."""
    spaced = f" {(text or '').lower()} "
    for punct in [",", ".", ";", ":", "?", "!", "`"]:
        spaced = spaced.replace(punct, f" {punct} ")
    for char in ["\t", "\n", "\r"]:
        spaced = spaced.replace(char, " ")
    return spaced


def reference(text: str | None, entries: list[str]) -> list[str]:
    """substr_matching: the entries e with " e " in spacing(text), sorted; no space is asked
    for beside a character of a script written without spaces."""
    spaced = spacing(text)
    out = []
    for e in entries:
        left = "" if NO_SPACE.match(e[0]) else " "
        right = "" if NO_SPACE.match(e[-1]) else " "
        if f"{left}{e}{right}" in spaced:
            out.append(e)
    return sorted(out)


def cut_entries(captions: list[str], n: int, seed: int) -> list[str]:
    """Entries cut from the captions: runs of 1-3 words, and pieces at any character."""
    rng = np.random.default_rng(seed)
    out = []
    for i in rng.integers(0, len(captions), n):
        words = captions[i].split(" ")
        k = int(rng.integers(0, len(words)))
        if rng.random() < 0.7:
            out.append(" ".join(words[k:k + int(rng.integers(1, 4))]))
        else:
            a = int(rng.integers(0, len(captions[i])))
            out.append(captions[i][a:a + int(rng.integers(1, 15))])
    return out


@pytest.fixture(scope="module")
def captions(read_data) -> pl.DataFrame:
    """Real captions of every kind with their language, plus empty ones and nulls."""
    frames = [read_data(p, ["caption", "lang"]).head(n) for p, n in
              (("a_coco", 800), ("c_laion", 800), ("c_redcaps", 800), ("d_", 400), ("b_multi30k_task1", 1200),
               ("b_flickr8k_cn", 400))]
    extra = pl.DataFrame({"caption": ["", None, "  ", "A red  car", "red car", "a\tred car!", "red car,red car"],
                          "lang": ["en"] * 7})
    return pl.concat([*frames, extra], how="diagonal_relaxed").rename({"caption": "t"})


@pytest.fixture(scope="module")
def vocab(captions) -> Vocabulary:
    """English and fallback entries cut from the English and web rows, German and Czech ones
    from theirs, Chinese ones (pieces of Chinese captions), and long words that share their
    first and last 8 bytes."""
    def texts(cond: pl.Expr) -> list[str]:
        return [t for t in captions.filter(cond)["t"].drop_nulls().to_list() if t.strip()]

    en = cut_entries(texts(pl.col("lang").is_in(["en"]) | pl.col("lang").is_null()), 3000, 1)
    en += ["red  car", "red car", "car !", "abcdefgh1xxxxxxxx", "abcdefgh2xxxxxxxx", "abcdefgh1xxxxxxxx red"]
    return Vocabulary({
        "en": patterns(en),
        FALLBACK: patterns(en[:1500]),
        "de": patterns(cut_entries(texts(pl.col("lang") == "de"), 1500, 2)),
        "cs": patterns(cut_entries(texts(pl.col("lang") == "cs"), 1500, 3)),
        "zh": patterns(cut_entries(texts(pl.col("lang") == "zh"), 600, 4) + ["狗", "男人"]),
    }, {"built": "test"})


def test_matching_equals_metaclips_substr_matching(captions, vocab):
    got = pl.concat([captions, annotate(captions, vocab)], how="horizontal")
    assert set(got["concept_vocab"].unique()) == {"en", "de", "cs", "zh", FALLBACK}
    matched = 0
    for key, part in got.partition_by("concept_vocab", as_dict=True).items():
        entries = [p.strip(" ") for p in vocab.lists[key[0]]]
        for text, mine in zip(part["t"].to_list(), part["concepts"].to_list()):
            assert mine == reference(text, entries), (key, text)
            matched += len(mine)
    assert matched > 20_000
    # a run of spaces inside an entry is one space; in a caption it is two (no match)
    rows = dict(zip(got["t"].to_list(), got["concepts"].to_list()))
    assert "red car" in rows["red car"] and "red car" not in rows["A red  car"]
    assert "red car" in rows["a\tred car!"] and "car !" in rows["a\tred car!"]
    assert rows[""] == [] and rows["  "] == []
    assert got.filter(pl.col("t").is_null())["concepts"].to_list() == [[]]


def test_one_language_at_a_time_gives_the_same_lists(captions, vocab):
    whole = annotate(captions, vocab)
    for lang in ("de", "zh"):
        rows = captions.with_row_index("i").filter(pl.col("lang") == lang)
        alone = annotate(rows.drop("i"), vocab)
        assert alone.equals(whole[rows["i"].to_list()])


def test_long_words_sharing_a_hash_are_told_apart(vocab):
    frame = pl.DataFrame({"t": ["abcdefgh2xxxxxxxx abcdefgh1xxxxxxxx red", "abcdefgh3xxxxxxxx abcdefgh2xxxxxxxx"],
                          "lang": ["en", "en"]})
    got = annotate(frame, vocab)["concepts"].to_list()
    assert got == [["abcdefgh1xxxxxxxx", "abcdefgh1xxxxxxxx red", "abcdefgh2xxxxxxxx", "red"],
                   ["abcdefgh2xxxxxxxx"]]


def test_table_is_exact():
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, 2**64, 20_000, dtype=np.uint64, endpoint=False))
    keys = np.concatenate([keys, np.arange(1, 300, dtype=np.uint64) << np.uint64(40)])  # slots shared
    keys = np.unique(keys)
    table = Table(keys, np.arange(len(keys)))
    assert table.rest is not None  # some keys share a slot
    probe = np.concatenate([keys, keys + np.uint64(1), rng.integers(0, 2**63, 5000, dtype=np.uint64)])
    want = np.searchsorted(keys, probe)
    want = np.where((want < len(keys)) & (keys[np.minimum(want, len(keys) - 1)] == probe), want, -1)
    assert (table.get(probe) == want).all()


def template_reference(text: str | None) -> str | None:
    """The template rule, one caption at a time: first sentence of the normalised caption
    (after leading white space, up to . ! or ?), other words made _, runs of _ one, 8 tokens."""
    first = re.match(r"\s*([^.!?]*)", spacing(text)).group(1)
    out: list[str] = []
    for w in first.split(" "):
        if w:
            w = w if w in KEEP_IN_TEMPLATE else "_"
            if not (w == "_" and out and out[-1] == "_"):
                out.append(w)
    return " ".join(out[:TEMPLATE_WORDS]) or None


def test_templates_follow_their_rule(captions, vocab):
    odd = pl.DataFrame({"t": ["\u00a0The image shows a dog.", " \u3000 the photo", "\u2009\u00a0 . the",
                              "“The image” shows", "image, shows; a: the", "The image. Shows"], "lang": ["en"] * 6})
    frame = pl.concat([captions, odd])
    got = annotate(frame, vocab)["template"].to_list()
    assert got == [template_reference(t) for t in frame["t"].to_list()]
    assert got[-6:] == ["the image shows a _", "the photo", None, "_ shows", "image , shows ; a : the", "the image"]


def test_concepts_are_byte_identical_across_reruns(runs_one, tmp_path):
    voc = tmp_path / "v.json"
    voc.write_text(json.dumps({"*": ["dog", "man", "red car", "street"]}))
    concepts([runs_one], voc)
    first = concepts_path(runs_one).read_bytes()
    concepts([runs_one], voc)
    assert concepts_path(runs_one).read_bytes() == first
    assert load_vocabulary(concepts_json_path(runs_one)).lists == load_vocabulary(voc).lists


@pytest.fixture(scope="module")
def runs_one(tmp_path_factory, data_dir):
    import shutil

    from helpers import make_runs

    shared = make_runs(tmp_path_factory, data_dir)
    out = tmp_path_factory.mktemp("wordmatch-run") / "web"
    shutil.copytree(shared["web"], out, symlinks=True)
    return out
