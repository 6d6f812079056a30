"""The units of work of ``curate score``: slices of the inputs whose first row is known
before any data is read, so that they can be scored anywhere and in any order.

* Parquet: a run of consecutive row groups that begins and ends on a part boundary (a
  multiple of ``batch_rows``, or the end of the file). Its first row and first part number
  come from the file's footer (row counts per row group), so units are read in parallel
  and each reads only its own row groups.
* JSONL / CSV / TSV: the whole file (a line's row number needs every line before it).

The stage plans the units; an engine schedules them (``curate.engines.ray_score`` on Ray
Data actors that load the chain's models once).
"""
from __future__ import annotations

from dataclasses import dataclass

from curate.ingest.formats import FORMATS
from curate.ingest.inputs import InputFile


@dataclass
class Unit:
    file: int  # index into the run's input files
    row_groups: tuple[int, int] | None  # Parquet: [first, last) row group; None: whole file
    start: int  # first row within the file
    stop: int | None  # end row (Parquet), None when unknown before reading
    first_part: int  # part number of the first row


def plan_units(files: list[InputFile], batch_rows: int) -> list[Unit]:
    """Cut the inputs into units whose first row is known (see the module's docstring): a
    format with row groups (Parquet) by them, another one unit per file."""
    units: list[Unit] = []
    for fi, inp in enumerate(files):
        counts = FORMATS[inp.format].row_groups
        if counts is None:
            units.append(Unit(fi, None, 0, None, 0))
            continue
        groups = counts(inp)
        total = sum(groups)
        g0 = start = end = 0
        for g, n in enumerate(groups):
            end += n
            if end > start and (end % batch_rows == 0 or end == total):
                units.append(Unit(fi, (g0, g + 1), start, end, start // batch_rows))
                g0, start = g + 1, end
    return units


def unit_parts(unit: Unit, batch_rows: int) -> range:
    """The part numbers of a unit whose end is known (Parquet)."""
    assert unit.stop is not None
    return range(unit.first_part, -(-unit.stop // batch_rows))
