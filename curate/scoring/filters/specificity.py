"""Specificity: how concrete and descriptive a caption is, from a frozen word-rarity table.

The rule is in the ``Specificity`` docstring. How it is computed, fast and batch-independent:

* The reference tables come from wordfreq's packaged "small" frequency lists (exactly the
  words of zipf above 3; about 0.05 s per language to load), once per process. Rarer words
  all weigh the maximum, so a word absent from the list weighs what a listed rare word would.
* Rows are scored in groups, one per wordfreq list (the batch's languages), so each lookup
  is one hash join of 64-bit token hashes against one language's table.
* Most tokens are found as they stand: the words between spaces, in the forms the table
  also holds (lower-case, capitalised, with a full stop or comma). Only the rest (other
  punctuation, numbers, unknown words, Chinese/Japanese) go through a second pass on that
  small subset: lower-case, split at punctuation, look up again. Each form in the table is
  one the second pass reduces to the same word, so the result is the same as tokenising
  every caption the slow way.
* Weights are summed as integers (thousandths), so a caption's score is exact and identical
  whatever else is in its batch.
"""
from __future__ import annotations

import gzip
from functools import lru_cache

import numpy as np
import polars as pl
import pyarrow as pa

from curate.scoring.filters.base import TEXT, Filter

# -- closed English word classes ---------------------------------------------------------
# Colour, material, size/shape and count vocabulary after the attribute categories of
# Visual Genome; spatial relations after its relationship predicates. Each class word earns
# ATTRIBUTE_BONUS on top of its rarity.
COLOURS = """red orange yellow green blue purple pink brown black white gray grey silver gold golden
beige tan maroon navy teal turquoise violet crimson cream ivory bronze copper striped spotted
plaid checkered dark light bright pale colorful colourful multicolored""".split()
MATERIALS = """wooden wood metal metallic plastic glass stone brick concrete leather cotton wool
denim paper cardboard ceramic marble steel iron rubber fabric silk straw wicker tiled""".split()
SIZES = """small large big tiny huge tall short long wide narrow thin thick little giant
round square rectangular circular curved flat empty full""".split()
#: exact counts only: "three" says more than "several" (vague quantifiers are in VAGUE)
COUNTS = """one two three four five six seven eight nine ten eleven twelve twenty dozen pair
both single double triple twin twins half""".split()
#: one-word relations. "top", "front", "next" and "side" are left out: they mostly occur in
#: stock phrases ("on top of", "in front of", "next to") and keep only their rarity.
SPATIAL = """near beside behind under underneath below above between inside outside across along
against around atop beneath opposite toward towards left right center centre middle corner
background foreground edge""".split()
#: words that announce text visible in the image
TEXT_WORDS = """says reads saying lettering inscription logo labeled labelled written writing
text words letters sign signs banner""".split()
ATTRIBUTES = COLOURS + MATERIALS + SIZES + COUNTS + SPATIAL + TEXT_WORDS

#: English words that carry no content in a caption (weight 0, however rare): vague
#: quantifiers ("a group of", "a couple of"), the existential verbs of stock captions ("a
#: bench sitting in a park") and words about the picture rather than what is in it.
VAGUE = """group groups couple bunch bunches lot lots number variety several many few some
various assorted assortment kind kinds type types sort sorts array plenty numerous multiple""".split()
FILLER = """sitting standing sits stands sit stand laying lying lays lies located seen shown
displayed pictured depicted featuring features there""".split()
PICTURE = """picture pictures photo photos photograph photographs image images pic pics shot
shots view views closeup close up scene snapshot stock""".split()
NO_CONTENT = VAGUE + FILLER + PICTURE
#: evaluative or empty words: they make a caption generic, and each costs GENERIC_PENALTY
GENERIC = """beautiful nice amazing awesome cool lovely stunning great gorgeous cute perfect best
wonderful fantastic incredible epic adorable pretty something stuff thing things someone
somebody object objects item items""".split()

ZIPF_ZERO = 7.0  # weight = 7 - zipf: "the", "of", "a" (zipf above 7) carry nothing
MAX_WORD_WEIGHT = 4.0  # words of zipf 3 and below (one per million words or rarer)
ATTRIBUTE_BONUS = 1.0  # about one more content word
GENERIC_PENALTY = 1.5
NUMBER_WEIGHT = 2.0  # a number in digits: a count, a year, a model
NO_TABLE_WEIGHT = 1.0  # per word, in a language wordfreq has no list for
TEXT_BONUS = 2.0  # the caption quotes text seen in the image
SCALE = 1000  # weights are summed as integer thousandths

