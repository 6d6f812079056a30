from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from curate.errors import CurateError, first_line
from curate.layout import DEDUP, RUN_JSON, dedup_json_path, groups_path
from curate.scoring.filters.base import Filter


class NearDup(Filter):
    """Near-duplicates of a better caption, found by ``curate dedup`` (an external score).

    Rule: ``score__neardup`` is the highest similarity (0 to 1) of the caption to any
    better-ranked caption among its embedding neighbours: 1 for a copy that is the same
    after normalisation (case, punctuation, white space, stock-photo affixes); for the
    default ``copies`` preset ``min(cosine, word overlap)``; for ``paraphrase`` the
    all-MiniLM-L6-v2 cosine; 0 when no neighbour reaches 0.5. A caption fails when its
    score is above ``max``: the best-ranked caption of each group always passes (the
    SemDeDup rule, Abbas et al. 2023). ``max`` is any threshold of at least 0.5; the
    default, 0.75, is the ``copies`` preset's ("more than three quarters of the words in
    common, and a cosine above 0.75"). Written by ``curate dedup RUN`` to
    ``RUN/dedup/groups.parquet``; ``curate decide`` joins it on ``sample_id``.
    """

    name = "neardup"
    version = 1
    params = {}
    default_max = 0.75
    external = True

    def score(self, batch: pl.DataFrame, column: str) -> pl.DataFrame:  # pragma: no cover
        raise CurateError("neardup is computed by `curate dedup RUN`, not while scoring")

    def load(self, run, column: str) -> pl.DataFrame:
        """``sample_id`` and ``column`` (``score__neardup``) from ``RUN/dedup/groups.parquet``."""
        folder = Path(run) / DEDUP
        meta, groups = dedup_json_path(run), groups_path(run)
        if not meta.is_file() or not groups.is_file():
            raise CurateError(f"{run} has no near-duplicate scores; run `curate dedup {run}` first")
        try:
            info = json.loads(meta.read_text())
            run_key = json.loads((Path(run) / RUN_JSON).read_text()).get("key")
        except (OSError, ValueError) as e:
            raise CurateError(f"{meta}: unreadable ({e}); run `curate dedup {run}` again") from None
        if info.get("run_key") != run_key:
            raise CurateError(f"{folder} was made for an earlier scoring of {run}; run `curate dedup {run}` again")
        try:
            df = pl.read_parquet(groups, columns=["sample_id", "score__neardup"])
        except Exception as e:  # a damaged file
            raise CurateError(f"{groups}: unreadable ({first_line(e)}); run `curate dedup {run}` again") from None
        return df.rename({"score__neardup": column}) if column != "score__neardup" else df
