"""Caption text as near-duplicate detection sees it: normalised keys and lexical overlap.

Two normal forms, both vectorised Polars expressions:

* :func:`norm_text` — Unicode NFKC, lower case, punctuation and symbols removed, white space
  collapsed. Two captions with the same ``norm_text`` are *exact* duplicates.
* ``clean`` (:func:`text_columns`) — ``norm_text`` after removing stock-photo boilerplate at either end
  ("Stock Photo - ", " - royalty free image", "| Shutterstock #123456"), the affixes the
  ``junk`` filter's ``stock`` kind recognises (:data:`curate.clean.boilerplate.STOCK`).
  ``clean`` is what gets embedded and compared; captions with the same ``clean`` text are
  duplicates with similarity 1.

Lexical overlap (:func:`word_jaccard`) is the Jaccard index of the two captions' sets of
distinct words, ``|A ∩ B| / |A ∪ B|``: 1 for a reordered copy, ``(n - 1) / n`` for a copy
that lost one of ``n`` words, ``(n - 1) / (n + 1)`` for a caption with one word changed,
low for a paraphrase.
"""
from __future__ import annotations

import polars as pl

from curate.hashing import text_hash64
from curate.clean.boilerplate import ATOM, MARK, STOCK  # the one boilerplate list (clean, junk, dedup)

PREFIX = rf"^(?:{ATOM} ?)+"
SUFFIX = rf"(?: {ATOM})+$"
APOSTROPHE = r"\s*['’`´ʼ]"
PUNCT = r"[\p{P}\p{S}\p{Cc}\p{Cf}]"
#: rows whose normal forms are made at a time (:func:`texts_of`)
TEXT_ROWS = 250_000


def norm_text(col: pl.Expr) -> pl.Expr:
    """NFKC, lower case, apostrophes dropped ("dog 's" = "dog's" = "dogs"), other
    punctuation and symbols turned into spaces, white space collapsed."""
    return (
        col.fill_null("").str.normalize("NFKC").str.to_lowercase()
        .str.replace_all(APOSTROPHE, "")
        .str.replace_all(PUNCT, " ")
        .str.replace_all(r"\s+", " ")
        .str.strip_chars()
    )


def text_columns(frame: pl.DataFrame, caption: str = "caption") -> pl.DataFrame:
    """Add ``norm`` (:func:`norm_text`) and ``clean`` (``norm`` without stock-photo
    boilerplate affixes) to ``frame``.

    An affix is a run of :data:`ATOM` words at either end of ``norm``; it is removed only
    when it contains a junk ``stock`` mark, or the word "stock" and at least one more affix
    word (so "chicken stock" stays whole), and never when nothing would be left. Each step
    is its own column so that no expression is evaluated twice.
    """
    norm = pl.col("norm")
    ok = pl.col("_a").str.contains(MARK) & (
        pl.col("_a").str.contains(STOCK) | pl.col("_a").str.strip_chars().str.contains(" ")
    )
    return (
        frame.with_columns(norm_text(pl.col(caption)).alias("norm"))
        .with_columns(norm.str.extract(f"({PREFIX})", 1).fill_null("").alias("_a"))
        .with_columns(pl.when(ok).then(norm.str.slice(pl.col("_a").str.len_chars())).otherwise(norm).alias("_r"))
        .with_columns(pl.col("_r").str.extract(f"({SUFFIX})", 1).fill_null("").alias("_a"))
        .with_columns(
            pl.when(ok).then(pl.col("_r").str.slice(0, pl.col("_r").str.len_chars() - pl.col("_a").str.len_chars()))
            .otherwise(pl.col("_r")).str.strip_chars().alias("_r")
        )
        .with_columns(pl.when(pl.col("_r") == "").then(norm).otherwise(pl.col("_r")).alias("clean"))
        .drop("_a", "_r")
    )


def words(col: pl.Expr) -> pl.Expr:
    """Distinct words of a ``norm`` or ``clean`` column, as a list."""
    return col.str.split(" ").list.unique()


def word_jaccard(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """Jaccard index |A ∩ B| / |A ∪ B| of two lists of distinct words; 0 when both are empty.

    A copy that lost one of its n words scores (n - 1) / n; one with a word changed scores
    (n - 1) / (n + 1), since a changed word is missing from each side.
    """
    inter = a.list.set_intersection(b).list.len()
    union = a.list.len() + b.list.len() - inter
    return pl.when(union > 0).then(inter / union).otherwise(0.0).cast(pl.Float32)


def texts_of(rows: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows without ``caption``, + norm_hash, clean_hash, text; distinct texts in rank order).

    ``text`` is the index of the row's distinct clean text, numbered by the rank of its best
    row; null for an empty caption. The texts frame has text, clean_hash, clean, head (the
    best row's sample_id), rows (how many rows share it). The normal forms are made
    :data:`TEXT_ROWS` rows at a time: only one slice's strings and the distinct ``clean``
    texts are held, never every row's normal forms.
    """
    hashed, cleans = [], []
    for a in range(0, max(rows.height, 1), TEXT_ROWS):  # a loop over slices, not rows
        part = text_columns(rows.slice(a, TEXT_ROWS))
        part = part.with_columns(
            text_hash64(part["norm"]).alias("norm_hash"),
            text_hash64(part["clean"]).alias("clean_hash"),
            (pl.col("clean") != "").alias("_has"),
        )
        cleans.append(part.filter("_has").select("clean_hash", "clean").unique("clean_hash"))
        hashed.append(part.drop("caption", "norm", "clean"))
    rows = pl.concat(hashed)
    texts = (
        rows.filter("_has").group_by("clean_hash")
        .agg(pl.col("rank").min(), pl.col("sample_id").sort_by("rank").first().alias("head"), pl.len().alias("rows"))
        .sort("rank").with_row_index("text").drop("rank")
        .with_columns(pl.col("text").cast(pl.Int64))
    )
    clean = pl.concat(cleans).unique("clean_hash")
    del cleans
    texts = texts.join(clean, on="clean_hash", how="left", maintain_order="left").select(
        "text", "clean_hash", "clean", "head", "rows")
    rows = rows.join(texts.select("clean_hash", "text"), on="clean_hash", how="left", maintain_order="left")
    rows = rows.with_columns(pl.when("_has").then(pl.col("text")).alias("text")).drop("_has")
    return rows, texts
