"""The SQL of a recipe's ``[balance]`` table (:mod:`curate.mix.balance`), rendered into the
mixture query by :func:`curate.mix.sql.render_sql`.

* **Columns** (step 1, per source): ``opening`` (the first three words of ``caption_clean``,
  lower-cased, words being runs of letters and digits), ``n_words`` (runs of non-space
  characters) and ``length_bin``; ``concepts`` and ``concept_vocab`` from
  ``RUN/concepts/concepts.parquet``.
* **Length bins** (step 4b): rows outside every bin of ``length_mix`` are not drawn.
* **Opening cap** (step 4c): at most ``max_per_opening`` rows per opening in the mixture,
  the best by quality (ties: u).
* **Balance by concepts** (step 4d, MetaCLIP): every (row, entry) pair of the rows left gets
  ``entry_u`` = SplitMix64(sample_id XOR seed_key XOR entry_key), entry_key the first 64
  bits of md5(entry); an entry matched by ``entry_count`` of those rows (counted per
  vocabulary list, over all sources) draws a row when ``entry_u < min(1, T / entry_count)``;
  a row stays when any of its entries draws it. ``concept_drawn_by`` names the drawing
  entry with the fewest rows (ties: alphabetical).
* **Quotas** (step 5): with ``length_mix``, each source's quota is split over the bins by
  their shares (largest remainder) and every (source, bin) takes its rows by the key.
"""
from __future__ import annotations

import numpy as np

from curate.db import ident, sql_str
from curate.hashing import splitmix64
from curate.layout import concepts_path, pinned_run
from curate.mix.balance import split
from curate.mix.recipe import Recipe
from curate.storage.fs import is_url

MASK64 = "18446744073709551615"
OPENING_WORDS = 3


def text_of(columns: dict) -> str:
    """The text the balance looks at: ``caption_clean``, else ``caption``."""
    return "s.caption_clean" if "caption_clean" in columns else "s.caption"


#: the first three words (runs of letters and digits) with what follows each, at the start
OPENING_RE = r"^[^\p{L}\p{N}]*((?:[\p{L}\p{N}]+(?:[^\p{L}\p{N}]+|$)){1,3})"
#: the opening is read from the first characters only (three words fit in them)
OPENING_CHARS = 200


def opening_sql(text: str) -> str:
    """The opening: the first three words (runs of letters and digits) within the first 200
    characters, lower-cased, joined by one space; null when there is none. An anchored
    pattern on a short prefix: a long caption is not read to its end."""
    head = f"lower(left(coalesce({text}, ''), {OPENING_CHARS}))"
    return (f"nullif(trim(regexp_replace(regexp_extract({head}, '{OPENING_RE}', 1), "
            f"'[^\\p{{L}}\\p{{N}}]+', ' ', 'g')), '')")


def words_sql(text: str) -> str:
    """Words: runs of characters between spaces, tabs and line breaks. Text with single
    spaces (``caption_clean``) is counted by its spaces; other text is made so first."""
    x = f"coalesce({text}, '')"
    odd = " OR ".join(f"contains({x}, {c})" for c in ("'  '", "chr(9)", "chr(10)", "chr(13)"))
    t = f"trim(CASE WHEN {odd} THEN regexp_replace({x}, '[ \\t\\n\\r]+', ' ', 'g') ELSE {x} END)"
    return f"(CASE WHEN {t} = '' THEN 0 ELSE length({t}) - length(replace({t}, ' ', '')) + 1 END)"


def bin_sql(recipe: Recipe, words: str) -> str:
    arms = []
    for b in recipe.balance.bins:
        cond = f"{words} >= {b.lo}" + (f" AND {words} <= {b.hi}" if b.hi is not None else "")
        arms.append(f"WHEN {cond} THEN {sql_str(b.label)}")
    return "CASE " + " ".join(arms) + " END"


def source_select(recipe: Recipe, columns: dict) -> list[str]:
    """Extra columns of a source's step-1 CTE (each line ends in a comma)."""
    bal, text, out = recipe.balance, text_of(columns), []
    if bal.max_per_opening is not None:
        out.append(f"        {opening_sql(text)} AS opening,")
    if bal.bins:
        out.append(f"        {words_sql(text)} AS n_words,")
        out.append(f"        {bin_sql(recipe, words_sql(text))} AS length_bin,")
    if bal.per_concept is not None:
        out.append("        c.concepts, c.concept_vocab,")
    return out


def source_join(recipe: Recipe, run_path) -> list[str]:
    if recipe.balance.per_concept is None:
        return []
    at = pinned_run(run_path) if is_url(run_path) else run_path  # a run on a store: its current version
    return [f"    LEFT JOIN read_parquet({sql_str(str(concepts_path(at)))}) AS c",
            "        ON c.sample_id = s.sample_id AND c.source = s.source AND c.\"row\" = s.\"row\""]


def splitmix_ctes(prefix: str, src: str, x: str, out: str, when: str = "true") -> list[str]:
    """CTEs ``prefix_1..3`` and ``prefix`` adding ``out`` = u in (0, 1) from SplitMix64(x),
    computed where ``when`` holds (null elsewhere)."""
    return [
        f"{prefix}_1 AS (SELECT *, CASE WHEN {when} THEN ({x}::UHUGEINT + 11400714819323198485) & {MASK64} END AS h"
        f" FROM {src})",
        f"{prefix}_2 AS (SELECT * REPLACE ((xor(h, h >> 30) * 13787848793156543929) & {MASK64} AS h) FROM {prefix}_1)",
        f"{prefix}_3 AS (SELECT * REPLACE ((xor(h, h >> 27) * 10723151780598845931) & {MASK64} AS h) FROM {prefix}_2)",
        f"{prefix} AS (SELECT * EXCLUDE (h), (CAST(xor(h, h >> 31) >> 11 AS DOUBLE) + 0.5) / 9007199254740992.0 AS {out}"
        f" FROM {prefix}_3)",
    ]