#: language labels (fastText's) -> wordfreq's code, where they differ
ALIASES = {"no": "nb", "tl": "fil", "hr": "sh", "sr": "sh", "bs": "sh"}
HAN = r"\p{Han}"
KANA = r"\p{Hiragana}\p{Katakana}ー"
QUOTES = ['"', "“", "”", "«", "»", "「", "」"]
QUOTED = r"\"[^\"]{1,80}\"|“[^”]{1,80}”|«[^»]{1,80}»|「[^」]{1,80}」"
PUNCTUATION = ".,;:!?-–—&|/()[]'*+•·…"  # lone marks between spaces (not quotes: see QUOTED)
HASH_SEED = 0x5EED


@lru_cache(maxsize=1)
def table_languages() -> frozenset[str]:
    import wordfreq

    return frozenset(wordfreq.available_languages("small"))


def table_language(lang: str | None) -> str:
    """The wordfreq list for a caption's ``lang`` ("pt-BR" and "zh_Hant" use their
    language's list): English when ``lang`` is null, "" (none) when wordfreq has no list
    for the language."""
    if lang is None:
        return "en"
    code = lang.lower().replace("_", "-").split("-")[0]
    code = ALIASES.get(code, code)
    return code if code in table_languages() else ""


@lru_cache(maxsize=None)
def reference_table(lang: str) -> pl.DataFrame:
    """``w -> weight`` for one wordfreq language (built once per process).

    weight = clip(7 - zipf, 0, 4), zipf being log10 of a word's occurrences per billion
    words in wordfreq's list: the rarer a word in general text, the more it says about the
    image. For English the closed classes above adjust it. Entries the tokeniser can never
    produce (digits, punctuation, capitals, a possessive 's) are left out; single letters weigh 0
    outside Chinese and Japanese; of Han-script entries only single characters and pairs
    are kept (the only units the Han rule looks up).
    """
    import wordfreq

    # bucket i of the packed list holds the words of zipf 9 - i/100; the "small" list is
    # exactly the words of zipf above 3 (it agrees with the large list on all of them)
    pack = wordfreq.get_frequency_list(lang, wordlist="small")
    zipf = 9.0 - pl.col("bucket").cast(pl.Float64) / 100.0
    w = pl.col("w")
    df = (
        pl.DataFrame({"w": pack}, schema={"w": pl.List(pl.String)})
        .with_row_index("bucket")
        .explode("w")
        .drop_nulls("w")
        .filter(w.str.contains(r"^[\p{L}\p{M}]+(?:'[\p{L}\p{M}]+)*$") & ~w.str.ends_with("'s"))
        .filter(w == w.str.to_lowercase())
        .filter(~w.str.contains(HAN) | (w.str.contains(f"^[{HAN}]{{1,2}}$")))
        .unique("w", keep="first", maintain_order=True)
        .select(
            "w",
            pl.when((w.str.len_chars() == 1) & ~w.str.contains(f"[{HAN}{KANA}]")).then(0.0)
            .otherwise((ZIPF_ZERO - zipf).clip(0.0, MAX_WORD_WEIGHT)).alias("weight"),
        )
    )
    if lang != "en":
        return df
    classes = pl.DataFrame({
        "w": ATTRIBUTES + NO_CONTENT + GENERIC,
        "cls": ["attr"] * len(ATTRIBUTES) + ["none"] * len(NO_CONTENT) + ["generic"] * len(GENERIC),
    }).unique("w", keep="first", maintain_order=True)
    weight = pl.col("weight").fill_null(MAX_WORD_WEIGHT)
    return df.join(classes, on="w", how="full", coalesce=True, maintain_order="left").select(
        "w",
        pl.when(pl.col("cls") == "none").then(0.0)
        .when(pl.col("cls") == "generic").then(-GENERIC_PENALTY)
        .when(pl.col("cls") == "attr").then(weight + ATTRIBUTE_BONUS)
        .otherwise(weight).alias("weight"),
    )


def _disk_cached(build):
    """Keep a keyed table in the user's cache folder (an Arrow IPC file), so that a worker
    reads it in milliseconds instead of rebuilding it from wordfreq (about 0.1 to 0.5 CPU-s
    per language in every worker of every run). The file name carries every version the
    table depends on: this filter's, wordfreq's and polars' (whose hash keys the table), and
    its layout (sorted by key). A file that cannot be read is rebuilt; a cache folder that
    cannot be written is skipped."""

    @lru_cache(maxsize=None)
    def cached(lang: str) -> pl.DataFrame:
        import os
        from importlib.metadata import version

        from curate.layout import cache_root

        name = (f"{build.__name__.strip('_')}-v{Specificity.version}-wordfreq{version('wordfreq')}"
                f"-polars{pl.__version__}-sorted-{lang}.arrow")
        path = cache_root() / "specificity" / name
        try:
            return pl.read_ipc(path)
        except Exception:  # noqa: BLE001 - missing or damaged: rebuild below
            pass
        table = build(lang)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{os.getpid()}-{name}")
            table.write_ipc(tmp)
            os.replace(tmp, path)
        except OSError:
            pass
        return table

    cached.__wrapped__ = build
    return cached


