"""The filters' batch shortcuts give what the plain rules give, on every real caption.

Each filter computes its rule for a whole batch with shortcuts (words cut from the batch's
bytes, work only on the rows that can need it). These tests state the rules plainly, one
caption at a time (a loop in the test, never in the package), or through the expression
the shortcut replaces, and compare on the real captions of ``../shared/data`` plus made-up
edge cases.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pytest

from curate.scoring.filters.base import TEXT, word_count
from curate.scoring.filters.length import Length
from curate.scoring.filters.repetition import Repetition
from curate.scoring.filters.tokens import words_of
from curate.scoring.frame import normalise_text

REP_WORD = r"[\p{L}\p{N}]+(?:'[\p{L}\p{N}]+)*"
EDGES = [
    "", "'", "a'", "'a", "a''b", "rock'n'roll's 'quoted' y'", "don't don't don't stop",
    "İstanbul İSTANBUL", "x\u0301y e\u0301te\u0301", "𝒳a 𝟘𝟙 ١٢٣ ½", "中文 日本語のテキスト 한국어 문장",
    "shoes cheap shoes shoes", "a b c d a b c d", "p q r s t u p q r s", "x y z w x y z w x y",
    "Ünïcödé wörds ünïcödé wörds", "tab\tand\u00a0nbsp", "a" * 300,
]


@pytest.fixture(scope="module")
def captions(read_data) -> pl.Series:
    """Every caption of the real data files (about 35k), normalised, and the edge cases."""
    df = pl.concat([read_data(p, ["caption"]) for p in ("a_", "b_", "c_", "d_")])
    real = df.select(normalise_text())[TEXT]
    edges = pl.DataFrame({"caption": EDGES}).select(normalise_text())[TEXT]
    return pl.concat([real, edges, pl.Series(TEXT, [None], pl.String)])


def test_words_of_gives_the_regex_matches_in_order(captions):
    low = captions.str.to_lowercase()
    words, counts = words_of(low)
    want = low.str.extract_all(REP_WORD)
    assert counts.tolist() == want.list.len().fill_null(0).to_list()
    assert words.to_list() == want.explode().drop_nulls().to_list()


def test_words_of_keeps_rows_apart_and_handles_empty_batches():
    words, counts = words_of(pl.Series(["ab", "cd", "", None, "e'", "'f"]))
    assert words.to_list() == ["ab", "cd", "e", "f"] and counts.tolist() == [1, 1, 0, 0, 1, 1]
    words, counts = words_of(pl.Series([], dtype=pl.String))
    assert len(words) == 0 and len(counts) == 0


def plain_repetition(words: list[str], min_words: int = 4, min_chars: int = 4) -> float:
    """The repetition rule for one caption, by counting."""
    if len(words) < min_words:
        return 0.0
    long = Counter(w for w in words if len(w) >= min_chars)
    best = (max(long.values()) - 1) / len(words) if long else 0.0
    for n in (2, 3, 4):
        grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
        if len(grams) >= 2:
            best = max(best, 1 - len(set(grams)) / len(grams))
    return best


@pytest.mark.parametrize("params", [{}, {"min_words": 1, "min_word_chars": 1}])
def test_repetition_equals_the_rule_counted_caption_by_caption(captions, params):
    got = Repetition(**params).score(pl.DataFrame({TEXT: captions}), "s")["s"].to_numpy()
    words = captions.str.to_lowercase().str.extract_all(REP_WORD).to_list()
    args = (params.get("min_words", 4), params.get("min_word_chars", 4))
    want = np.array([plain_repetition(w or [], *args) for w in words])
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))  # to the bit
    assert (got > 0).sum() > 1000  # the data does repeat words


def test_repetition_counts_longer_ngrams_where_they_raise_the_score():
    # a 4-gram loop: every bigram and 4-gram repeats; the score is the largest share
    f = pl.DataFrame({TEXT: ["one two three four one two three four one two three four"]})
    assert Repetition().score(f, "s")["s"][0] == plain_repetition(f[TEXT][0].split())


def test_length_in_words_equals_word_count_on_every_caption(captions):
    got = Length().score(pl.DataFrame({TEXT: captions}), "s")["s"]
    want = pl.DataFrame({TEXT: captions}).select(word_count(pl.col(TEXT))).to_series()
    assert got.equals(want, check_names=False)


def test_language_script_counts_equal_the_counts_over_every_row(captions):
    from curate.scoring.filters import language as lang

    text = captions.fill_null("").str.slice(0, lang.LID_CHARS)
    t = pl.col("t")
    want = pl.DataFrame({"t": text}).select(
        cjk=t.str.count_matches(lang._CJK).cast(pl.Float64) / 2,
        hangul=t.str.count_matches(r"\p{Hangul}+").cast(pl.Float64),
        other=pl.when(t.str.contains(lang._EAST_ASIAN)).then(t.str.count_matches(lang._OTHER_WORD))
        .otherwise(0).cast(pl.Float64),
        kana=t.str.contains(lang._KANA),
        empty=t.str.strip_chars() == "",
    )
    got = lang._scripts(text)
    assert got.equals(want)
    assert (got["cjk"] > 0).sum() > 1000 and got["kana"].sum() > 1 and (got["hangul"] > 0).sum() > 0


def test_scoring_a_batch_imports_neither_pandas_nor_wordfreq(data_dir):
    """Every worker process pays for what scoring imports: pandas (pulled in by
    ``pa.array``) and wordfreq (a quarter of a CPU-second each) are not needed to score
    once specificity's word tables are in the cache folder (built here first, in this
    process: the first run ever builds them from wordfreq)."""
    import subprocess
    import sys

    from curate.scoring.chain import load_chain
    from curate.scoring.frame import score_frame

    files = sorted(data_dir.glob("[abcd]_*.parquet"))
    score_frame(pl.concat([pl.read_parquet(f, columns=["caption"]).head(300) for f in files]), load_chain(None))

    code = (
        "import sys, polars as pl\n"
        "from curate.scoring.chain import load_chain\n"
        "from curate.scoring.frame import score_frame\n"
        f"df = pl.concat([pl.read_parquet(f, columns=['caption']).head(300) for f in "
        f"sorted(__import__('pathlib').Path({str(data_dir)!r}).glob('[abcd]_*.parquet'))])\n"
        "out = score_frame(df, load_chain(None))\n"
        "assert out.height == df.height and out['lang'].n_unique() > 5\n"
        "print(sorted(m for m in ('pandas', 'wordfreq') if m in sys.modules))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_table_languages_are_wordfreqs_small_lists():
    import wordfreq

    from curate.scoring.filters.specificity_tables import table_languages

    assert table_languages() == frozenset(wordfreq.available_languages("small"))
