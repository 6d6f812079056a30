"""Specificity's frozen reference tables: wordfreq's packaged "small" lists turned into
packed (weight, kind) entries keyed by 64-bit token hashes, cached on disk per filter,
wordfreq and polars version, and looked up for a whole batch at once."""
from __future__ import annotations

import gzip
import hashlib
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import polars as pl

from curate.errors import CurateError, first_line
from curate.scoring.filters.specificity_words import (
    ABSTRACT,
    ABSTRACT_WEIGHT,
    ALIASES,
    ATTRIBUTE_BONUS,
    ATTRIBUTES,
    CAP_BITS,
    CODE,
    CONCRETE_EXCEPTIONS,
    CONTENT,
    EMPTY,
    END_BITS,
    FLAG_BITS,
    FUNCTION,
    FUNCTION_RANK,
    GENERIC,
    GENERIC_PENALTY,
    HAN,
    HASH_SEED,
    KANA,
    KIND_BITS,
    MAX_WORD_WEIGHT,
    NO_CONTENT,
    NON_WORDS,
    NUMBER,
    NUMBER_WEIGHT,
    NUMBERS_LISTED,
    PERSONAL,
    SCALE,
    SENTENCE_FRACTION,
    SEPARATOR,
    SEPARATORS,
    STOP,
    STOPS,
    UNKNOWN,
    VERSION,
    ZIPF_ZERO,
)


def wordfreq_data() -> Path:
    """wordfreq's data folder, found without importing wordfreq (0.25 CPU-s per process)."""
    spec = find_spec("wordfreq")
    if spec is None or not spec.submodule_search_locations:
        raise CurateError("wordfreq is not installed; pip install wordfreq")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


