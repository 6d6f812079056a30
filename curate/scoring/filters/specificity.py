"""Specificity: how much of a picture a caption describes, from frozen word tables.

The rule is in the ``Specificity`` docstring. How it is computed, fast and batch-independent:

* The reference tables come from wordfreq's packaged "small" frequency lists (the words of
  zipf above 3), built once per process and kept in the user's cache folder. Each entry
  packs a word's weight (thousandths) and its kind (content word, function word,
  sentence end, list separator) into one integer.
* A caption is split into tokens by one regular expression (letter/digit runs, runs of one
  CJK script, sentence ends, list separators); the tokens of a whole batch are one
  exploded column, looked up by a binary search (or a join) of their 64-bit hashes.
  Tokens the table lacks go through a second pass on that small subset.
* Per-caption counts (words, function words, name-like words) and sums are segment sums
  over the exploded column: no loop over rows. Weights are integers (thousandths), so a
  caption's score is exact and identical whatever else is in its batch.
"""
from __future__ import annotations

import numpy as np
import polars as pl

from curate.scoring.filters.base import TEXT, Filter
from curate.scoring.filters.specificity_tables import (
    fill_missing,
    han_keyed,
    keyed,
    list_runs,
    lookup,
    lookup_lists,
    pack,
    per_list,
    segment_sums,
    sentence_share,
    table_language,
    token_classes,
    traditional_to_simplified,
    unpack,
    wordfreq_digest,
)
from curate.scoring.filters.specificity_words import (
    CJK,
    CODE,
    CONTENT,
    FAST_PATH,
    FLAG_BITS,
    FLOOR,
    FUNCTION,
    HAN,
    HASH_SEED,
    KANA,
    MAX_WORD_WEIGHT,
    NAME_SHARE,
    NAME_WEIGHT,
    NO_TABLE_WEIGHT,
    NOUN_CAPITALS,
    NUMBER,
    NUMBER_WEIGHT,
    PRIOR_WORDS,
    QUOTED,
    QUOTES,
    REPEAT_WINDOW,
    SCALE,
    SEPARATOR,
    SEPARATORS,
    STOP,
    STOPS,
    TEXT_BONUS,
    TOKEN,
    UNKNOWN,
    UNKNOWN_WEIGHT,
    VERSION,
)


