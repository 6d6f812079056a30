"""The mixture query: rendered from a recipe, and the DuckDB plumbing that runs it.

``render_sql`` turns a validated recipe and its runs into one readable DuckDB query:

1. each source's eligible rows (the recipe's ``eligible``) with their ``quality``, narrow:
   ids, row, the cap columns;
2. all sources together;
3. ``u`` in (0, 1) per row: SplitMix64(sample_id XOR seed_key) in exact integer arithmetic;
4. the diversity caps (best rows by quality per value of a column / per duplicate group);
5. Efraimidis-Spirakis keys ``-ln(u) / max(quality, 0)^alpha`` and each source's quota of
   rows with the smallest keys (``ORDER BY key LIMIT quota``);
6. repeats for sources with fewer rows than their quota;
7. the selected rows' captions (as read, and ``caption_clean``) and carried columns, read
   again from the runs;
8. the manifest rows, sorted by sample_id.

Every ORDER BY ends in (u, sample_id, row), which is unique within a run unless an
``--id-column`` gives two rows the same id at the same row number of two files (the same
file scored twice under two names); only then may the choice between those identical
rows, and so the manifest's ``source`` for them, depend on the thread count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curate.db import ident, sql_str
from curate.mix import balance_sql
from curate.mix.recipe import Recipe, Source, is_column
from curate.version import __version__

MASK64 = "18446744073709551615"
#: the query's step that gives every eligible row its uniform number ``u``; ``curate explain``
#: re-runs the query up to it (``render_sql(..., upto=UNIFORM)``)
UNIFORM = "hashed"
#: Manifest columns before the carried input columns.
BASE_COLUMNS = ("sample_id", "run", "source", "row", "caption", "caption_clean")
#: In the carried columns, these come first in this order (as curate.ingest.carry.AUTO_CARRY).
CARRY_ORDER = ("url", "image_url", "image_path", "image_id", "key")


@dataclass
class RunSource:
    """A recipe source joined with what its run folder holds."""

    src: Source
    info: dict  # run.json
    glob: str
    columns: dict[str, str]  # column -> DuckDB type
    groups: Path | None  # RUN/dedup/groups.parquet when present
    dup_space: str | None = None  # the id of the set the run was deduplicated in (one group space)
    names: dict[str, str] = field(default_factory=dict)  # carried: mixture name -> the run's column
    read_glob: str = ""  # the scores of the version pinned when the mix began (what it reads)
    read_groups: Path | None = None  # likewise for the groups
    types: dict[str, str] = field(default_factory=dict)  # mixture column -> DuckDB type (shared)

    def column(self, name: str) -> str | None:
        """The run's column for a mixture column or a recipe's column name: the same name,
        the carried column it names (``url`` for ``URL``), or the one name that differs only
        in case; None when the run has none."""
        if name in self.columns:
            return name
        if name in self.names:
            return self.names[name]
        low = [c for c in self.columns if c.lower() == name.lower()]
        return low[0] if len(low) == 1 else None

    def paths(self, read: bool) -> tuple[str, Path | None]:
        """(scores glob, groups file): pinned for reading, else the documented names."""
        return (self.read_glob or self.glob, self.read_groups or self.groups) if read else (self.glob, self.groups)

    @property
    def name(self) -> str:
        return self.src.name


def seed_key(seed: int) -> int:
    """The 64-bit number XORed into every sample_id: blake2b-64 of ``curate-mix-seed:<seed>``."""
    from curate.hashing import key64

    return int(key64(f"curate-mix-seed:{seed}"))


def sampling_u(sample_ids: np.ndarray, seed: int) -> np.ndarray:
    """The query's ``u`` computed with numpy, for tests and audits (same numbers)."""
    from curate.hashing import splitmix64

    h = splitmix64(sample_ids.astype(np.uint64) ^ np.uint64(seed_key(seed)))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0**53


# -- rendering -----------------------------------------------------------------------------


