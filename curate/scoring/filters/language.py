from __future__ import annotations

import os
import re
from functools import lru_cache
from itertools import chain
from pathlib import Path

import numpy as np
import polars as pl

from curate.errors import CurateError
from curate.scoring.filters.base import TEXT, WORD, Filter

#: fastText labels that are Chinese varieties written in Han script; reported as ``zh`` (the
#: ISO 639-1 macrolanguage). Not ``min``: in lid.176 that is Minangkabau, not Min Chinese.
CHINESE = ("zh", "wuu", "yue", "gan", "hak", "nan", "cdo", "lzh")
#: Other labels inside an ISO 639-1 macrolanguage: Egyptian Arabic is Arabic (``ar``).
MACRO = {"arz": "ar"}
LID_CHARS = 120  # the first 120 characters settle the language (same accuracy as 300 on the labelled data); the rest only costs time

# Scripts, counted in words as curate.filters.base.word_count does: two Han/kana characters
# make one word; Hangul, like Latin, Cyrillic or Arabic, is written with spaces between words.
_EAST_ASIAN = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]"
_KANA = r"[\p{Hiragana}\p{Katakana}]"
_CJK = r"[\p{Han}\p{Hiragana}\p{Katakana}]"
_OTHER_WORD = r"[\p{L}--[\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}]]+"

# Letters that settle a choice between close relatives that the model confuses.
#: Ukrainian-only Cyrillic letters (Rusyn aside): no Russian, Bulgarian, Macedonian, Serbian
#: or Belarusian word has ї, є or ґ; і is also Belarusian and Kazakh, but not Russian,
#: Bulgarian, Macedonian or Serbian.
_UK_ONLY = "[їєґЇЄҐ]"
_UK_I = "[іїєґІЇЄҐ]"
#: ў is Belarusian (not Ukrainian): Belarusian text the model calls Russian keeps its label.
_BE_ONLY = "[ўЎ]"
_NOT_UK_LABELS_WITHOUT_I = ("ru", "bg", "mk", "sr")
#: Letters of the Russian alphabet that Ukrainian has not (ы э ъ ё), and letters of Ukrainian
#: and Belarusian that Russian has not (і ї є ґ ў).
_RU_ONLY = "[ыэъёЫЭЪЁ]"
_UK_BE = "[іїєґўІЇЄҐЎ]"
#: Czech-only letters among the Latin alphabets of central Europe: ě ř ů (Sorbian aside).
_CS_ONLY = "[ěřůĚŘŮ]"
#: Slovak letters that Czech has not: ľ ĺ ŕ ô.
_SK_ONLY = "[ľĺŕôĽĹŔÔ]"
#: Czech forms of three short words that Slovak writes differently: se (reflexive, and
#: "with"; Slovak sa, so), ze ("from"; Slovak zo), ve ("in"; Slovak vo).
_CS_WORDS = r"(?i)(?:^|[^\p{L}])(?:se|ze|ve)(?:$|[^\p{L}])"
#: Latin-script languages the model confuses with Czech, none of which writes ě, ř or ů.
_CS_NEIGHBOURS = ("sk", "pl", "sl", "hr", "bs", "sh", "sr", "hu")
#: Arabic-script languages the model confuses with Arabic. Their alphabets add letters (and
#: digits) to Arabic's 28, from the extended Arabic block: Persian پ چ ژ گ, ک and ی, Urdu ٹ ڈ
#: ڑ ں ے, Pashto, Sorani, Sindhi, Uyghur letters. Arabic's own extra letter ڤ (for v) is not
#: counted. Arabic writes ي ى ك where Persian and Urdu write ی and ک, and has ة.
_ARABIC_SCRIPT_NEIGHBOURS = ("fa", "ur", "ps", "azb", "mzn", "pnb", "ckb", "sd", "ug", "ku")
_NOT_ARABIC = "[\u0672-\u06a3\u06a5-\u06d5\u06ee-\u06ff]"
_ARABIC_ONLY = "[ةيىك]"
#: The model labels that some letter rule can correct; only these rows are searched for letters.
_LETTER_RULE_LABELS = (
    *_NOT_UK_LABELS_WITHOUT_I, "be", "uk", *_CS_NEIGHBOURS, "cs", *_ARABIC_SCRIPT_NEIGHBOURS
)


#: sha256 of the lid.176.ftz that ships inside curate (see models/NOTICE.md)
BUNDLED_SHA256 = "8f3472cfe8738a7b6099e8e999c3cbfae0dcd15696aac7d7738a8039db603e83"


def bundled_lid_model() -> Path:
    """Path of ``lid.176.ftz``, which ships inside this package (no download)."""
    path = Path(__file__).resolve().parent / "models" / "lid.176.ftz"
    if not path.is_file():
        raise CurateError(f"the bundled language model is missing at {path}; reinstall curate")
    return path