@_disk_cached
def _keyed(lang: str) -> pl.DataFrame:
    """The table keyed by ``hash(token)``, weights in thousandths, for whole tokens.

    Besides each word it holds the forms a caption most often writes it in, so that the
    first pass finds them as they stand: capitalised ("Dog"), and followed by a full stop
    or comma ("dog.", "Dog,"); and lone punctuation marks (weight 0). Each form is one the
    second pass reduces to that word alone. Words with Han characters are left to
    ``_han_keyed``: the Han rule looks them up, never whole tokens.
    """
    w = pl.col("w")
    plain = reference_table(lang).filter(~w.str.contains(HAN)).with_columns(lower=w)
    capital = plain.with_columns(w.str.slice(0, 1).str.to_uppercase() + w.str.slice(1)).filter(
        (w != pl.col("lower")) & (w.str.to_lowercase() == pl.col("lower"))
    )
    forms = pl.concat([plain, capital]).drop("lower")
    forms = pl.concat([forms] + [forms.with_columns(w + p) for p in (".", ",")])
    marks = pl.DataFrame({"w": list(PUNCTUATION), "weight": [0.0] * len(PUNCTUATION)})
    return _hashed(pl.concat([forms, marks]))


@_disk_cached
def _han_keyed(lang: str) -> pl.DataFrame:
    """Single Han characters and two-character words of one list (zh or ja), keyed."""
    return _hashed(reference_table(lang).filter(pl.col("w").str.contains(f"^[{HAN}]{{1,2}}$")))


def _hashed(words: pl.DataFrame) -> pl.DataFrame:
    """``k`` (the word's hash) -> ``v`` (weight in thousandths), sorted by ``k`` for
    :func:`_lookup`; the first entry of a word wins."""
    return words.select(
        pl.col("w").hash(HASH_SEED).alias("k"), (pl.col("weight") * SCALE).round().cast(pl.Int64).alias("v")
    ).unique("k", keep="first", maintain_order=True).sort("k")