def output_columns(recipe: Recipe, runs: list[RunSource]) -> list[str]:
    """Manifest columns between ``caption`` and the sampling columns, in a fixed order."""
    carried: list[str] = []
    for r in runs:
        for c in r.names:
            if c not in carried:
                carried.append(c)
    first_seen = {c: i for i, c in enumerate(carried)}
    carried.sort(key=lambda c: (CARRY_ORDER.index(c) if c in CARRY_ORDER else len(CARRY_ORDER), first_seen[c]))
    cols = (["id"] if any("id" in r.columns for r in runs) else []) + carried
    g = recipe.caps.group_by
    if g and is_column(g) and g not in cols + list(BASE_COLUMNS) and not any(c.lower() == g.lower() for c in cols):
        cols.append(g)
    if any("lang" in r.columns for r in runs):
        cols.append("lang")
    if recipe.caps.per_dup_group is not None:
        cols.append("dup_group")
    return cols


# -- rendering ----------------------------------------------------------------------------


def _indent(expr: str, pad: str) -> str:
    return expr.replace("\n", "\n" + pad)


def group_sql(recipe: Recipe, r: RunSource) -> str | None:
    """The SQL of a source's cap group (over its rows ``s``), or None: no group_by, or a
    column it lacks (validated: only with ``[caps] missing = "null"``)."""
    g = recipe.group_of(r.src)
    if g is None or not is_column(g):
        return g
    col = r.column(g)
    return f"s.{ident(col)}" if col else None


