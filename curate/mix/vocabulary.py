"""Concept vocabularies: the text normalisation of MetaCLIP's substring rule, vocabulary
files, and the default vocabulary built from the data itself.

**Normalisation** (MetaCLIP's ``spacing``, lower-cased): ``" " + lower(text) + " "`` with
each of ``, . ; : ? ! ` `` wrapped in spaces and tab, newline and carriage return made spaces.
An entry is normalised the same way and matches a caption when ``" entry "`` is a substring
of the normalised caption; an entry that starts or ends in a character of a script written
without spaces (Han, Hiragana, Katakana, Thai, Lao, Myanmar, Khmer, Tibetan) gets no space
on that side (MetaCLIP 2's rule), so Chinese entries match inside Chinese text.

**Vocabulary files**: a ``.txt`` file holds one entry a line (``#`` starts a comment line)
for every row; a ``.json`` file holds a list of entries (every row) or an object mapping a
language code (the run's ``lang`` column) to its list, with ``"*"`` for the rows whose
language has no list of its own (rows of such a language are matched against nothing when
there is no ``"*"``). A run's ``concepts/concepts.json`` is a vocabulary file too.

**Default vocabulary** (no file given): one list per language of the rows (their ``lang``
column; ``"*"`` for rows without one), built from that language's rows: the words of the
normalised caption (tokens of two or more characters that start with a letter and hold
only letters, ``'`` and ``-``) that are not stop words, and the pairs of such words that
stand next to each other. Stop words are a built-in English list plus, for another
language that wordfreq covers, its 100 most frequent words. An entry is kept when its
document frequency (rows of its language holding it) is at least ``min_df`` and at most
``max_df`` of those rows; the ``max_entries`` with the highest document frequency are kept
over all languages (ties: language, then alphabetical). Languages written without spaces
get no useful default entries (a caption is one token): give them a vocabulary file.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import polars as pl

from curate.errors import CurateError
from curate.mix.wordmatch import Matcher

FALLBACK = "*"
PUNCT = [",", ".", ";", ":", "?", "!", "`"]
SPACED = PUNCT + ["\t", "\n", "\r"]
#: Scripts written without spaces between words: no space is required beside such a character.
NO_SPACE = r"[\p{Han}\p{Hiragana}\p{Katakana}\p{Thai}\p{Lao}\p{Myanmar}\p{Khmer}\p{Tibetan}]"
WORD = r"^\p{L}[\p{L}'-]+$"

#: English function words: never an entry of the default vocabulary.
STOPWORDS = frozenset("""
a about above across after again against all almost along also although am among an and another any
are around as at away back be because been before behind being below beside besides between both but
by can could did do does doing done down during each either else even ever every few for from
further had has have having he her here hers herself him himself his how however i if in inside
into is it its itself just least less like many may me might more most much must my myself near
neither next no nor not now of off on once one only onto or other others our ours ourselves out
outside over own per quite rather same several she should since so some such than that the their
theirs them themselves then there these they this those though through throughout thus to too
toward towards under until up upon us very via was we were what when where whether which while who
whom whose why will with within without would yet you your yours yourself yourselves
""".split())

T = TypeVar("T")
R = TypeVar("R")
#: batches worked on at once, each in a thread (Polars and numpy release the GIL)
WORKERS = max(1, min(4, os.cpu_count() or 1))

DEFAULT_MIN_DF = 5
DEFAULT_MAX_DF = 0.5
DEFAULT_MAX_ENTRIES = 50_000


def normalise(text: pl.Expr) -> pl.Expr:
    """``" " + lower(text) + " "`` with , . ; : ? ! ` wrapped in spaces and tab, newline and
    carriage return made spaces (MetaCLIP's ``spacing``; literal replacements, Aho-Corasick)."""
    t = text.fill_null("").str.to_lowercase().str.replace_many(SPACED, [f" {c} " for c in PUNCT] + [" "] * 3)
    return pl.concat_str([pl.lit(" "), t, pl.lit(" ")]).alias("n")


def patterns(entries: Iterable[str]) -> list[str]:
    """Entries as the substrings the rule looks for, normalised, without repeats, sorted by
    the entry (so that a row's matched entries, listed in this order, are sorted)."""
    e = pl.Series("e", list(entries), pl.String).to_frame()
    out = e.select(normalise(pl.col("e")).str.replace_all(" +", " ").str.strip_chars(" ").alias("e"))
    out = out.filter(pl.col("e") != "").unique()
    out = out.select(
        pl.concat_str([
            pl.when(pl.col("e").str.slice(0, 1).str.contains(NO_SPACE)).then(pl.lit("")).otherwise(pl.lit(" ")),
            pl.col("e"),
            pl.when(pl.col("e").str.slice(-1).str.contains(NO_SPACE)).then(pl.lit("")).otherwise(pl.lit(" ")),
        ]).alias("p")
    )
    return sorted(out["p"].to_list(), key=lambda p: p.strip(" "))


@dataclass
class Vocabulary:
    """Entries (as substrings to look for) per language key; ``"*"``: the other rows."""

    lists: dict[str, list[str]]
    origin: dict  # where it came from: a file and its sha256, or the rule that built it
    matchers: dict = field(default_factory=dict, repr=False, compare=False)

    def matcher(self, key: str | None) -> Matcher:
        """The list of ``key`` indexed for matching (no entries for None or a key without a list)."""
        if key not in self.matchers:
            self.matchers[key] = Matcher(self.lists.get(key, []) if key is not None else [])
        return self.matchers[key]

    def to_json(self) -> dict:
        return {k: [p.strip(" ") for p in v] for k, v in sorted(self.lists.items())}

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False).encode()).hexdigest()

    def describe(self) -> dict:
        return {**self.origin, "sha256": self.sha256(), "entries": {k: len(v) for k, v in sorted(self.lists.items())}}


def load_vocabulary(path: str | Path) -> Vocabulary:
    """A vocabulary file (see the module docstring); a one-line error for anything else."""
    p = Path(path)
    if not p.is_file():
        raise CurateError(f"vocabulary {str(path)!r} not found")
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CurateError(f"vocabulary {p}: not UTF-8 text") from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise CurateError(f"vocabulary {p}: not valid JSON ({e})") from None
        if isinstance(data, dict) and isinstance(data.get("vocabulary"), dict):
            data = data["vocabulary"]  # a run's concepts.json
        if isinstance(data, list):
            data = {FALLBACK: data}
        if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
                for k, v in data.items()):
            raise CurateError(f"vocabulary {p}: give a list of entries or an object of language -> list of entries")
        lists = data
    elif p.suffix.lower() == ".txt":
        lines = [ln.strip() for ln in text.splitlines()]
        lists = {FALLBACK: [ln for ln in lines if ln and not ln.startswith("#")]}
    else:
        raise CurateError(f"vocabulary {p}: give a .txt file (one entry a line) or a .json file")
    out = {k: patterns(v) for k, v in lists.items()}
    if not any(out.values()):
        raise CurateError(f"vocabulary {p}: holds no entries")
    return Vocabulary(out, {"file": str(p), "file_sha256": hashlib.sha256(raw).hexdigest()})


def stop_words(langs: list[str]) -> pl.DataFrame:
    """(key, w) pairs: the English list for every key, and wordfreq's 100 most frequent
    words of each other language it covers."""
    import wordfreq

    covered = set(wordfreq.available_languages())
    pairs = [(k, w) for k in langs for w in STOPWORDS]
    pairs += [(k, w) for k in langs if k != "en" and k in covered for w in wordfreq.top_n_list(k, 100)]
    return pl.DataFrame(pairs, schema={"key": pl.String, "w": pl.String}, orient="row").unique()


def in_order(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``fn`` over ``items``, ``WORKERS`` at a time in threads, results in order (at most
    ``WORKERS`` items held at once)."""
    with ThreadPoolExecutor(WORKERS) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= WORKERS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _part_counts(texts: pl.DataFrame) -> pl.DataFrame:
    """Document frequency of candidate words and adjacent word pairs per language key in
    one frame (columns t, key)."""
    w = (texts.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("i"), "key",
                      normalise(pl.col("t")).str.strip_chars(" ").str.split(" ").alias("w"))
         .explode("w"))
    stop = stop_words(w["key"].unique().to_list()).with_columns(pl.lit(True).alias("stop"))
    w = w.join(stop, on=["key", "w"], how="left", maintain_order="left")
    ok = pl.col("w").str.contains(WORD) & pl.col("stop").is_null()
    w = w.with_columns(ok.fill_null(False).alias("ok"))
    w = w.with_columns(
        pl.when(pl.col("ok") & pl.col("ok").shift(-1) & (pl.col("i") == pl.col("i").shift(-1)))
        .then(pl.concat_str([pl.col("w"), pl.col("w").shift(-1)], separator=" ")).alias("pair")
    )
    one = w.filter(pl.col("ok")).select("i", "key", pl.col("w").alias("entry"))
    two = w.filter(pl.col("pair").is_not_null()).select("i", "key", pl.col("pair").alias("entry"))
    rows = texts.group_by("key").agg(pl.len().alias("df")).with_columns(pl.lit(None, pl.String).alias("entry"))
    df = pl.concat([one, two]).unique().group_by("key", "entry").agg(pl.len().alias("df"))
    return pl.concat([df, rows.select(df.columns)])  # entry null: the key's row count


def build_vocabulary(frames: Iterable[pl.DataFrame], min_df: int = DEFAULT_MIN_DF, max_df: float = DEFAULT_MAX_DF,
                     max_entries: int = DEFAULT_MAX_ENTRIES) -> Vocabulary:
    """The default vocabulary (module docstring) over frames with columns ``t`` (text) and
    ``lang`` (null where unknown)."""
    def count(f: pl.DataFrame) -> pl.DataFrame:
        return _part_counts(f.select("t", pl.col("lang").fill_null(FALLBACK).alias("key") if "lang" in f.columns
                                     else pl.lit(FALLBACK).alias("key")))

    counts = []
    for c in in_order(count, frames):
        counts.append(c)
        if len(counts) >= 8:  # fold, so memory follows the vocabulary, not the corpus
            counts = [pl.concat(counts).group_by("key", "entry").agg(pl.col("df").sum())]
    if not counts:
        raise CurateError("no rows to build a vocabulary from")
    df = pl.concat(counts).group_by("key", "entry").agg(pl.col("df").sum())
    rows = df.filter(pl.col("entry").is_null()).select("key", pl.col("df").alias("rows"))
    kept = (df.filter(pl.col("entry").is_not_null()).join(rows, on="key")
            .filter((pl.col("df") >= min_df) & (pl.col("df") <= max_df * pl.col("rows")))
            .sort(["df", "key", "entry"], descending=[True, False, False]).head(max_entries))
    if kept.is_empty():
        raise CurateError(f"no word occurs in at least {min_df} rows of one language; give --vocabulary FILE "
                          "or a lower --min-df")
    rule = {"built": "words and adjacent word pairs by document frequency per language, stop words removed",
            "min_df": min_df, "max_df": max_df, "max_entries": max_entries, "rows": int(rows["rows"].sum())}
    lists = {k: patterns(g["entry"].to_list()) for (k,), g in kept.partition_by("key", as_dict=True).items()}
    return Vocabulary(lists, rule)