@lru_cache(maxsize=1)
def table_languages() -> frozenset[str]:  # the "small" lists, by file name (as wordfreq finds them)
    return frozenset(p.name.split(".")[0].split("_", 1)[1] for p in wordfreq_data().glob("small_*.msgpack.gz"))


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
    """``w -> weight, function`` for one wordfreq language (built once per process).

    weight = clip(7 - zipf, 0, 4), zipf being log10 of a word's occurrences per billion
    words in wordfreq's list: the rarer a word in general text, the more it says about the
    image. ``function`` marks the FUNCTION_RANK most frequent words. For English the closed
    classes above adjust the weight. Entries the tokeniser never produces (digits,
    punctuation, apostrophes, capitals) are left out; single letters weigh 0 outside
    Chinese and Japanese; of Han-script entries only single characters and pairs are kept
    (the only units the Han rule looks up).
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
        .filter(w.str.contains(r"^[\p{L}\p{M}]+$"))
        .filter(w == w.str.to_lowercase())
        .filter(~w.str.contains(HAN) | (w.str.contains(f"^[{HAN}]{{1,2}}$")))
        .unique("w", keep="first", maintain_order=True)
        .with_row_index("rank")
        .select(
            "w",
            pl.when((w.str.len_chars() == 1) & ~w.str.contains(f"[{HAN}{KANA}]")).then(0.0)
            .otherwise((ZIPF_ZERO - zipf).clip(0.0, MAX_WORD_WEIGHT)).alias("weight"),
            (pl.col("rank") < FUNCTION_RANK).alias("function"),
            (10.0 ** (zipf - 9.0)).alias("frequency"),
        )
    )
    if lang != "en":
        return df
    classes = pl.DataFrame({
        "w": ATTRIBUTES + NO_CONTENT + GENERIC + PERSONAL,
        "cls": ["attr"] * len(ATTRIBUTES) + ["none"] * len(NO_CONTENT) + ["generic"] * len(GENERIC)
        + ["personal"] * len(PERSONAL),
    }).unique("w", keep="first", maintain_order=True)
    weight = pl.col("weight").fill_null(MAX_WORD_WEIGHT)
    return df.join(classes, on="w", how="full", coalesce=True, maintain_order="left").select(
        "w",
        pl.when(pl.col("cls") == "none").then(0.0)
        .when(pl.col("cls").is_in(["generic", "personal"])).then(-GENERIC_PENALTY)
        .when(pl.col("cls") == "attr").then(weight + ATTRIBUTE_BONUS)
        .when(pl.col("w").str.contains(ABSTRACT) & ~pl.col("w").is_in(CONCRETE_EXCEPTIONS))
        .then(weight.clip(upper_bound=ABSTRACT_WEIGHT))
        .otherwise(weight).alias("weight"),
        pl.col("function").fill_null(False) & (pl.col("cls") != "personal").fill_null(True),
        pl.col("frequency").fill_null(0.0),
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

        from curate.layout import SPECIFICITY_CACHE, cache_root

        name = (f"{build.__name__.strip('_')}-v{VERSION}-wordfreq{version('wordfreq')}"
                f"-polars{pl.__version__}-sorted-{lang}.arrow")
        path = cache_root() / SPECIFICITY_CACHE / name
        try:  # in one chunk: a lookup's ``to_numpy`` is then a view, not a copy
            return pl.read_ipc(path).rechunk()
        except Exception:  # noqa: BLE001 - missing or damaged: rebuild below
            pass
        table = build(lang).rechunk()
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
def keyed(lang: str) -> pl.DataFrame:
    """The table keyed by ``hash(lower-case token)``, for tokens between spaces. Each value
    packs a weight in thousandths, what the token ends with and its kind
    (``value = thousandths * 64 + end * 16 + kind``): each word as it stands and followed
    by a full stop (end STOP) or a comma (end SEPARATOR), a content or a function word;
    and lone punctuation marks (sentence ends and list separators, weight 0). Words with
    Han characters are left to ``han_keyed``: the Han rule looks them up, never whole
    tokens.
    """
    w = pl.col("w")
    words = reference_table(lang).filter(~w.str.contains(HAN)).select(
        "w", "weight", end=pl.lit(0), kind=pl.when(pl.col("function")).then(FUNCTION).otherwise(CONTENT), cap=pl.lit(0)
    )
    capital = words.with_columns(w.str.slice(0, 1).str.to_uppercase() + w.str.slice(1), cap=pl.lit(1))
    words = pl.concat([words, capital.filter(pl.col("w") != words["w"])])
    forms = pl.concat([words, words.with_columns(w + ".", end=pl.lit(STOP)),
                       words.with_columns(w + ",", end=pl.lit(SEPARATOR))])
    marks = pl.DataFrame({
        "w": STOPS + SEPARATORS + NON_WORDS,
        "weight": [0.0] * (len(STOPS) + len(SEPARATORS) + len(NON_WORDS)),
        "end": [0] * (len(STOPS) + len(SEPARATORS) + len(NON_WORDS)),
        "kind": [STOP] * len(STOPS) + [SEPARATOR] * len(SEPARATORS) + [EMPTY] * len(NON_WORDS),
        "cap": [0] * (len(STOPS) + len(SEPARATORS) + len(NON_WORDS)),
    })
    # common numbers, as the second pass would score them (so that they need none)
    n = pl.DataFrame({"w": [str(i) for i in range(NUMBERS_LISTED)]}).with_columns(
        weight=pl.when(pl.col("w").str.len_chars() <= 2).then(NUMBER_WEIGHT).otherwise(0.0),
        end=pl.lit(0), kind=pl.lit(NUMBER), cap=pl.lit(0))
    numbers = pl.concat([n, n.with_columns(w + ".", end=pl.lit(STOP)), n.with_columns(w + ",", end=pl.lit(SEPARATOR))])
    both = pl.concat([forms, marks, numbers], how="vertical_relaxed")
    thousandths = (pl.col("weight") * SCALE).round().cast(pl.Int64)
    return _hashed(both.with_columns(weight=pack(thousandths, pl.col("end"), pl.col("kind"), pl.col("cap"))))


@_disk_cached
def _function_share(lang: str) -> pl.DataFrame:
    """One row: the share of the language's running text that its function words make up
    (the sum of their wordfreq frequencies)."""
    table = reference_table(lang)
    return pl.DataFrame({"share": [float(table.filter(pl.col("function"))["frequency"].sum())]})


@lru_cache(maxsize=None)
def sentence_share(lang: str) -> float:
    """The share of function words that makes a caption read as a sentence in ``lang``:
    SENTENCE_FRACTION of their share of the language's running text."""
    return SENTENCE_FRACTION * float(_function_share(lang)["share"][0])


@_disk_cached
def han_keyed(lang: str) -> pl.DataFrame:
    """Single Han characters and two-character words of one list (zh or ja), keyed."""
    return _hashed(reference_table(lang).filter(pl.col("w").str.contains(f"^[{HAN}]{{1,2}}$"))
                   .with_columns(pl.col("weight") * SCALE))