def render_sql(recipe: Recipe, runs: list[RunSource], restrict: str | None = None, upto: str | None = None,
               read: bool = False) -> str:
    """The mixture as one DuckDB query.

    The sampling works on narrow rows (ids, quality, cap columns); the captions and carried
    columns of the selected rows are read afterwards, so no window carries the text.
    ``restrict`` (an extra condition on every source's rows) and ``upto`` (the last CTE to
    select from) serve ``curate explain``, which re-runs part of the pipeline for a few rows.
    ``read``: name the versions pinned when the mix began (the query the mix runs) instead
    of the runs' documented paths (the query it saves).
    """
    caps = recipe.caps
    extra = output_columns(recipe, runs)
    names = ", ".join(r.name for r in runs)
    skey = seed_key(recipe.seed)
    head = [
        f"-- curate mixture {recipe.name!r}: {recipe.size:,} rows from {len(runs)} source(s) ({names}),",
        f"-- seed {recipe.seed}, alpha {recipe.alpha!r}; recipe sha256 {recipe.digest()[:16]}, curate {__version__}.",
        "-- Run it with DuckDB from any folder (paths are absolute); it returns the manifest rows.",
        "WITH",
    ]
    ctes: list[str] = []
    for i, r in enumerate(runs):
        glob, groups = r.paths(read)
        sel = ["    SELECT", f"        {sql_str(r.name)} AS run, s.sample_id, s.source, s.\"row\","]
        if recipe.grouped:
            g = group_sql(recipe, r)
            sel.append(f"        CAST(({_indent(g, '            ')}) AS VARCHAR) AS cap_group," if g
                       else "        CAST(NULL AS VARCHAR) AS cap_group,")
        if caps.per_dup_group is not None:
            sel.append(f"        g.dup_group, {sql_str(r.dup_space or r.name)} AS dup_space,")
        sel += balance_sql.source_select(recipe, r.columns)
        sel += ["        CAST((", f"            {_indent(r.src.quality, '            ')}",
                "        ) AS DOUBLE) AS quality",
                f"    FROM read_parquet({sql_str(glob)}) AS s"]
        if caps.per_dup_group is not None:
            sel.append(f"    LEFT JOIN (SELECT sample_id, dup_group FROM read_parquet({sql_str(str(groups))})) AS g")
            sel.append("        USING (sample_id)")
        sel += balance_sql.source_join(recipe, r.src.path)
        sel += ["    WHERE (", f"        {_indent(r.src.eligible, '        ')}", "    )"]
        if restrict:
            sel.append(f"    AND ({restrict})")
        note = ("-- 1. Each source's eligible rows and their quality (the recipe's `eligible` and `quality`).\n"
                if i == 0 else "")
        ctes.append(f"{note}{ident('src_' + r.name)} AS (\n" + "\n".join(sel) + "\n)")
    union = "\n    UNION ALL ".join(f"SELECT * FROM {ident('src_' + r.name)}" for r in runs)
    ctes.append(
        "-- 2. All sources together; a row whose quality is null or NaN is not eligible.\n"
        f"eligible AS (\n    SELECT * FROM (\n    {union}\n    ) WHERE quality IS NOT NULL AND NOT isnan(quality)\n)"
    )
    ctes.append(
        "-- 3. u: a uniform number in (0, 1) per row from its sample_id and the seed alone:\n"
        f"--    SplitMix64(sample_id XOR {skey}) in exact integer arithmetic (UHUGEINT masked\n"
        "--    to 64 bits), so every machine, thread count and DuckDB version agrees. The constant is\n"
        f"--    the first 8 bytes (little-endian) of blake2b(\"curate-mix-seed:{recipe.seed}\").\n"
        "mix_1 AS (\n"
        f"    SELECT *, (xor(sample_id, {skey}::UBIGINT)::UHUGEINT + 11400714819323198485) & {MASK64} AS h\n"
        "    FROM eligible\n),\n"
        f"mix_2 AS (SELECT * REPLACE ((xor(h, h >> 30) * 13787848793156543929) & {MASK64} AS h) FROM mix_1),\n"
        f"mix_3 AS (SELECT * REPLACE ((xor(h, h >> 27) * 10723151780598845931) & {MASK64} AS h) FROM mix_2),\n"
        f"{UNIFORM} AS (\n"
        "    SELECT * EXCLUDE (h), (CAST(xor(h, h >> 31) >> 11 AS DOUBLE) + 0.5) / 9007199254740992.0 AS u\n"
        "    FROM mix_3\n)"
    )
    prev = UNIFORM
    tie = "quality DESC, u, sample_id, \"row\""
    if recipe.grouped:
        part = "cap_group" if caps.scope == "mixture" else "run, cap_group"
        within = "in the whole mixture" if caps.scope == "mixture" else "within each source"
        by = sorted({" ".join(str(recipe.group_of(r.src)).split()) for r in runs if recipe.group_of(r.src)})
        ctes.append(
            f"-- 4. Diversity cap: at most {caps.per_group} row(s) per value of {' / '.join(by)} (cap_group)\n"
            f"--    {within}, the best by quality (ties: u). Rows with no value are not capped.\n"
            f"capped_by_group AS (\n    SELECT * FROM {prev}\n"
            "    QUALIFY cap_group IS NULL\n"
            f"        OR row_number() OVER (PARTITION BY {part} ORDER BY {tie}) <= {caps.per_group}\n)"
        )
        prev = "capped_by_group"
    if caps.per_dup_group is not None:
        ctes.append(
            f"-- 4. Diversity cap: at most {caps.per_dup_group} row(s) per near-duplicate group\n"
            "--    (RUN/dedup/groups.parquet), the best by quality (ties: u); runs deduplicated together\n"
            "--    (`curate dedup A B`) share their groups (dup_space), the others are capped each alone.\n"
            f"capped_by_dup_group AS (\n    SELECT * FROM {prev}\n"
            "    QUALIFY dup_group IS NULL\n"
            f"        OR row_number() OVER (PARTITION BY dup_space, dup_group ORDER BY {tie}) <= {caps.per_dup_group}\n)"
        )
        prev = "capped_by_dup_group"
    more, prev = balance_sql.balance_ctes(recipe, prev, skey, tie)
    ctes += more
    weight = "1.0" if recipe.alpha == 0 else f"pow(greatest(quality, 0.0), {recipe.alpha!r})"
    order = 'sample_key, u, sample_id, "row"'
    ctes.append(
        "-- 5. Weighted sampling without replacement (Efraimidis & Spirakis 2006): the key is\n"
        f"--    -ln(u) / weight with weight = max(quality, 0)^{recipe.alpha!r}; each source takes its\n"
        "--    quota of rows with the smallest keys (a row of weight 0 comes after every other row).\n"
        f"keyed AS MATERIALIZED (\n    SELECT *, {weight} AS sampling_weight,\n"
        "        CASE WHEN sampling_weight > 0 THEN -ln(u) / sampling_weight ELSE 'inf'::DOUBLE END AS sample_key\n"
        f"    FROM {prev}\n)"
    )
    units = balance_sql.quota_units(recipe, runs)
    for r, top, cond, q in units:
        ctes.append(
            f"{top} AS (\n"
            f"    SELECT * FROM keyed WHERE {cond}\n"
            f"    ORDER BY {order}\n    LIMIT {q}\n)"
        )
    picks = []
    for r, top, cond, q in units:
        if r.src.repeat == 1:
            picks.append(f"SELECT *, 1 AS repeat FROM {top}")
        else:
            picks.append(
                f"-- {r.name}: with fewer rows than its quota {q}, every row is taken and those with the\n"
                f"    -- smallest keys again, each at most {r.src.repeat} times in all\n"
                f"    SELECT * EXCLUDE (rank, available),\n"
                f"        CAST(least({r.src.repeat}, ({q} - rank) // available + 1) AS INTEGER) AS repeat\n"
                f"    FROM (SELECT *, row_number() OVER (ORDER BY {order}) AS rank, count(*) OVER () AS available\n"
                f"          FROM {top})"
            )
    ctes.append(
        "-- 6. The selected rows and how many times each is used (repeat).\n"
        "picked AS MATERIALIZED (\n    " + "\n    UNION ALL\n    ".join(picks) + "\n)"
    )
    if upto is not None:
        return "\n".join(head) + "\n" + ",\n".join(ctes) + f"\nSELECT * FROM {upto}\n"
    payload = [c for c in extra if c != "dup_group"]
    for i, r in enumerate(runs):
        glob = r.paths(read)[0]
        # caption_clean: the text the filters scored and the trainer gets; a run scored
        # before the clean stage existed has none, and its caption is that text
        clean = "s.caption_clean" if "caption_clean" in r.columns else "s.caption AS caption_clean"
        cols = ["s.sample_id", "s.source", 's."row"', "s.caption", clean]
        for c in payload:
            have, want = r.column(c), r.types.get(c, "VARCHAR")
            if have is None:
                cols.append(f"CAST(NULL AS {want}) AS {ident(c)}")
            elif r.columns[have] == want:
                cols.append(f"s.{ident(have)}" + (f" AS {ident(c)}" if have != c else ""))
            else:
                cols.append(f"CAST(s.{ident(have)} AS {want}) AS {ident(c)}")
        note = ("-- 7. The selected rows' captions and carried columns, read again from each source.\n"
                if i == 0 else "")
        ctes.append(
            f"{note}{ident('text_' + r.name)} AS (\n"
            f"    SELECT {sql_str(r.name)} AS run, {', '.join(cols)}\n"
            f"    FROM read_parquet({sql_str(glob)}) AS s\n"
            f"    WHERE s.sample_id IN (SELECT sample_id FROM picked WHERE run = {sql_str(r.name)})\n)"
        )
    union = "\n    UNION ALL ".join(f"SELECT * FROM {ident('text_' + r.name)}" for r in runs)
    ctes.append(f"texts AS (\n    {union}\n)")
    out_cols = ", ".join(f"t.{ident(c)}" if c != "dup_group" else "p.dup_group" for c in extra)
    return "\n".join(head) + "\n" + ",\n".join(ctes) + "\n" + (
        "-- 8. The manifest: one row per selected sample, sorted by sample_id, with a content hash\n"
        "--    of its caption (the first 64 bits of its md5).\n"
        "SELECT\n"
        "    p.sample_id, p.run, p.source, p.\"row\", t.caption, t.caption_clean,"
        + (f"\n    {out_cols}," if out_cols else "")
        + "\n    p.quality, p.sampling_weight, p.sample_key, p.repeat,\n"
        "    CAST('0x' || left(md5(t.caption), 16) AS UBIGINT) AS caption_hash"
        + "".join(f",\n    p.{ident(c)}" for c in balance_sql.output_columns(recipe)) + "\n"
        "FROM picked AS p\n"
        "JOIN texts AS t USING (run, sample_id, source, \"row\")\n"
        "ORDER BY p.sample_id, p.run, p.\"row\"\n"
    )
