"""``curate concepts RUN...``: each row's concept entries (MetaCLIP's substring rule) and the
template signature of its caption, written beside the run's scores.

For every row of every run, into ``RUN/concepts/concepts.parquet`` (one row per scored row,
in the order of the run's parts)::

    sample_id, source, row   the row's identity, as in RUN/scores
    concepts                 the entries it matches (list of strings, normalised, sorted)
    concept_vocab            the vocabulary list it was matched against ("*", or its lang)
    template                 the template signature of its caption (:mod:`curate.mix.templates`)

and ``RUN/concepts/concepts.json`` (the vocabulary itself, where it came from, the run key
it belongs to, counts and timings). The two files switch together
(:func:`curate.layout.concepts_snapshot`) under the run's lock.

Matching finds each entry's words one after another among the words of all of a batch's
captions at once (:mod:`curate.mix.wordmatch`), on ``caption_clean`` (``caption`` for runs
scored before cleaning); the rule and the vocabulary format are in
:mod:`curate.mix.vocabulary`.
"""
from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.atomic import write_json
from curate.errors import CurateError
from curate.layout import (
    CONCEPTS_PARQUET,
    CONCEPTS_JSON,
    concepts_json_path,
    concepts_path,
    concepts_snapshot,
    load_run,
    lock_folder,
    pinned_run,
    read_json,
    score_parts,
)
from curate.mix.balance import tail_shares
from curate.mix.vocabulary import (
    DEFAULT_MAX_DF,
    DEFAULT_MAX_ENTRIES,
    DEFAULT_MIN_DF,
    FALLBACK,
    Vocabulary,
    build_vocabulary,
    in_order,
    load_vocabulary,
    normalise,
)
from curate.mix.templates import templates
from curate.mix.wordmatch import Matcher, Tokens, keep_freed_memory, lists_of
from curate.storage.commit import runs_on_stores
from curate.storage.fs import exists, is_url
from curate.version import __version__

BATCH = 50_000
#: rows per batch while the default vocabulary is counted (long captions explode into many words)
VOCAB_BATCH = 25_000
SCHEMA = pa.schema([
    ("sample_id", pa.uint64()), ("source", pa.string()), ("row", pa.int64()),
    ("concepts", pa.list_(pa.string())), ("concept_vocab", pa.string()), ("template", pa.string()),
])


def match(tok: Tokens, matcher: Matcher) -> pl.Series:
    """Entries whose pattern occurs in each normalised text: unique, sorted, without spaces."""
    # one 64-bit key per (row, entry), sorted (one thread: batches run side by side), once each
    key = pl.Series(matcher.keys(tok), dtype=pl.UInt64).sort(multithreaded=False).to_numpy()
    key = key[np.append(key[:1] == key[:1], key[1:] != key[:-1])]
    rows = (key >> np.uint64(32)).astype(np.int64)
    return lists_of(matcher.entries.gather(pl.Series(key & np.uint64(0xFFFFFFFF))), np.bincount(rows, minlength=len(tok.first)))


def annotate(frame: pl.DataFrame, vocab: Vocabulary) -> pl.DataFrame:
    """``frame`` (columns t: text, lang) -> concepts, concept_vocab, template, in row order."""
    lang = pl.col("lang") if "lang" in frame.columns else pl.lit(None, pl.String)
    own = [k for k in vocab.lists if k != FALLBACK]
    fallback = pl.lit(FALLBACK if FALLBACK in vocab.lists else None, pl.String)
    f = frame.select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("i"),
        normalise(pl.col("t")).alias("n"),
        pl.when(lang.is_in(own)).then(lang).otherwise(fallback).alias("concept_vocab"),
    )
    parts = []
    keys = f["concept_vocab"].unique()
    split = f.partition_by("concept_vocab", as_dict=True).items() if len(keys) > 1 else [((keys[0],), f)]
    for key, part in split if f.height else []:
        tok = Tokens(part["n"])
        parts.append(part.select("i", match(tok, vocab.matcher(key[0])).alias("concepts"), "concept_vocab",
                                 templates(tok).alias("template")))
    if not parts:
        return pl.DataFrame(schema={"concepts": pl.List(pl.String), "concept_vocab": pl.String, "template": pl.String})
    return (pl.concat(parts).sort("i") if len(parts) > 1 else parts[0]).drop("i")


def _batches(run: Path, text: str, lang: bool, size: int = BATCH) -> Iterator[pl.DataFrame]:
    cols = ["sample_id", "source", "row", text] + (["lang"] if lang else [])
    for part in score_parts(run):
        pf = pq.ParquetFile(part)
        for b in pf.iter_batches(batch_size=size, columns=cols):
            yield pl.from_arrow(b).rename({text: "t"})


def _one(batch: pl.DataFrame, vocab: Vocabulary) -> pl.DataFrame:
    return pl.concat([batch.select("sample_id", "source", "row"), annotate(batch, vocab)], how="horizontal")