def balance_ctes(recipe: Recipe, prev: str, skey: int, tie: str) -> tuple[list[str], str]:
    """Steps 4b-4d as CTEs over ``prev``; returns them and the name of the last one."""
    bal, ctes = recipe.balance, []
    if bal.bins:
        labels = ", ".join(b.label for b in bal.bins)
        ctes.append(f"-- 4b. Length mix: only rows inside a length bin ({labels} words) are drawn.\n"
                    f"length_binned AS (SELECT * FROM {prev} WHERE length_bin IS NOT NULL)")
        prev = "length_binned"
    if bal.max_per_opening is not None:
        ctes.append(
            f"-- 4c. Opening cap: at most {bal.max_per_opening} row(s) open with the same {OPENING_WORDS} words,\n"
            "--     the best by quality (ties: u).\n"
            f"capped_by_opening AS (\n    SELECT * FROM {prev}\n    QUALIFY opening IS NULL\n"
            f"        OR row_number() OVER (PARTITION BY opening ORDER BY {tie}) <= {bal.max_per_opening}\n)")
        prev = "capped_by_opening"
    if bal.per_concept is None:
        return ctes, prev
    t = bal.per_concept
    ctes.append(
        f"-- 4d. Balance by concepts (MetaCLIP): an entry matched by entry_count rows keeps each with\n"
        f"--     p = min(1, {t} / entry_count), drawn by entry_u = SplitMix64(sample_id XOR {skey}\n"
        "--     XOR first 64 bits of md5(entry)); a row stays when any of its entries draws it.\n"
        f"concept_pairs AS (\n    SELECT run, sample_id, source, \"row\", concept_vocab, unnest(concepts) AS entry\n"
        f"    FROM {prev}\n)")
    ctes.append(
        "concept_counts AS MATERIALIZED (\n"
        f"    SELECT concept_vocab, entry, count(*) AS entry_count, least(1.0, {t} / count(*)) AS entry_p,\n"
        "        CAST('0x' || left(md5(entry), 16) AS UBIGINT) AS entry_key\n"
        "    FROM concept_pairs GROUP BY concept_vocab, entry\n)")
    ctes.append(
        "concept_keyed AS (\n    SELECT p.*, c.entry_count, c.entry_p, c.entry_key\n"
        "    FROM concept_pairs AS p JOIN concept_counts AS c USING (concept_vocab, entry)\n)")
    ctes += splitmix_ctes("concept_u", "concept_keyed", f"xor(xor(sample_id, {skey}::UBIGINT), entry_key)", "entry_u",
                          "entry_p < 1")
    ctes.append(
        "-- an entry with p = 1 draws every row (u < 1): its draws are not computed\n"
        "concept_drawn AS (\n    SELECT run, sample_id, source, \"row\",\n"
        "        min(struct_pack(c := entry_count, e := entry)) FILTER (WHERE entry_p >= 1 OR entry_u < entry_p) AS drew\n"
        "    FROM concept_u GROUP BY run, sample_id, source, \"row\"\n)")
    keep_unmatched = " OR coalesce(len(p.concepts), 0) = 0" if bal.unmatched == "keep" else ""
    ctes.append(
        f"balanced AS (\n    SELECT p.*, d.drew.e AS concept_drawn_by\n    FROM {prev} AS p\n"
        "    LEFT JOIN concept_drawn AS d USING (run, sample_id, source, \"row\")\n"
        f"    WHERE d.drew IS NOT NULL{keep_unmatched}\n)")
    return ctes, "balanced"


def quota_units(recipe: Recipe, runs) -> list[tuple]:
    """(run source, CTE name, condition, quota) per source, or per (source, length bin)."""
    out = []
    for r in runs:
        q, base = recipe.quotas[r.name], f"run = {sql_str(r.name)}"
        if not recipe.balance.bins:
            out.append((r, ident("top_" + r.name), base, q))
            continue
        parts = split(q, [b.share for b in recipe.balance.bins])
        for i, (b, n) in enumerate(zip(recipe.balance.bins, parts)):
            out.append((r, ident(f"top_{r.name}_{i}"), f"{base} AND length_bin = {sql_str(b.label)}", n))
    return out


def output_columns(recipe: Recipe) -> list[str]:
    """The balance's columns at the end of the manifest."""
    bal, out = recipe.balance, []
    if bal.max_per_opening is not None:
        out.append("opening")
    if bal.bins:
        out += ["n_words", "length_bin"]
    if bal.per_concept is not None:
        out += ["concepts", "concept_vocab", "concept_drawn_by"]
    return out


def entry_key(entries: list[str]) -> np.ndarray:
    import hashlib

    return np.array([int(hashlib.md5(e.encode()).hexdigest()[:16], 16) for e in entries], dtype=np.uint64)


def concept_u(sample_ids: np.ndarray, entries: list[str], seed_key: int) -> np.ndarray:
    """The query's ``entry_u`` for (sample_id, entry) pairs, with numpy (same numbers)."""
    x = sample_ids.astype(np.uint64) ^ np.uint64(seed_key) ^ entry_key(entries)
    h = splitmix64(x)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53