class Specificity(Filter):
    """How much of a picture a caption describes. Higher is more specific.

    Rule: ``score = (sum of word weights + 2 if it quotes text) * sentence factor``.

    Word weights. A word weighs how rare it is in general text, ``clip(7 - zipf, 0, 4)``
    from wordfreq's frozen frequency list for the caption's language (``lang``; English
    when null), 4 for a lower-case word rarer than the list goes. English closed classes
    adjust this: colour, material, size/shape, exact-count, spatial-relation and
    text-in-image words (after Visual Genome's attribute and relation categories) earn +1;
    vague quantifiers, the stock verbs "sitting"/"standing" and words about the picture
    ("photo", "image", "view") weigh 0; evaluative words ("beautiful", "something") and
    first- and second-person pronouns ("my", "your": a writer or a reader, not the picture)
    cost 1.5; abstract nouns by their derivational suffix ("-tion", "-ness", "-ity", ...)
    weigh at most 1. What names no thing seen weighs little: a capitalised word inside a
    sentence (a name, a brand, a Title Case product word) at most 1, except in German,
    which capitalises every noun, and in captions with no lower-case letter; a number of
    1 or 2 digits (a count) 1.5, longer numbers (years, prices, model numbers) and
    letter-digit codes 0. A word that repeats one of the 6 words of weight 1 or more just
    before it adds nothing (keyword stuffing). Chinese and Japanese have no spaces: a Han
    run weighs, per character, half the rarer of the character and of the two-character
    word it starts (zh list, or ja for Japanese rows; Traditional mapped to Simplified);
    katakana runs 4, hiragana 0. In a language wordfreq has no list for, every word weighs 1.

    Sentence factor, 0.1 to 1: how much the caption reads as a description rather than a
    keyword list or a title. Its function words (the 150 most frequent words of its
    language's list, written in lower case or starting a sentence) are counted against its
    words plus its list separators (commas, pipes, semicolons, slashes, lone dashes); the
    share, shrunk towards the target by 3 pseudo-words, is compared with 0.9 times the share
    function words have in the language's running text (their summed wordfreq frequency:
    en 0.46, de 0.49, fr 0.56, cs 0.38, ar 0.30), so that a language without articles is
    not penalised. The share of capitalised words inside the sentence above 0.4 lowers it
    further (Title Case, runs of names). Chinese and Japanese text, without spaced words,
    keeps a factor of 1.

    Unit: points. A COCO caption scores about 6 to 25 (median 12), a 100-word description
    100 and up, a product title or keyword list a few points, empty text 0; a generic
    caption can go below 0. The tables are frozen, so a caption's score never depends on
    the rest of its batch.

    Sources: wordfreq 3 "small" lists (Speer 2022) for rarity and function words; Visual
    Genome (Krishna et al. 2017) for the attribute and relation classes. Validity, measured
    by ``benchmarks/validate_specificity.py`` with the default chain on ``../shared/data``,
    on the half of the images (crc32 of ``group_id``, odd) not used to choose the
    constants: medians d_* 121.6-174.2 > a_* 12.2-14.1 > c_* 3.9-10.6 (COCO against CC3M
    x1.16); pooled a_*/c_* x1.89 (version 2: x1.1); THumB recall Spearman 0.290 on that
    half, 0.373 pooled (version 2: 0.308, 0.375; word count 0.198); ImageInWords
    side-by-side 30/31 (63/64 pooled); Multi30k translations against English: de x1.07
    (Spearman 0.80), fr x1.05 (0.81), cs x1.01 (0.76); 26 of the 200 highest-scored LAION
    rows are keyword lists or product titles by the script's surface rules (version 2: 114).
    """

    name = "specificity"
    version = VERSION
    default_min = 4.0

    def model_files(self) -> dict[str, str]:
        """The frozen word tables: one sha256 over wordfreq's "small" lists and its Chinese map."""
        return {"wordfreq-small-lists": wordfreq_digest()}

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        n = batch.height
        text = batch[TEXT].cast(pl.String).fill_null("") if n else pl.Series([], dtype=pl.String)
        if "lang" in batch.columns:
            langs = batch["lang"].cast(pl.String)
        else:
            langs = pl.Series([None] * n, dtype=pl.String)
        labels = langs.unique().to_list()
        lists = {lg: table_language(lg) for lg in labels}
        names = sorted(set(lists.values()))
        if len(names) <= 1:  # the common case: one list for the whole batch
            points = _score_texts(text, names[0] if names else "en")
        else:  # rows grouped by list (a stable sort), scored in one pass, put back in order
            code = {name: i for i, name in enumerate(names)}
            row_list = langs.replace_strict(
                [lg for lg in labels if lg is not None], [code[lists[lg]] for lg in labels if lg is not None],
                default=code[lists[None]] if None in lists else 0, return_dtype=pl.Int32,
            ).to_numpy()
            order = np.argsort(row_list, kind="stable")
            rows = np.searchsorted(row_list[order], np.arange(len(names) + 1))
            points = np.zeros(n, dtype=np.int64)
            points[order] = _score_texts(text.gather(order), names, rows)
        return pl.DataFrame({column: points / SCALE})  # numpy division: 1900 -> 1.9 exactly