@lru_cache(maxsize=8)
def model_sha256(path: str) -> str:
    from curate.hashing import file_sha256

    return file_sha256(path)


def open_fasttext(path: str):
    """A fastText model file, read by ``fasttext-new`` (module ``fasttext_new``: a Rust
    implementation whose predictions are bit-identical to fastText's C++)."""
    try:
        import fasttext_new
    except ImportError:
        raise CurateError("fastText is not installed; pip install fasttext-new") from None
    if not os.path.isfile(path):
        raise CurateError(f"model {path!r} does not exist")
    try:
        return fasttext_new.load_model(path)
    except Exception as e:  # ValueError or OSError for a damaged file
        raise CurateError(f"cannot load fastText model {path!r}: {e}") from None


@lru_cache(maxsize=4)
def load_fasttext(path: str):
    """:func:`open_fasttext`, once per process."""
    return open_fasttext(path)


def predict_threads() -> int:
    """Threads for one batched predict: polars' budget (``POLARS_MAX_THREADS``, which the
    worker pool sets to 1: one worker per core), else every core this process may use."""
    budget = os.environ.get("POLARS_MAX_THREADS", "")
    if budget.isdigit() and int(budget) > 0:
        return int(budget)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def predict_batch(model, lines: list[str], k: int) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """fastText's batched predict: up to ``k`` best labels of every line, flat, as fastText
    gives them (a label whose probability rounds to 0 may be left out), their probabilities
    (float32) and the number of labels of each line. One call with the GIL released; the
    probabilities come back as one buffer, not one array per line, and the labels are
    flattened in C (``itertools.chain``: about 100 times faster than a list column). A
    newline inside a line is an error (fastText reads one line per text)."""
    labels, flat, counts = model.f.predict_batch(lines, k, 0.0, predict_threads(), "replace")
    lab = pl.Series(list(chain.from_iterable(labels)), dtype=pl.String)
    return lab, np.frombuffer(flat, dtype=np.float32), np.asarray(counts, dtype=np.int64)


class Language(Filter):
    """Language of the caption, by fastText language ID, settled by script and letter evidence.

    Rule: fastText ``lid.176`` (Joulin et al. 2016; the bundled ``lid.176.ftz`` from
    shipped inside curate, unless ``model`` names another fastText LID file) predicts one label per
    caption, in one batched call, from the first 120 characters, lowercased (the model's
    character n-grams are case-sensitive; all-caps and title-case text otherwise shares few
    n-grams with the running text the model was trained on). Writes ``lang`` (ISO 639-1 where
    one exists, otherwise the model's code) and ``score__language`` (0 to 1): the model's
    probability for its label, or, where the script decides (rule 1), the share of the
    caption's words written in that script (Han and kana, or Hangul), since the model's
    probability means little there. Empty text: ``lang`` null, score 0.

    Then general facts about writing systems correct the systematic errors of character
    n-grams on short text (first match wins):

    1. Script. Kana is written only in Japanese and Hangul only in Korean: a caption with
       kana is ``ja``, else one with Hangul is ``ko``. A caption at least half of whose words
       are Han (words counted as in ``word_count``: two Han characters make a word) and that
       has no kana is Chinese (``zh``): Japanese prose is not written without kana, and the
       model often says ``ja``, ``wuu``, ``yue`` or even a Latin-script language for short,
       unpunctuated Chinese. Text mixing a few Han characters into another language keeps
       the model's label.
    2. Macrolanguages: Chinese varieties (``wuu``, ``yue``, ...) are ``zh``; Egyptian Arabic
       (``arz``) is ``ar``.
    3. Ukrainian letters: ї, є and ґ are written only in Ukrainian (and Rusyn); і also in
       Belarusian and Kazakh but not in Russian, Bulgarian, Macedonian or Serbian. A caption
       the model gives to one of those with letters its alphabet lacks is ``uk`` (unless it
       has Belarusian ў). Conversely ``uk`` with ы э ъ ё (not in Ukrainian) and no і ї є ґ ў
       is ``ru``.
    4. Czech letters: ě ř ů are written in Czech and not in the Latin alphabets of its
       neighbours that the model confuses with it (sk pl sl hr bs sh sr hu): such a caption is
       ``cs``. ``sk`` with the word se, ze or ve (Czech forms; Slovak writes sa, so, zo,
       vo) and none of Slovak's ľ ĺ ŕ ô is ``cs``. ``cs`` with Slovak ľ ĺ ŕ ô and none of
       ě ř ů is ``sk``.
    5. Arabic letters: a caption given to another Arabic-script language (fa ur ps ...) that
       has none of the letters those alphabets add to Arabic's (پ چ ژ گ ک ی ...) and has an
       Arabic-only form (ة, or ي ى ك where Persian and Urdu write ی and ک) is ``ar``.

    6. Short captions: a caption of at most 6 words that no script rule settled, and whose
       label the model gives with probability below 0.3, is ``und`` (undetermined), scored
       by the share of its words that have a letter (``short_uncertain``): short product
       names and titles otherwise get languages nobody wrote them in.

    Letters only ever choose between close relatives the model already confuses, so a foreign
    name inside a caption (an English caption naming Dvořák) does not change its language.
    Chains keep languages with ``allow = [...]``.
    """

    name = "language"
    version = 4
    params = {"model": ""}
    default_min = 0.4
    label = "lang"

    def label_error(self, values: list[str]) -> str | None:
        # lid.176's labels are lower-case ISO 639 codes; other LID models add a script (eng_Latn)
        bad = [v for v in values if not re.fullmatch(r"[a-z]{2,3}(?:_[A-Z][a-z]{3})?", v)]
        return (f"{bad} are not language codes; `lang` holds lower-case ISO 639 codes "
                f"such as en, de, zh") if bad else None

    def model_path(self) -> str:
        return self.p["model"] or str(bundled_lid_model())

    def model_files(self) -> dict[str, str]:
        path = self.model_path()
        if not os.path.isfile(path):
            raise CurateError(f"language model {path!r} does not exist")
        return {os.path.basename(path): model_sha256(path)}

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        model = load_fasttext(self.model_path())
        text = batch[TEXT].fill_null("").str.slice(0, LID_CHARS)
        scripts = _scripts(text)
        # Rows whose language and score the script settles (rule 1: kana, Hangul, mostly Han;
        # empty text) never reach the model: its answer would be thrown away.
        need = scripts.select(~_SETTLED).to_series().arg_true()
        sub = text.gather(need)
        # fastText reads one line per caption: a newline inside one is replaced.
        lines = sub.str.to_lowercase().str.replace_all("\n", " ", literal=True).to_list()
        lab_n, p_n = predict_top1(model, lines)
        lab = pl.Series("lab", [None] * len(text), dtype=pl.String).scatter(need, lab_n)
        prob = pl.Series("p", np.zeros(len(text))).scatter(need, p_n)
        out = _decide(scripts.with_columns(t=text, lab=lab, p=prob))
        return short_uncertain(out, text, prob).rename({"score": column})