def _hashed(words: pl.DataFrame) -> pl.DataFrame:
    """``k`` (the word's hash) -> ``v`` (the integer value), sorted by ``k`` for
    :func:`lookup`; the first entry of a word wins."""
    return words.select(
        pl.col("w").hash(HASH_SEED).alias("k"), pl.col("weight").round().cast(pl.Int64).alias("v")
    ).unique("k", keep="first", maintain_order=True).sort("k")


@lru_cache(maxsize=1)
def wordfreq_digest() -> str:
    from curate.hashing import file_sha256

    data, h = wordfreq_data(), hashlib.sha256()
    for f in sorted(data.glob("small_*")) + [data / "_chinese_mapping.msgpack.gz"]:
        h.update(f"{f.name} {file_sha256(f)}\n".encode())
    return h.hexdigest()


@lru_cache(maxsize=1)
def traditional_to_simplified() -> dict[str, str]:
    """wordfreq's own character map (its Chinese list is in Simplified characters). Without
    it Traditional Chinese would score differently under the same filter version, so a map
    that cannot be read is an error, never an empty map."""
    import msgpack

    path = wordfreq_data() / "_chinese_mapping.msgpack.gz"
    try:
        with gzip.open(path) as f:
            mapping = msgpack.load(f, raw=False, strict_map_key=False)
    except (OSError, ValueError, msgpack.UnpackException) as e:
        raise CurateError(f"{path}: wordfreq's Traditional-to-Simplified map is unreadable ({first_line(e)}); "
                          "reinstall wordfreq") from None
    return {chr(k): v for k, v in mapping.items() if chr(k) != v}


#: Up to this many tokens (all, by default), a lookup is a bucketed search in the table's
#: sorted keys (``_buckets``): a hash's top bits give the first key of its bucket, and a
#: bucket holds one key or two, so that a token costs about one read of the keys where a
#: binary search costs 18 and a join hashes the whole 300k-word table every time. Beyond
#: it, a join (the same values: a test checks that both agree).
SEARCH_MAX_TOKENS = 1 << 62

#: the bucket index of each table looked up, by ``id`` (with the table, so that the id
#: is never reused while the entry lives)
_BUCKETS: dict[int, tuple] = {}


def _buckets(keyed: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.uint64]:
    """keys, values, bucket starts and the shift that gives a hash's bucket (its top bits),
    for a table sorted by key: about 4 buckets for 3 keys; ``starts[b]..starts[b+1]`` are
    the positions of bucket ``b``'s keys."""
    got = _BUCKETS.get(id(keyed))
    if got is not None and got[0] is keyed:
        return got[1:]
    keys, values = keyed["k"].to_numpy(), keyed["v"].to_numpy()
    bits = len(keys).bit_length() + 1
    shift = np.uint64(64 - bits)
    starts = np.zeros((1 << bits) + 1, dtype=np.int32)
    np.cumsum(np.bincount((keys >> shift).astype(np.intp), minlength=1 << bits), out=starts[1:])
    _BUCKETS[id(keyed)] = (keyed, keys, values, starts, shift)
    return keys, values, starts, shift


def lookup(tokens: pl.Series, keyed: pl.DataFrame | None, hashes: pl.Series | None = None) -> pl.Series:
    """Values of tokens in a keyed table (sorted by key); null where absent. ``hashes``: the
    tokens' hashes, where the caller has them already. (No ``pa.array``: it imports pandas.)"""
    values, hit = lookup_np(tokens, keyed, hashes)
    return pl.select(pl.when(pl.Series(hit)).then(pl.Series(values))).to_series()