def features(text: pl.Series, lang, rows: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-caption counts and sums (thousandths) of captions by wordfreq list: ``lang`` is
    one list ("" = none) for all, or the lists of consecutive runs of rows (``rows``: their
    bounds). ``content`` (the word weights), ``words``, ``function`` (function words
    written as in a sentence), ``names`` (capitalised words inside a sentence),
    ``separators`` (list separators) and ``quoted`` (1 where the caption quotes text).

    Most tokens between spaces are found in the table as they stand (lower-cased, with a
    full stop or comma attached). Only the rest are split by ``TOKEN`` into parts, each
    classified alone, and summed back into their token."""
    names = [lang] if rows is None else list(lang)
    rows = np.array([0, len(text)]) if rows is None else rows
    spaced = text.str.split(" ")
    lens = spaced.list.len().to_numpy().astype(np.int64)
    tok = spaced.explode()
    hashes = tok.hash(HASH_SEED).to_numpy()
    ends = np.cumsum(lens)
    tokens = np.concatenate([[0], ends])[rows]  # each list's run of tokens
    packed, hit = lookup_lists(hashes, names if FAST_PATH else [""] * len(names), tokens, keyed)
    flags = (packed & ((1 << FLAG_BITS) - 1)).astype(np.intp)  # kind, end mark, capital
    weight = packed >> FLAG_BITS
    lut = token_classes()
    # a caption without a lower-case letter (all capitals, or a caseless script) says
    # nothing by its capitals; nor does a language that capitalises every noun
    check_case = per_list([bool(name) and name not in NOUN_CAPITALS for name in names], rows)
    if check_case.any():
        check_case &= text.str.contains(r"\p{Ll}").to_numpy()
    cased = np.repeat(check_case, lens)
    stop = lut["stop"][flags]
    miss = np.flatnonzero(~hit)
    parts = None
    if len(miss):  # tokens the table lacks: split into parts, summed back into them
        missed = tok.gather(miss)
        parts = _parts(missed, names, np.searchsorted(miss, tokens), cased[miss])
        stop[miss] = parts["ends"]
    initial = np.zeros(len(flags), dtype=bool)
    initial[(ends - lens)[lens > 0]] = True  # each caption's first token
    initial[1:] |= stop[:-1]  # a token after a sentence end starts a sentence
    named = np.flatnonzero(lut["capital_word"][flags] & cased & ~initial)
    weight[named] = np.minimum(weight[named], int(NAME_WEIGHT * SCALE))
    # per token: words + function words << 32, names + separators << 32 (32-bit fields)
    low, high = lut["low"][flags], lut["high"][flags]
    low[named] -= lut["function"][flags[named]] << 32  # a name is no function word
    high[named] += 1
    if parts is not None:
        lead = initial[miss]  # the token's first part starts a sentence
        weight[miss] = parts["weight"] + np.where(lead, parts["lead_name_weight"], 0)
        names_ = parts["names"] - np.where(lead, parts["lead_name"], 0)
        function = parts["function"] + np.where(lead, parts["lead_name"] * parts["lead_function"], 0)
        low[miss] = parts["words"] + (function << 32)
        high[miss] = names_ + (parts["separators"] << 32)
    weight = _unrepeated(weight, hashes, lens)
    # text quoted from the image: quotation marks are never in the table, so only the
    # captions of missed tokens can have them
    quoted = np.zeros(len(lens), dtype=np.int64)
    if len(miss):
        marked = miss[missed.str.contains_any(QUOTES).to_numpy()]
        if len(marked):
            rows_q = np.unique(np.searchsorted(ends, marked, side="right"))  # their captions
            quoted[rows_q] = text.gather(rows_q).str.contains(QUOTED).to_numpy()
    low, high = segment_sums(low, lens), segment_sums(high, lens)
    mask = (1 << 32) - 1
    return {"content": segment_sums(weight, lens), "quoted": quoted, "words": low & mask,
            "function": low >> 32, "names": high & mask, "separators": high >> 32}


def _parts(tok: pl.Series, names, bounds: np.ndarray, check_case: np.ndarray) -> dict[str, np.ndarray]:
    """Sums over the parts (``TOKEN``) of tokens the table lacks, one value per token
    (tokens grouped by list: ``bounds``). The first part of a token is counted as inside a
    sentence; ``lead_*`` say what changes when the token starts a sentence: the first part
    is then no name (its weight back to its own, ``lead_name_weight`` more), and a function
    word if it is one."""
    sub = tok.str.replace_all(r"['’]s\b", "").str.extract_all(TOKEN)  # "dog's" is "dog"
    n = sub.list.len().to_numpy().astype(np.int64)
    part = sub.explode().drop_nulls()
    low = part.str.to_lowercase()
    at = np.concatenate([[0], np.cumsum(n)])[bounds]  # each list's run of parts
    packed, hit = lookup_lists(low.hash(HASH_SEED).to_numpy(), names, at, keyed)
    miss = np.flatnonzero(~hit)
    if len(miss):
        packed[miss] = _second_pass(low.gather(miss), names, np.searchsorted(miss, at))
    kind, _, _, own = unpack(packed)
    starts = np.cumsum(n) - n
    lead = np.zeros(len(part), dtype=bool)
    lead[starts[n > 0]] = True
    after_stop = np.zeros(len(part), dtype=bool)
    after_stop[1:] = (kind[:-1] == STOP) & ~lead[1:]
    wordish = (kind == CONTENT) | (kind == FUNCTION) | (kind == UNKNOWN)
    upper = (part != low).to_numpy() & np.repeat(check_case, n)
    names_ = wordish & upper & ~after_stop
    weight = np.where(names_, np.minimum(own, int(NAME_WEIGHT * SCALE)), own)
    function = (kind == FUNCTION) & ~names_
    last = np.cumsum(n) - 1
    ends = np.zeros(len(n), dtype=bool)
    ends[n > 0] = kind[last[n > 0]] == STOP
    lead_name = np.zeros(len(n), dtype=np.int64)
    lead_name_weight = np.zeros(len(n), dtype=np.int64)
    lead_function = np.zeros(len(n), dtype=np.int64)
    has = n > 0
    first = starts[has]
    lead_name[has] = names_[first]
    lead_name_weight[has] = own[first] - weight[first]
    lead_function[has] = kind[first] == FUNCTION
    return {
        "weight": segment_sums(weight, n),
        "words": segment_sums((wordish | (kind == NUMBER) | (kind == CODE)).astype(np.int64), n),
        "function": segment_sums(function.astype(np.int64), n),
        "names": segment_sums(names_.astype(np.int64), n),
        "separators": segment_sums((kind == SEPARATOR).astype(np.int64), n),
        "ends": ends,
        "lead_name": lead_name,
        "lead_name_weight": lead_name_weight,
        "lead_function": lead_function,
    }


def _unrepeated(weight: np.ndarray, key: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """``weight``, 0 where a word of weight 1 or more repeats (by the hash it was looked
    up by) one of the REPEAT_WINDOW such words before it in the same caption."""
    at = np.flatnonzero(weight >= SCALE)
    k = key[at]
    pairs = [(i + shift, i) for shift in range(1, REPEAT_WINDOW + 1)  # a loop over offsets, not rows
             for i in [np.flatnonzero(k[shift:] == k[:-shift])]]
    later, earlier = (np.concatenate(side) for side in zip(*pairs))
    ends = np.cumsum(lens)  # the same word in the same caption (a row by its tokens' end)
    same = np.searchsorted(ends, at[later], side="right") == np.searchsorted(ends, at[earlier], side="right")
    again = np.zeros(len(k), dtype=bool)
    again[later[same]] = True
    out = weight.copy()
    out[at[again]] = 0
    return out


def sentence_factor(f: dict[str, np.ndarray], lang: str) -> np.ndarray:
    """FLOOR .. 1: how much a caption reads as a sentence. Two shares, each shrunk towards
    its plain-sentence level by PRIOR_WORDS pseudo-words: function words among words and
    list separators (the glue of a sentence against the glue of a list); capitalised
    words inside a sentence among words (Title Case, runs of names), which a share up to
    NAME_SHARE does not penalise."""
    level = sentence_share(lang)
    glue = (f["function"] + PRIOR_WORDS * level) / (f["words"] + f["separators"] + PRIOR_WORDS)
    sentence = np.clip(glue / level, 0.0, 1.0)
    names = f["names"] / (f["words"] + PRIOR_WORDS)
    sentence *= np.clip((1.0 - names) / (1.0 - NAME_SHARE), 0.0, 1.0)
    return FLOOR + (1.0 - FLOOR) * sentence


def _score_texts(text: pl.Series, lang, rows: np.ndarray | None = None) -> np.ndarray:
    """Points (thousandths) of captions by wordfreq list ("" = none): one ``lang`` for all,
    or the lists of consecutive runs of rows (``rows``: their bounds)."""
    f = features(text, lang, rows)
    content = f["content"] + f["quoted"] * int(TEXT_BONUS * SCALE)
    if rows is None:
        factor = sentence_factor(f, lang) if lang else 1.0
    else:
        factor = np.ones(len(text))
        for name, lo, hi in list_runs(lang, rows):  # a loop over languages, not rows
            if name:
                factor[lo:hi] = sentence_factor({k: v[lo:hi] for k, v in f.items()}, name)
    return np.round(content * factor).astype(np.int64)


def _second_pass(low: pl.Series, names, bounds: np.ndarray) -> np.ndarray:
    """Packed values of lower-case parts (``TOKEN``) the table lacks, grouped by list
    (``bounds``): other spellings of a listed word ("groß" is listed as "gross"), numbers,
    codes, Chinese/Japanese runs, punctuation (where there is no table) and unknown words."""
    listed = per_list([bool(name) for name in names], bounds)
    unknown = np.where(listed, int(UNKNOWN_WEIGHT * SCALE), int(NO_TABLE_WEIGHT * SCALE))
    out = pack(unknown, 0, UNKNOWN).astype(np.int64)
    digits = low.str.count_matches(r"\p{N}").to_numpy()
    number = digits == low.str.len_chars().to_numpy()
    out[number] = pack(np.where(digits[number] <= 2, int(NUMBER_WEIGHT * SCALE), 0), 0, NUMBER)
    out[~number & (digits > 0)] = pack(0, 0, CODE)  # a code: "dsc0042", "x200"
    out[low.is_in(STOPS).to_numpy()] = pack(0, 0, STOP)
    out[low.is_in(SEPARATORS).to_numpy()] = pack(0, 0, SEPARATOR)
    fold = low.str.contains_any(["ß", "ς"]).arg_true().to_numpy()
    if len(fold) and listed[fold].any():
        again = low.gather(fold).str.replace_many(["ß", "ς"], ["ss", "σ"]).hash(HASH_SEED).to_numpy()
        value, hit = lookup_lists(again, names, np.searchsorted(fold, bounds), keyed)
        out[fold[hit]] = value[hit]
    cjk = low.str.contains(f"^[{HAN}{KANA}]").arg_true().to_numpy()
    if len(cjk):  # Japanese rows by the ja list, all others by the zh list
        ja = per_list([name == "ja" for name in names], bounds)[cjk]
        for script, at in (("ja", cjk[ja]), ("zh", cjk[~ja])):
            if len(at):
                out[at] = pack(_cjk(low.gather(at), script), 0, CJK)
    return out


def _cjk(run: pl.Series, lang: str) -> np.ndarray:
    """Weights (thousandths) of runs of one CJK script that the table lacks: a Han run goes
    to the Han rule; an unlisted katakana run (a loanword) weighs the most, a hiragana run
    (mostly grammar) nothing."""
    v = run.to_frame("r").select(
        pl.when(pl.col("r").str.contains(f"^[{HAN}]")).then(None)
        .when(pl.col("r").str.contains(r"^\p{Hiragana}")).then(0)
        .otherwise(int(MAX_WORD_WEIGHT * SCALE))
    ).to_series()
    return fill_missing(v, run, lambda r: _han(r, lang))


def _han(run: pl.Series, lang: str) -> np.ndarray:
    """Han runs: per character, half the larger weight of the character and of the
    two-character word it starts, each counted only where the list has it."""
    chars = run.str.split("")
    lens = chars.list.len().to_numpy()
    char = chars.explode()
    mapping = traditional_to_simplified() if lang == "zh" else {}
    if mapping:  # (one character for one: the same as replacing in the run)
        char = char.replace(mapping)
    last = np.zeros(len(char), dtype=bool)
    last[np.cumsum(lens) - 1] = True
    pair = pl.select(pl.when(pl.Series(last)).then(None).otherwise(char + char.shift(-1))).to_series()
    keyed = han_keyed(lang)
    one = lookup(char, keyed).fill_null(0)
    two = lookup(pair, keyed)
    two = pl.select(pl.when(pair.is_not_null()).then(two).otherwise(0).fill_null(0)).to_series()
    per_char = pl.select(pl.max_horizontal(one, two) // 2).to_series().to_numpy()
    return segment_sums(per_char, lens)