#: Rule 6: a caption of at most this many words ...
SHORT_WORDS = 6
#: ... whose label the model gives with less than this probability is ``und`` (at 0.3, short
#: captions of the labelled languages keep their label: Multi30k cs 98.8%, de, en, fr 99.9%).
SHORT_P = 0.3


def short_uncertain(out: pl.DataFrame, text: pl.Series, prob: pl.Series) -> pl.DataFrame:
    """Rule 6 of :class:`Language`: short captions the model is unsure of are ``und``.

    Character n-grams of five words say little: product names and titles ("2006 Dodge
    Charger SE RWD, exterior") get languages nobody wrote them in (``pa``, ``ceb``). Where
    a caption has at most ``SHORT_WORDS`` words, the script did not settle it and the model's
    probability is below ``SHORT_P``, ``lang`` is ``und`` and the score is the share of its
    words that have a letter (so a short caption is not dropped for its language, but a row
    of numbers still is). Words are counted only in the rows whose probability is low (a
    few percent)."""
    unsure = ((prob < SHORT_P) & (prob > 0) & out["lang"].is_not_null()).arg_true()
    t = text.gather(unsure)
    words = t.str.count_matches(WORD)
    short = (words <= SHORT_WORDS).arg_true()
    lettered = t.gather(short).str.count_matches(r"\p{N}*\p{L}[\p{L}\p{N}]*")
    share = (lettered.clip(0) / words.gather(short).clip(1)).cast(pl.Float64)
    at = unsure.gather(short)
    return pl.DataFrame({"lang": out["lang"].scatter(at, "und"), "score": out["score"].scatter(at, share)})


def _scripts(text: pl.Series) -> pl.DataFrame:
    """Script counts per row, in words as ``word_count`` counts them: ``cjk`` (Han and kana
    characters / 2), ``hangul`` (runs), ``other`` (words in other scripts), ``kana`` (any),
    and ``empty``. They are counted only in rows with Han, kana or Hangul, which are searched
    for only in rows with a character outside ASCII; elsewhere they are 0."""
    n = len(text)
    wide = (text.str.len_bytes() != text.str.len_chars()).arg_true()
    east = wide.gather(text.gather(wide).str.contains(_EAST_ASIAN).arg_true())
    found = text.gather(east).to_frame("t").select(
        cjk=pl.col("t").str.count_matches(_CJK).cast(pl.Float64) / 2,
        hangul=pl.col("t").str.count_matches(r"\p{Hangul}+").cast(pl.Float64),
        other=pl.col("t").str.count_matches(_OTHER_WORD).cast(pl.Float64),
        kana=pl.col("t").str.contains(_KANA),
    )
    out = {c: pl.Series(c, np.zeros(n, dtype=bool if c == "kana" else float)).scatter(east, found[c])
           for c in found.columns}  # (a loop over four columns)
    return pl.DataFrame({**out, "empty": text.str.strip_chars() == ""})


