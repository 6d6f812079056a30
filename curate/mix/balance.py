"""A recipe's ``[balance]`` table: balance by concepts, cap openings, mix caption lengths.

::

    [balance]
    per_concept = 20000          # MetaCLIP's t: an entry matched by c rows keeps each with
                                 # p = min(1, t / c); a row stays when any of its entries draws it
    unmatched = "drop"           # rows that match no entry: "drop" (MetaCLIP) or "keep"
    max_per_opening = 500        # at most this many rows open with the same three words
    length_mix = { "0-20" = 0.3, "21-" = 0.7 }   # caption length bins (words) and their shares

Parsed here without reading data; the SQL is rendered by :mod:`curate.mix.balance_sql`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from curate.errors import CurateError

KEYS = ("per_concept", "unmatched", "max_per_opening", "length_mix")
UNMATCHED = ("drop", "keep")
BIN_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d*)\s*$")


@dataclass
class LengthBin:
    label: str  # as written: "0-20", "21-"
    lo: int
    hi: int | None  # None: no upper end
    share: Fraction


@dataclass
class Balance:
    per_concept: int | None = None
    unmatched: str = "drop"
    max_per_opening: int | None = None
    length_mix: dict[str, float] = field(default_factory=dict)  # as written
    bins: list[LengthBin] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.per_concept is not None or self.max_per_opening is not None or bool(self.bins)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.per_concept is not None:
            d["per_concept"] = self.per_concept
            d["unmatched"] = self.unmatched
        if self.max_per_opening is not None:
            d["max_per_opening"] = self.max_per_opening
        if self.bins:
            d["length_mix"] = {b.label: self.length_mix[b.label] for b in self.bins}
        return d


def _whole(where: str, key: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise CurateError(f"{where}: {key} must be a whole number >= 1, got {v!r}")
    return v


def parse_balance(where: str, d: Any, repeats: dict[str, int] | None = None) -> Balance:
    """The ``[balance]`` table of a recipe; one-line errors that name the valid options.
    ``repeats``: each source's ``repeat``; a balanced source may not repeat rows (using the
    balance's rows again to fill a quota would bring back the head it thinned)."""
    where = f"{where}: [balance]"
    if not isinstance(d, dict):
        raise CurateError(f"{where} must be a table")
    for key in d:
        if key not in KEYS:
            raise CurateError(f"{where}: unknown key {key!r}; valid keys: {', '.join(KEYS)}")
    b = Balance()
    if "per_concept" in d:
        b.per_concept = _whole(where, "per_concept", d["per_concept"])
    if "unmatched" in d:
        if b.per_concept is None:
            raise CurateError(f"{where}: unmatched needs per_concept")
        if d["unmatched"] not in UNMATCHED:
            raise CurateError(f"{where}: unmatched must be one of {', '.join(UNMATCHED)}, got {d['unmatched']!r}")
        b.unmatched = d["unmatched"]
    again = sorted(name for name, n in (repeats or {}).items() if n > 1)
    if b.per_concept is not None and again:
        raise CurateError(f"{where}: per_concept takes each row the balance keeps once; remove repeat from "
                          f"source(s) {', '.join(again)} (a source short of its quota takes what the balance keeps)")
    if "max_per_opening" in d:
        b.max_per_opening = _whole(where, "max_per_opening", d["max_per_opening"])
    if "length_mix" in d:
        b.length_mix, b.bins = _bins(where, d["length_mix"])
    return b


def _bins(where: str, mix: Any) -> tuple[dict[str, float], list[LengthBin]]:
    if not isinstance(mix, dict) or not mix:
        raise CurateError(f'{where}: length_mix must be a table of word bins and shares, e.g. {{ "0-20" = 0.3, "21-" = 0.7 }}')
    bins = []
    for label, share in mix.items():
        m = BIN_RE.match(label)
        if not m:
            raise CurateError(f"{where}: length_mix bin {label!r} must be LO-HI or LO- (words, whole numbers)")
        lo, hi = int(m.group(1)), (int(m.group(2)) if m.group(2) else None)
        if hi is not None and hi < lo:
            raise CurateError(f"{where}: length_mix bin {label!r} ends before it starts")
        if isinstance(share, bool) or not isinstance(share, (int, float)) or math.isnan(share) or not 0 < share <= 1:
            raise CurateError(f"{where}: length_mix share of {label!r} must be a number in (0, 1], got {share!r}")
        bins.append(LengthBin(label, lo, hi, Fraction(share)))
    bins.sort(key=lambda x: x.lo)
    for a, b in zip(bins, bins[1:]):
        if a.hi is None or a.hi >= b.lo:
            raise CurateError(f"{where}: length_mix bins {a.label!r} and {b.label!r} overlap")
    total = sum(x.share for x in bins)
    if abs(float(total) - 1.0) > 1e-6:
        raise CurateError(f"{where}: length_mix shares must add up to 1, they add up to {float(total):g}")
    for x in bins:
        x.share /= total
    return {k: float(v) for k, v in mix.items()}, bins


#: tail shares for which ``curate concepts`` names a per_concept (MetaCLIP 2's p)
TAIL_SHARES = (0.05, 0.1, 0.25, 0.5)


def tail_shares(counts: Any) -> dict[str, Any]:
    """How T relates to the entry counts (rows per entry), as MetaCLIP reads its t: for a
    ladder of T (1, 2, 5, 10, 20, 50, ... up to the largest count) the tail share (the share
    of all matches that fall on entries with fewer than T rows, MetaCLIP's ``t_to_p``) and
    the entries below T; and for each p of :data:`TAIL_SHARES` the T whose tail share is
    nearest p (MetaCLIP 2's ``p_to_t``, which keeps p equal across languages)."""
    c = np.sort(np.asarray(counts, dtype=np.int64))
    c = c[c > 0]
    if not len(c):
        return {"ladder": [], "per_concept_for": {}}
    cum = np.concatenate([[0], np.cumsum(c)])
    total = cum[-1]
    ladder = np.array([m * 10**k for k in range(13) for m in (1, 2, 5) if m * 10**k <= c[-1]] or [1])
    below = np.searchsorted(c, ladder)
    share = cum[below] / total
    portion = cum[1:] / total
    pick = {str(p): int(c[int(np.argmin(np.abs(portion - p)))]) for p in TAIL_SHARES}
    return {"ladder": [{"per_concept": int(t), "tail_share": round(float(s), 6), "entries_below": int(b)}
                       for t, s, b in zip(ladder, share, below)],
            "per_concept_for": pick}


def split(n: int, shares: list[Fraction]) -> list[int]:
    """``n`` split by ``shares`` (largest remainder; ties: the order given), exact."""
    exact = [n * s for s in shares]
    out = [math.floor(x) for x in exact]
    for i in sorted(range(len(shares)), key=lambda i: (-(exact[i] - out[i]), i))[: n - sum(out)]:
        out[i] += 1
    return out


def toml_lines(b: Balance) -> list[str]:
    """The ``[balance]`` table of a resolved recipe (nothing when no key is set)."""
    d = b.to_dict()
    if not d:
        return []
    lines = ["", "[balance]"]
    for k, v in d.items():
        if isinstance(v, dict):
            inner = ", ".join(f'"{label}" = {share!r}' for label, share in v.items())
            lines.append(f"{k} = {{ {inner} }}")
        elif isinstance(v, str):
            lines.append(f'{k} = "{v}"')
        else:
            lines.append(f"{k} = {v!r}")
    return lines
