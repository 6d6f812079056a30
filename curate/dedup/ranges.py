"""Duplicate groups computed by text range, as independent units of work.

The same rule and the same results as :func:`curate.dedup.groups.best_better`,
:func:`~curate.dedup.groups.nearest` and :func:`~curate.dedup.groups.roots`, without one
process holding the neighbour table or a pointer array of every text. Texts are numbered in
rank order (0 = best); a *range* is ``[r * size, (r + 1) * size)`` of those numbers. Every
step is a list of units that an engine maps a function over (``run_map(fn, units, shared)``:
the local engine calls ``fn(unit, shared)`` in turn, the Ray engine runs one task per unit);
units talk only through files in a work folder, and each returns a few counters.

1. **Split** (a unit: one part of the neighbour table). Its (text, neighbour) pairs, in both
   directions, with the rule's similarity, are written to one file per range of the first
   text (the table partitioned by text range).
2. **Best** (a unit: one range). Each text's best better-ranked neighbour (the highest
   similarity; ties go to the better-ranked text) and its nearest text by cosine; the text
   points at that neighbour when the similarity is above the threshold, else at itself.
   Writes the range's arrays and its pointer shard of generation 0.
3. **Jump** (a unit: one range, a round at a time). Each text's pointer ``p`` becomes
   ``p[p]``, read from the shards (of the current generation) of the ranges that ``p``
   reaches into; the next generation's shard is written. The rounds stop when no pointer
   changes: every pointer is then its group's representative (log2 of the longest chain
   rounds). Pointers only go to better-ranked texts, so they reach earlier ranges only.

The driver keeps the number of changed pointers per round; :func:`read_result` reads the
final shards back for the groups table.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow as pa

from curate.atomic import write_parquet
from curate.dedup.groups import groups_from_arrays, similarity
from curate.layout import numbered

#: texts per range (a range's arrays: about 40 bytes a text; its pairs about 20 a neighbour)
RANGE_TEXTS = 1 << 20

RunMap = Callable[[Callable, list, object], list]


def local_map(fn: Callable, units: list, shared=None) -> list:
    """The local engine's map: every unit in turn, in this process."""
    return [fn(u, shared) for u in units]