def lookup_np(tokens: pl.Series | None, keyed: pl.DataFrame | None, hashes=None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Values of tokens in a keyed table (0 where absent) and where they were found.
    ``hashes`` (a Series or an array) stand for the tokens where the caller has them."""
    n = len(tokens) if hashes is None else len(hashes)
    if keyed is None or keyed.height == 0:
        return np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool)
    h = tokens.hash(HASH_SEED) if hashes is None else hashes
    if n > SEARCH_MAX_TOKENS:
        # (the lazy join is about 40% faster than the eager one here)
        h = h if isinstance(h, pl.Series) else pl.Series(h, dtype=pl.UInt64)
        v = (h.to_frame("k").lazy().join(keyed.lazy(), on="k", how="left", maintain_order="left")
             .select(pl.col("v").is_not_null().alias("hit"), pl.col("v").fill_null(0)).collect())
        return v["v"].to_numpy(), v["hit"].to_numpy()
    keys, values, starts, shift = _buckets(keyed)
    h = h.to_numpy() if isinstance(h, pl.Series) else h
    b = (h >> shift).astype(np.intp)
    pos = np.minimum(starts[b], len(keys) - 1)  # the bucket's first key (another bucket's never equals h)
    hit = keys[pos] == h
    rest = np.flatnonzero(~hit)
    rest = rest[starts[b[rest] + 1] - pos[rest] > 1]
    p = pos[rest] + 1
    while len(rest):  # the bucket's next keys: a loop over offsets (a bucket holds a few), not rows
        inside = p < starts[b[rest] + 1]
        rest, p = rest[inside], p[inside]
        eq = keys[p] == h[rest]
        pos[rest[eq]] = p[eq]
        hit[rest[eq]] = True
        rest, p = rest[~eq], p[~eq] + 1
    return np.where(hit, values[pos], 0), hit


def list_runs(names, bounds: np.ndarray) -> list[tuple[str, int, int]]:
    """(list, start, end) of each list's non-empty run of elements."""
    return [(name, int(bounds[i]), int(bounds[i + 1])) for i, name in enumerate(names) if bounds[i + 1] > bounds[i]]


def per_list(values, bounds: np.ndarray) -> np.ndarray:
    """One value per list, repeated over its run of elements."""
    return np.repeat(np.asarray(values), np.diff(bounds))


def lookup_lists(hashes: np.ndarray, names, bounds: np.ndarray, table) -> tuple[np.ndarray, np.ndarray]:
    """Packed values and hits of hashes grouped by list (``bounds``), each run in its
    list's table (``table(name)``; none for the list "")."""
    packed = np.zeros(len(hashes), dtype=np.int64)
    hit = np.zeros(len(hashes), dtype=bool)
    for name, lo, hi in list_runs(names, bounds):  # a loop over languages, not rows
        if name:
            packed[lo:hi], hit[lo:hi] = lookup_np(None, table(name), hashes[lo:hi])
    return packed, hit


def segment_sums(values: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Sums of consecutive segments of these lengths (0 for an empty one); exact for integers."""
    ends = np.cumsum(lens)
    total = np.concatenate([[0], np.cumsum(values, dtype=np.int64)])
    return total[ends] - total[ends - lens]


def fill_missing(found: pl.Series, parts: pl.Series, score_missing) -> np.ndarray:
    """``found`` as an array, its nulls replaced by ``score_missing(parts at the nulls)``."""
    out = found.fill_null(0).to_numpy().copy()
    missing = found.is_null().arg_true().to_numpy()
    if len(missing):
        out[missing] = score_missing(parts.gather(missing))
    return out


@lru_cache(maxsize=1)
def token_classes() -> dict[str, np.ndarray]:
    """What a token between spaces is, by the flags of its packed value (kind, end mark,
    capital; its low FLAG_BITS): ``stop`` (a sentence end, or ends with one),
    ``capital_word`` (a word written capitalised), ``function`` (1: a function word),
    ``low`` (1 per word + 1 << 32 per function word) and ``high`` (1 << 32 per list
    separator, or ending with one; names are added where they are found)."""
    flags = np.arange(1 << FLAG_BITS)
    kind, end, cap, _ = unpack(flags)
    word = (kind == CONTENT) | (kind == FUNCTION) | (kind == UNKNOWN)
    function = (kind == FUNCTION).astype(np.int64)
    return {
        "stop": (kind == STOP) | (end == STOP),
        "capital_word": word & cap,
        "function": function,
        "low": (word | (kind == NUMBER) | (kind == CODE)).astype(np.int64) + (function << 32),
        "high": ((kind == SEPARATOR) | (end == SEPARATOR)).astype(np.int64) << 32,
    }


def pack(weight, end, kind, cap=0):
    """One integer for a token's weight (thousandths), capitalisation, end mark and kind."""
    return ((weight * (1 << CAP_BITS) + cap) * (1 << END_BITS) + end) * (1 << KIND_BITS) + kind


def unpack(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """kind, end mark, capitalised, weight (thousandths) of packed values."""
    kind = packed & ((1 << KIND_BITS) - 1)
    end = (packed >> KIND_BITS) & ((1 << END_BITS) - 1)
    cap = ((packed >> (KIND_BITS + END_BITS)) & 1).astype(bool)
    return kind, end, cap, packed >> FLAG_BITS