@lru_cache(maxsize=1)
def _wordfreq_digest() -> str:
    import hashlib
    from importlib.util import find_spec
    from pathlib import Path

    from curate.hashing import file_sha256

    spec = find_spec("wordfreq")  # its data folder, without importing it (0.2 s)
    data = Path(list(spec.submodule_search_locations)[0]) / "data"
    h = hashlib.sha256()
    for f in sorted(data.glob("small_*")) + [data / "_chinese_mapping.msgpack.gz"]:
        h.update(f"{f.name} {file_sha256(f)}\n".encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def _traditional_to_simplified() -> dict[str, str]:
    """wordfreq's own character map (its Chinese list is in Simplified characters)."""
    try:
        import msgpack
        from wordfreq.util import data_path

        with gzip.open(data_path("_chinese_mapping.msgpack.gz")) as f:
            mapping = msgpack.load(f, raw=False, strict_map_key=False)
    except Exception:  # noqa: BLE001 - without the map Traditional text is only scored less well
        return {}
    return {chr(k): v for k, v in mapping.items() if chr(k) != v}


#: Up to this many tokens, a lookup is a binary search (``np.searchsorted``) in the table's
#: sorted keys: it builds nothing, where a join hashes the whole 300k-word table every time
#: (about 20 ms, paid by each of the 30-odd languages of a batch of web captions). Beyond
#: it a join's faster probing wins (about 0.3 against 0.05 s for a million tokens).
SEARCH_MAX_TOKENS = 60_000


def _lookup(tokens: pl.Series, keyed: pl.DataFrame | None) -> pl.Series:
    """Weights (thousandths) of tokens in a keyed table (sorted by key); null where absent."""
    if keyed is None or keyed.height == 0:
        return pl.Series([None] * len(tokens), dtype=pl.Int64)
    h = tokens.hash(HASH_SEED)
    if len(h) > SEARCH_MAX_TOKENS:
        return h.to_frame("k").join(keyed, on="k", how="left", maintain_order="left")["v"]
    keys, values = keyed["k"].to_numpy(), keyed["v"].to_numpy()
    h = h.to_numpy()
    pos = np.searchsorted(keys, h).clip(max=len(keys) - 1)
    hit = keys[pos] == h
    return pl.from_arrow(pa.array(np.where(hit, values[pos], 0), mask=~hit))


def _segment_sums(values: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Sums of consecutive segments of these lengths (each at least 1); exact for integers."""
    if len(lens) == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.zeros(len(lens), dtype=np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    return np.add.reduceat(values, starts)


def _fill_missing(found: pl.Series, parts: pl.Series, score_missing) -> np.ndarray:
    """``found`` as an array, its nulls replaced by ``score_missing(parts at the nulls)``."""
    out = found.fill_null(0).to_numpy().copy()
    missing = found.is_null().arg_true().to_numpy()
    if len(missing):
        out[missing] = score_missing(parts.gather(missing))
    return out


class Specificity(Filter):
    """How concrete and descriptive a caption is. Higher is more specific.

    Rule: the sum, over the caption's words, of how rare each word is in general text:
    ``clip(7 - zipf, 0, 4)`` from wordfreq's frozen frequency list for the caption's
    language (``lang``; English when null). A word missing from the list weighs 4 (it is
    rarer than zipf 3), a number in digits 2, a letter-digit code 0, a single letter 0; in a
    language wordfreq has no list for, every word weighs 1. English closed classes adjust
    this: colour, material, size/shape, exact-count, spatial-relation and text-in-image
    words earn +1; vague quantifiers ("group", "couple", "several"), the existential verbs
    of stock captions ("sitting", "standing") and words about the picture ("photo",
    "image", "view") weigh 0; evaluative and empty words ("beautiful", "nice",
    "something") cost 1.5 each. A caption that quotes text in quotation marks gains 2.

    Chinese and Japanese have no spaces. A run of Han characters is scored character by
    character: each character weighs half (two characters make a word, as in
    ``word_count``) the rarer of itself and of the two-character word it starts, as listed
    in wordfreq's zh list (ja for Japanese rows; Traditional characters mapped to
    Simplified with wordfreq's own map); unlisted units weigh nothing. A kana run is one
    word: looked up whole, otherwise katakana (loanwords) weigh 4 and hiragana (mostly
    grammar) 0. This needs no segmenter and puts a Chinese caption on the scale of its
    English translation (median ratio about 1.0 on Multi30k's aligned captions).

    The tables are frozen, so a caption's score never depends on the rest of its batch.
    Unit: points. A COCO caption scores about 7 to 25, a 100-word description 100 and up,
    empty text 0; a generic caption can go below 0.
    """

    name = "specificity"
    version = 2
    default_min = 4.0

    def model_files(self) -> dict[str, str]:
        """The frozen word tables: one sha256 over wordfreq's "small" lists and its Chinese map."""
        return {"wordfreq-small-lists": _wordfreq_digest()}

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:
        n = batch.height
        text = batch[TEXT].cast(pl.String).fill_null("") if n else pl.Series([], dtype=pl.String)
        if "lang" in batch.columns:
            langs = batch["lang"].cast(pl.String)
        else:
            langs = pl.Series([None] * n, dtype=pl.String)
        labels = langs.unique().to_list()
        lists = {lg: table_language(lg) for lg in labels}
        points = np.zeros(n, dtype=np.int64)
        if len(set(lists.values())) == 1:  # the common case: one list for the whole batch
            points[:] = _score_texts(text, next(iter(lists.values()), "en"))
        else:  # one group of rows per list: a loop over languages, not rows
            row_list = langs.replace_strict(
                [lg for lg in labels if lg is not None], [lists[lg] for lg in labels if lg is not None],
                default=lists.get(None, "en"), return_dtype=pl.String,
            )
            for name in sorted(set(lists.values())):
                rows = (row_list == name).arg_true()
                points[rows.to_numpy()] = _score_texts(text.gather(rows), name)
        return pl.DataFrame({column: points / SCALE})  # numpy division: 1900 -> 1.9 exactly


def _score_texts(text: pl.Series, lang: str) -> np.ndarray:
    """Points (thousandths) of captions that share one wordfreq list ("" = none)."""
    toks = text.str.split(" ")
    lens = toks.list.len().to_numpy()
    tok = toks.explode()
    found = _lookup(tok, _keyed(lang) if lang else None)
    weights = found.fill_null(0).to_numpy().copy()
    miss = found.is_null().arg_true().to_numpy()
    if len(miss) == 0:
        return _segment_sums(weights, lens)
    missed = tok.gather(miss)
    weights[miss] = _second_pass(missed, lang)
    points = _segment_sums(weights, lens)
    # text quoted from the image: quotation marks are never in the table, so only the rows
    # of missed tokens can have them
    quote = missed.str.contains_any(QUOTES).to_numpy()
    if quote.any():
        rows = np.unique(np.repeat(np.arange(len(text)), lens)[miss[quote]])
        quoted = text.gather(rows).str.contains(QUOTED).to_numpy()
        points[rows[quoted]] += int(TEXT_BONUS * SCALE)
    return points


def _second_pass(tok: pl.Series, lang: str) -> np.ndarray:
    """Tokens the first pass did not find: lower-cased, split at punctuation and symbols,
    looked up again; a token's weight is the sum of its parts'."""
    parts = (
        tok.str.to_lowercase()
        .str.replace_many(["’", "ß", "ς"], ["'", "ss", "σ"])  # wordfreq case-folds: "groß" is "gross"
        .str.replace_all(r"'s\b|[^\p{L}\p{M}\p{N}']+", " ")
        .str.strip_chars()
        .str.split(" ")
    )
    lens = parts.list.len().to_numpy()
    part = parts.explode().str.strip_chars("'")
    found = _lookup(part, _keyed(lang) if lang else None)
    return _segment_sums(_fill_missing(found, part, lambda p: _unlisted(p, lang)), lens)


def _unlisted(part: pl.Series, lang: str) -> np.ndarray:
    """Lower-case parts absent from the list: empty, numbers, codes, Chinese/Japanese,
    unknown words."""
    s = pl.col("p")
    digits = s.str.count_matches(r"\p{N}")
    v = part.to_frame("p").select(
        pl.when(s == "").then(0)
        .when(digits == s.str.len_chars()).then(int(NUMBER_WEIGHT * SCALE))
        .when(s.str.contains(f"[{HAN}{KANA}]")).then(None)  # below
        .when(digits > 0).then(0)  # a code: "dsc0042", "x200"
        .otherwise(int((MAX_WORD_WEIGHT if lang else NO_TABLE_WEIGHT) * SCALE))
    ).to_series()
    return _fill_missing(v, part, lambda p: _cjk(p, "ja" if lang == "ja" else "zh"))


def _cjk(part: pl.Series, lang: str) -> np.ndarray:
    """Parts with Han or kana, split into runs of one script. A Han run goes to the Han
    rule. A kana run is one word, looked up whole; unlisted, katakana (loanwords) weigh the
    most and hiragana (mostly grammar) nothing. Other runs ("t" of "t恤") weigh the most."""
    runs = (
        part.str.replace_all(f"([{HAN}]+|\\p{{Hiragana}}+|[\\p{{Katakana}}ー]+)", " $1 ")
        .str.strip_chars()
        .str.split(" ")
    )
    lens = runs.list.len().to_numpy()
    run = runs.explode()
    s = pl.col("r")
    found = _lookup(run, _keyed(lang)).rename("v")
    v = pl.DataFrame({"r": run, "v": found}).select(
        pl.when(pl.col("v").is_not_null()).then(pl.col("v"))
        .when(s == "").then(0)
        .when(s.str.contains(f"^[{HAN}]")).then(None)  # below
        .when(s.str.contains(r"^\p{Hiragana}")).then(0)
        .otherwise(int(MAX_WORD_WEIGHT * SCALE))
    ).to_series()
    return _segment_sums(_fill_missing(v, run, lambda r: _han(r, lang)), lens)


def _han(run: pl.Series, lang: str) -> np.ndarray:
    """Han runs: per character, half the larger weight of the character and of the
    two-character word it starts, each counted only where the list has it."""
    mapping = _traditional_to_simplified() if lang == "zh" else {}
    if mapping:
        run = run.str.replace_many(mapping)
    chars = run.str.split("")
    lens = chars.list.len().to_numpy()
    char = chars.explode()
    last = np.zeros(len(char), dtype=bool)
    last[np.cumsum(lens) - 1] = True
    pair = pl.select(pl.when(pl.Series(last)).then(None).otherwise(char + char.shift(-1))).to_series()
    keyed = _han_keyed(lang)
    one = _lookup(char, keyed).fill_null(0)
    two = _lookup(pair, keyed)
    two = pl.select(pl.when(pair.is_not_null()).then(two).otherwise(0).fill_null(0)).to_series()
    per_char = pl.select(pl.max_horizontal(one, two) // 2).to_series().to_numpy()
    return _segment_sums(per_char, lens)