def _text_column(run: Path) -> tuple[str, bool]:
    parts = score_parts(run)
    if not parts:
        raise CurateError(f"{run}: holds no scores/part-*.parquet")
    names = pq.ParquetFile(parts[0]).schema_arrow.names
    return ("caption_clean" if "caption_clean" in names else "caption"), "lang" in names


def concepts_problem(run: str | Path) -> str | None:
    """Why ``RUN/concepts`` cannot be used (missing, or made for other scores), else None."""
    at = pinned_run(run) if is_url(run) else run  # a run on a store: its current version
    info = read_json(concepts_json_path(at))
    if not info or not (exists(concepts_path(at)) if is_url(at) else concepts_path(at).is_file()):
        return f"{run} has no concepts; run `curate concepts {run}` first"
    run_info = load_run(run)
    if info.get("run_key") != run_info.get("key") or info.get("rows") != run_info.get("rows"):
        return f"the concepts of {run} were made for other scores; run `curate concepts {run}` again"
    return None


def concepts(runs: list[str | Path], vocabulary: str | Path | None = None, min_df: int = DEFAULT_MIN_DF,
             max_df: float = DEFAULT_MAX_DF, max_entries: int = DEFAULT_MAX_ENTRIES) -> list[dict]:
    """Match every row of ``runs`` against one vocabulary (the file, else one built from the
    runs' rows); write each run's ``concepts/``; return each run's ``concepts.json``. Runs
    on a store (URLs) are downloaded, matched here and switched in as new versions."""
    if any(is_url(r) for r in runs):
        return runs_on_stores(list(runs), lambda local: concepts(local, vocabulary, min_df, max_df, max_entries))
    paths = [Path(r) for r in runs]
    if not paths:
        raise CurateError("give at least one run folder")
    infos = [load_run(p) for p in paths]
    cols = [_text_column(p) for p in paths]
    with ExitStack() as stack:
        for p in sorted({p.resolve() for p in paths}, key=str):
            stack.enter_context(lock_folder(p))
        t0 = time.perf_counter()
        if vocabulary is not None:
            vocab = load_vocabulary(vocabulary)
        else:
            vocab = build_vocabulary((b for p, (t, lang) in zip(paths, cols) for b in _batches(p, t, lang, VOCAB_BATCH)),
                                     min_df, max_df, max_entries)
        t_vocab = time.perf_counter() - t0
        return [_write(p, info, vocab, *c, t_vocab) for p, info, c in zip(paths, infos, cols)]


def _write(run: Path, info: dict, vocab: Vocabulary, text: str, lang: bool, t_vocab: float) -> dict:
    t0 = time.perf_counter()
    keep_freed_memory()
    snap = concepts_snapshot(run)
    version = snap.stage()
    tallies = []
    n = 0
    with pq.ParquetWriter(version / CONCEPTS_PARQUET, SCHEMA, compression="zstd") as w:
        for got in in_order(lambda b: _one(b, vocab), _batches(run, text, lang)):
            w.write_table(got.to_arrow().cast(SCHEMA))
            n += got.height
            tally = (got.select(pl.col("concepts").explode().drop_nulls().alias("entry"))
                     .group_by("entry").agg(pl.len().alias("rows")))
            # copied out through Arrow: its strings would otherwise keep the batch's buffers alive
            tallies.append(pl.from_arrow(tally.to_arrow()))
            tallies.append(pl.DataFrame({"entry": ["\x00matched"], "rows": [got["concepts"].list.len().gt(0).sum()]},
                                        schema={"entry": pl.String, "rows": pl.UInt32}))
    t_match = time.perf_counter() - t0
    counts = (pl.concat(tallies).group_by("entry").agg(pl.col("rows").sum())
              if tallies else pl.DataFrame(schema={"entry": pl.String, "rows": pl.UInt32}))
    matched = counts.filter(pl.col("entry") == "\x00matched")["rows"].sum()
    counts = counts.filter(pl.col("entry") != "\x00matched").sort(["rows", "entry"], descending=[True, False])
    result = {
        "curate_version": __version__,
        "command": "concepts",
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run_key": info.get("key"),
        "rows": info.get("rows"),
        "rows_annotated": n,
        "rows_matched": int(matched or 0),
        "entries_matched": counts.height,
        "text_column": text,
        "rule": "an entry matches when ' entry ' is a substring of ' ' + lower(text) + ' ' with , . ; : ? ! ` "
                "spaced out and tab, newline, carriage return made spaces (MetaCLIP); no space beside "
                "characters of scripts written without spaces",
        "top_entries": [{"entry": e, "rows": int(c)} for e, c in counts.head(20).iter_rows()],
        "tail_shares": tail_shares(counts["rows"].to_numpy()),
        "vocabulary_source": vocab.describe(),
        "timings": {"vocabulary_s": round(t_vocab, 3), "match_s": round(t_match, 3),
                    "rows_per_s": round(n / t_match) if t_match > 0 else None},
        "files": [CONCEPTS_PARQUET, CONCEPTS_JSON],
        "vocabulary": vocab.to_json(),
    }
    write_json(result, version / CONCEPTS_JSON)
    snap.commit(version)
    return result