_WORDS = pl.col("cjk") + pl.col("hangul") + pl.col("other")
_CJK_SHARE = pl.when(_WORDS > 0).then(pl.col("cjk") / _WORDS).otherwise(0.0)
_HANGUL_SHARE = pl.when(_WORDS > 0).then(pl.col("hangul") / _WORDS).otherwise(0.0)
#: mostly Han, no kana, no Hangul (rule 1: Chinese)
_HAN_TEXT = ~pl.col("kana") & (pl.col("hangul") == 0) & (_CJK_SHARE >= 0.5)
#: rows whose label and score rule 1 (script) or emptiness decides, from ``_scripts``
_SETTLED = pl.col("empty") | pl.col("kana") | (pl.col("hangul") > 0) | _HAN_TEXT


def predict_top1(model, lines: list[str]) -> tuple[pl.Series, pl.Series]:
    """The model's top label (without ``__label__``) and its probability, for every line
    (lines without a newline), from one batched call."""
    lab, p, _ = predict_batch(model, lines, 1)
    if len(lab) != len(lines) or len(p) != len(lines):
        # k=1 always yields one label (the best of 176 has probability >= 1/176).
        raise CurateError(
            f"fastText returned {len(lab)} labels for {len(lines)} captions; "
            "the model does not predict one label per line"
        )
    return lab.str.strip_prefix("__label__"), pl.Series(p, dtype=pl.Float64)


def _decide(df: pl.DataFrame) -> pl.DataFrame:
    """``lang`` and ``score`` from the text ``t``, its script counts (``_scripts``), the
    model's label ``lab`` and probability ``p`` (rules 1-5 of :class:`Language`)."""
    t = pl.col("t")
    kana, hangul, han_text, empty = pl.col("kana"), pl.col("hangul") > 0, _HAN_TEXT, pl.col("empty")
    df = df.with_columns(lab=pl.col("lab").replace(MACRO).replace({c: "zh" for c in CHINESE}))
    label = pl.col("lab")
    # Most rows keep the model's label and probability: the rules below run only on rows
    # that the script settles and rows whose label a letter rule can correct.
    ruled = label.is_in(_LETTER_RULE_LABELS)
    rows = df.select(_SETTLED | ruled).to_series().arg_true()
    # Letters are looked at only where the model's label is one that a letter rule can correct.
    sub = df[rows].with_columns(pl.when(ruled).then(t).alias("lt"))
    has = pl.col("lt").str.contains
    lang = (
        pl.when(empty).then(None)
        .when(kana).then(pl.lit("ja"))
        .when(hangul).then(pl.lit("ko"))
        .when(han_text).then(pl.lit("zh"))
        .when(label.is_in(_NOT_UK_LABELS_WITHOUT_I) & has(_UK_I) & ~has(_BE_ONLY))
        .then(pl.lit("uk"))
        .when((label == "be") & has(_UK_ONLY)).then(pl.lit("uk"))
        .when((label == "uk") & has(_RU_ONLY) & ~has(_UK_BE)).then(pl.lit("ru"))
        .when(label.is_in(_CS_NEIGHBOURS) & has(_CS_ONLY)).then(pl.lit("cs"))
        .when((label == "sk") & has(_CS_WORDS) & ~has(_SK_ONLY)).then(pl.lit("cs"))
        .when((label == "cs") & has(_SK_ONLY) & ~has(_CS_ONLY)).then(pl.lit("sk"))
        .when(label.is_in(_ARABIC_SCRIPT_NEIGHBOURS) & has(_ARABIC_ONLY) & ~has(_NOT_ARABIC))
        .then(pl.lit("ar"))
        .otherwise(label)
    )
    script = pl.when(kana | han_text).then(_CJK_SHARE).when(hangul).then(_HANGUL_SHARE)
    score = pl.when(empty).then(0.0).otherwise(pl.coalesce(script, pl.col("p")).clip(0.0, 1.0))
    done = sub.select(lang.alias("lang"), score.alias("score"))
    return pl.DataFrame({"lang": df["lab"].alias("lang").scatter(rows, done["lang"]),
                         "score": df["p"].clip(0.0, 1.0).alias("score").scatter(rows, done["score"])})