@dataclass(frozen=True)
class RangePlan:
    """``n`` texts cut into ranges of ``size``; the work files live under ``folder``."""

    n: int
    size: int
    folder: str

    @property
    def ranges(self) -> int:
        return max(1, -(-self.n // self.size))

    def bounds(self, r: int) -> tuple[int, int]:
        return r * self.size, min(self.n, (r + 1) * self.size)

    def edges(self, r: int) -> Path:
        return numbered(self.folder, "edges", r, suffix="")

    def best(self, r: int) -> Path:
        return numbered(self.folder, "best", r)

    def pointers(self, gen: int, r: int) -> Path:
        return numbered(numbered(self.folder, "pointers", gen, suffix=""), "range", r)


def text_index(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted text hashes, their text numbers): what a split unit needs to number a pair."""
    order = np.argsort(hashes, kind="stable")
    return hashes[order], order.astype(np.int64)


def lookup(index: tuple[np.ndarray, np.ndarray], h: np.ndarray) -> np.ndarray:
    """Text numbers of hashes ``h`` (-1 for a hash that is not a text of this set)."""
    sh, ids = index
    if len(sh) == 0:
        return np.full(len(h), -1, np.int64)
    pos = np.minimum(np.searchsorted(sh, h), len(sh) - 1)
    return np.where(sh[pos] == h, ids[pos], -1)


def split_part(unit: tuple[int, str], index, plan: RangePlan, rule: str) -> int:
    """Step 1 for one table part: its pairs, both directions, into per-range files;
    returns the pairs written."""
    p, path = unit
    t = pl.read_parquet(path, columns=["text_hash", "neighbor_hash", "cosine", "jaccard"])
    i = lookup(index, t["text_hash"].to_numpy())
    j = lookup(index, t["neighbor_hash"].to_numpy())
    t = t.with_columns(pl.Series("i", i), pl.Series("j", j)).filter((pl.col("i") >= 0) & (pl.col("j") >= 0))
    t = t.select("i", "j", pl.col("cosine").cast(pl.Float64), similarity(rule).alias("s"))
    both = pl.concat([t, t.select(pl.col("j").alias("i"), pl.col("i").alias("j"), "cosine", "s")])
    both = both.with_columns((pl.col("i") // plan.size).alias("r"))
    written = 0
    for (r,), part in both.partition_by("r", as_dict=True).items():  # a loop over ranges, not rows
        folder = plan.edges(int(r))
        folder.mkdir(parents=True, exist_ok=True)
        write_parquet(part.drop("r").to_arrow(), numbered(folder, "part", p))
        written += part.height
    return written


def best_range(r: int, threshold: float, plan: RangePlan) -> int:
    """Step 2 for range ``r``: best better-ranked neighbour, nearest text and pointer shard
    of generation 0; returns the texts of the range that are duplicates."""
    lo, hi = plan.bounds(r)
    m = hi - lo
    files = sorted(plan.edges(r).glob("*.parquet")) if plan.edges(r).is_dir() else []
    e = (pl.read_parquet(files) if files else
         pl.DataFrame(schema={"i": pl.Int64, "j": pl.Int64, "cosine": pl.Float64, "s": pl.Float64}))
    better = (e.filter((pl.col("j") < pl.col("i")) & (pl.col("s") > 0))
              .sort(["i", "s", "j"], descending=[False, True, False]).unique("i", keep="first"))
    near = e.sort(["i", "cosine", "j"], descending=[False, True, False]).unique("i", keep="first")
    score = np.zeros(m, np.float64)
    target = np.full(m, -1, np.int64)
    score[better["i"].to_numpy() - lo] = better["s"].to_numpy()
    target[better["i"].to_numpy() - lo] = better["j"].to_numpy()
    nb = np.full(m, -1, np.int64)
    ncos = np.full(m, np.nan, np.float64)
    nb[near["i"].to_numpy() - lo] = near["j"].to_numpy()
    ncos[near["i"].to_numpy() - lo] = near["cosine"].to_numpy()
    dup = score > threshold
    parent = np.where(dup, target, np.arange(lo, hi, dtype=np.int64))
    write_parquet(pa.table({"score": score, "target": target, "nearest": nb, "nearest_cosine": ncos}), plan.best(r))
    write_pointers(plan.pointers(0, r), parent)
    return int(dup.sum())


def write_pointers(path: Path, parent: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_parquet(pa.table({"p": parent}), path)


def read_pointers(path: Path) -> np.ndarray:
    return pl.read_parquet(path)["p"].to_numpy()


def jump_range(r: int, gen: int, plan: RangePlan) -> int:
    """Step 3, one round for range ``r``: generation ``gen + 1`` of its shard; returns the
    pointers that changed."""
    p = read_pointers(plan.pointers(gen, r))
    nxt = p.copy()
    reach = p // plan.size
    for q in np.unique(reach):  # a loop over the ranges this one points into, not rows
        at = reach == q
        shard = p if q == r else read_pointers(plan.pointers(gen, int(q)))
        nxt[at] = shard[p[at] - plan.bounds(int(q))[0]]
    write_pointers(plan.pointers(gen + 1, r), nxt)
    return int((nxt != p).sum())


def split_unit(unit, shared):
    """A split unit as the engines call it (``shared``: (text index, plan, rule))."""
    return split_part(unit, *shared)


def best_unit(r, shared):
    """A best unit (``shared``: (threshold, plan))."""
    return best_range(r, *shared)


def jump_unit(unit, plan):
    """A jump unit: (range, generation)."""
    return jump_range(unit[0], unit[1], plan)


def range_groups(files: list[Path], hashes: np.ndarray, rule: str, threshold: float, folder: Path,
                 run_map: RunMap | None = None, size: int | None = None) -> tuple[RangePlan, dict]:
    """Steps 1 to 3 over the neighbour table ``files`` for the texts whose clean hashes are
    ``hashes`` (in text order); returns the plan (its final generation is ``info["rounds"]``)
    and counters."""
    run_map = run_map or local_map
    plan = RangePlan(len(hashes), max(1, size or RANGE_TEXTS), str(folder))
    shutil.rmtree(folder, ignore_errors=True)
    Path(folder).mkdir(parents=True)
    pairs = run_map(split_unit, list(enumerate(map(str, files))), (text_index(hashes), plan, rule))
    dups = run_map(best_unit, list(range(plan.ranges)), (threshold, plan))
    gen, changed = 0, []
    while True:
        moved = sum(run_map(jump_unit, [(r, gen) for r in range(plan.ranges)], plan))
        shutil.rmtree(numbered(folder, "pointers", gen, suffix=""), ignore_errors=True)
        gen += 1
        changed.append(int(moved))
        if moved == 0:
            break
    info = {"ranges": plan.ranges, "range_texts": plan.size, "table_parts": len(files),
            "pairs": int(sum(pairs)), "duplicates": int(sum(dups)), "rounds": gen, "changed_per_round": changed}
    return plan, info


def read_result(plan: RangePlan, rounds: int) -> tuple[np.ndarray, ...]:
    """(score, target, nearest, nearest_cosine, root) of every text, range by range."""
    best = pl.concat([pl.read_parquet(plan.best(r)) for r in range(plan.ranges)])
    root = np.concatenate([read_pointers(plan.pointers(rounds, r)) for r in range(plan.ranges)])
    return (best["score"].to_numpy(), best["target"].to_numpy(), best["nearest"].to_numpy(),
            best["nearest_cosine"].to_numpy(), root[: plan.n])


def groups_by_range(rows: pl.DataFrame, texts: pl.DataFrame, files: list[Path], cfg: dict, out: Path,
                    run_map: RunMap, size: int | None = None) -> tuple[pl.DataFrame, dict]:
    """The groups table of :func:`curate.dedup.groups.groups`, with the decision and the
    representatives computed by range (:func:`range_groups`) from the neighbour table
    ``files``; the work files live in a fresh folder under ``out``, removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="groups-by-range-", dir=out))
    try:
        plan, info = range_groups(files, texts["clean_hash"].to_numpy(), cfg["rule"], cfg["threshold"],
                                  folder, run_map, size)
        score, target, nb, ncos, root = read_result(plan, info["rounds"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return groups_from_arrays(rows, texts, score, target, nb, ncos, cfg["threshold"], root=root), info
