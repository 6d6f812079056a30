"""Mixture recipes: a TOML file that says how to assemble a training mixture from runs.

The recipe is parsed and checked here without reading any data (DESIGN convention 7);
checks that need the runs' schemas (unknown columns, SQL errors) live in ``curate.mix``.
Every error is one line that quotes the offending part and, where it helps, the valid
options. See ``mixtures/example.toml`` for a commented recipe.

Run folders in a recipe are relative to the recipe file, so a resolved recipe written
next to a mixture (``MIX/recipe.toml``) names them relative to ``MIX``.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from curate.config import read_toml
from curate.storage.fs import is_url
from curate.errors import CurateError
from curate.mix.balance import Balance, parse_balance, toml_lines
from curate.mix.guard import check_expression

TOP_KEYS = ("name", "description", "size", "seed", "eligible", "quality", "alpha", "caps", "source", "balance")
SOURCE_KEYS = ("name", "run", "share", "weight", "repeat", "eligible", "quality", "group_by")
CAPS_KEYS = ("per_dup_group", "group_by", "per_group", "scope", "missing")
SCOPES = ("mixture", "source")
#: what a source that lacks the group_by column gets: an error, or no group (not capped)
MISSING = ("error", "null")
IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
DEFAULT_ELIGIBLE = "keep"
DEFAULT_QUALITY = "1.0"
MAX_SIZE = 10**12


@dataclass
class Source:
    name: str
    run: str  # as written in the recipe
    path: Path  # absolute run folder (a str: the URL of a run on a store)
    amount: float  # the share or weight as written
    repeat: int
    eligible: str
    quality: str
    share: Fraction = Fraction(0)  # normalised share of the mixture
    group_by: str | None = None  # this source's cap group (a column or an expression)

    def to_dict(self, kind: str, run: str | None = None) -> dict[str, Any]:
        d = {
            "name": self.name, "run": self.run if run is None else run, kind: self.amount,
            "repeat": self.repeat, "eligible": self.eligible, "quality": self.quality,
        }
        if self.group_by is not None:
            d["group_by"] = self.group_by
        return d


@dataclass
class Caps:
    per_dup_group: int | None = None
    group_by: str | None = None
    per_group: int | None = None
    scope: str = "mixture"
    missing: str = "error"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        if self.per_dup_group is not None:
            d["per_dup_group"] = self.per_dup_group
        if self.group_by is not None:
            d["group_by"] = self.group_by
        if self.per_group is not None:
            d["per_group"] = self.per_group
        d["scope"] = self.scope
        if self.missing != "error":
            d["missing"] = self.missing
        return d


@dataclass
class Recipe:
    name: str
    description: str
    size: int
    seed: int
    alpha: float
    caps: Caps
    sources: list[Source]
    kind: str  # "share" or "weight": how the sources' amounts were written
    path: str | None = None
    quotas: dict[str, int] = field(default_factory=dict)
    balance: Balance = field(default_factory=Balance)

    def group_of(self, src: Source) -> str | None:
        """The cap group of a source: its own group_by, else the [caps] one."""
        return src.group_by or self.caps.group_by

    @property
    def grouped(self) -> bool:
        """Whether a group_by cap applies to any source."""
        return any(self.group_of(s) for s in self.sources)

    def source(self, name: str) -> Source:
        for s in self.sources:
            if s.name == name:
                return s
        raise CurateError(f"unknown source {name!r}; sources: {', '.join(s.name for s in self.sources)}")

    def to_dict(self, runs: dict[str, str] | None = None) -> dict[str, Any]:
        """The resolved recipe: every default written out. ``runs`` overrides run paths."""
        return {
            "name": self.name, "description": self.description, "size": self.size,
            "seed": self.seed, "alpha": self.alpha, "caps": self.caps.to_dict(),
            "source": [s.to_dict(self.kind, (runs or {}).get(s.name)) for s in self.sources],
        } | ({"balance": self.balance.to_dict()} if self.balance.active else {})

    def digest(self) -> str:
        """sha256 of the resolved recipe without run locations (the runs are recorded,
        with fingerprints, as the mixture's inputs)."""
        d = self.to_dict()
        for s in d["source"]:
            s.pop("run")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()

    def to_toml(self, base: Path) -> str:
        """The resolved recipe as TOML, with run folders relative to ``base`` (absolute
        where ``base`` is None)."""
        runs = {s.name: _relative(s.path, base) for s in self.sources}
        d = self.to_dict(runs)
        lines = [
            "# Resolved mixture recipe, written by `curate mix`: every default is spelled out.",
            "# Run folders are relative to this file; `curate mix recipe.toml --out OTHER`",
            "# reproduces the same manifest from the same runs.",
            f"name = {_s(d['name'])}",
            f"description = {_s(d['description'])}",
            f"size = {d['size']}",
            f"seed = {d['seed']}",
            f"alpha = {d['alpha']!r}",
            "",
            "[caps]",
        ]
        lines += [f"{k} = {_v(v)}" for k, v in d["caps"].items()]
        lines += toml_lines(self.balance)
        for s, src in zip(d["source"], self.sources):
            lines += ["", "[[source]]"]
            lines += [f"{k} = {_v(v)}" for k, v in s.items()]
            lines.append(f"# quota: {self.quotas.get(src.name, '?')} rows")
        return "\n".join(lines) + "\n"


def _relative(path: Path | str, base: Path | None) -> str:
    if base is None or is_url(path):
        return str(path)
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive
        return str(path)


def _s(text: str) -> str:
    """A TOML basic string (JSON escapes are valid TOML escapes without ensure_ascii)."""
    return json.dumps(text, ensure_ascii=False)


def _v(v: Any) -> str:
    if isinstance(v, str):
        return _s(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def load_recipe(path: str | os.PathLike) -> Recipe:
    p = Path(path)
    if not p.is_file():
        hint = " (a mixture folder? give its recipe.toml)" if p.is_dir() else ""
        raise CurateError(f"recipe {str(path)!r} not found{hint}")
    return parse_recipe(read_toml(p, "recipe"), str(p), base=p.resolve().parent)


def _int(where: str, key: str, v: Any, lo: int, hi: int = MAX_SIZE) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise CurateError(f"{where}: {key} must be a whole number from {lo} to {hi}, got {v!r}")
    return v


def _num(where: str, key: str, v: Any, lo: float = 0.0) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or math.isinf(v) or v < lo:
        raise CurateError(f"{where}: {key} must be a number >= {lo:g}, got {v!r}")
    return float(v)


def _expr(where: str, key: str, v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise CurateError(f"{where}: {key} must be a non-empty SQL expression (a string), got {v!r}")
    return check_expression(f"{where}: {key} {v.strip()!r}", v.strip())


def _group_by(where: str, v: Any) -> str:
    """A cap's group: a column name, or an SQL expression (``coalesce(image_id, url)``)."""
    if not isinstance(v, str) or not v.strip():
        raise CurateError(f"{where}: group_by must be a column name or an SQL expression, got {v!r}")
    v = v.strip()
    return v if IDENT_RE.fullmatch(v) else check_expression(f"{where}: group_by {v!r}", v)


def is_column(group_by: str) -> bool:
    """Whether a group_by is a plain column name (else an SQL expression)."""
    return bool(IDENT_RE.fullmatch(group_by))


def _keys(where: str, d: dict, valid: tuple[str, ...]) -> None:
    for key in d:
        if key not in valid:
            raise CurateError(f"{where}: unknown key {key!r}; valid keys: {', '.join(valid)}")


def parse_recipe(data: dict, where: str = "recipe", base: Path | None = None) -> Recipe:
    base = base or Path.cwd()
    _keys(where, data, TOP_KEYS)
    name = data.get("name", Path(where).stem)
    desc = data.get("description", "")
    if not isinstance(name, str) or not isinstance(desc, str):
        raise CurateError(f"{where}: name and description must be strings")
    if "size" not in data:
        raise CurateError(f"{where}: size is missing (the number of rows in the mixture, repeats included)")
    size = _int(where, "size", data["size"], 1)
    seed = _int(where, "seed", data.get("seed", 0), 0, 2**63 - 1)
    alpha = _num(where, "alpha", data.get("alpha", 1.0))
    eligible = _expr(where, "eligible", data.get("eligible", DEFAULT_ELIGIBLE))
    quality = _expr(where, "quality", data.get("quality", DEFAULT_QUALITY))

    caps_d = data.get("caps", {})
    if not isinstance(caps_d, dict):
        raise CurateError(f"{where}: caps must be a table ([caps])")
    _keys(f"{where}: [caps]", caps_d, CAPS_KEYS)
    caps = Caps(scope=caps_d.get("scope", "mixture"))
    if caps.scope not in SCOPES:
        raise CurateError(f"{where}: [caps] scope must be one of {', '.join(SCOPES)}, got {caps.scope!r}")
    if "per_dup_group" in caps_d:
        caps.per_dup_group = _int(f"{where}: [caps]", "per_dup_group", caps_d["per_dup_group"], 1)
    caps.missing = caps_d.get("missing", "error")
    if caps.missing not in MISSING:
        raise CurateError(f"{where}: [caps] missing must be one of {', '.join(MISSING)}, got {caps.missing!r}")
    if "group_by" in caps_d:
        caps.group_by = _group_by(f"{where}: [caps]", caps_d["group_by"])
    if "per_group" in caps_d:
        caps.per_group = _int(f"{where}: [caps]", "per_group", caps_d["per_group"], 1)

    entries = data.get("source")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise CurateError(f"{where}: a recipe needs at least one [[source]] table (name, run, share)")
    sources: list[Source] = []
    kinds: set[str] = set()
    for i, e in enumerate(entries, 1):
        at = f"{where}: source #{i}"
        _keys(at, e, SOURCE_KEYS)
        sname = e.get("name")
        if not isinstance(sname, str) or not NAME_RE.match(sname):
            raise CurateError(f"{at}: name must be letters, digits, '_' or '-' (starting with a letter), got {sname!r}")
        at = f"{where}: source {sname!r}"
        if any(s.name == sname for s in sources):
            raise CurateError(f"{at}: the name is used twice; give each source its own name")
        run = e.get("run")
        if not isinstance(run, str) or not run:
            raise CurateError(f"{at}: run must be the path of a run folder (from `curate score`)")
        has = [k for k in ("share", "weight") if k in e]
        if len(has) == 2:
            raise CurateError(f"{at}: give share or weight, not both")
        if not has:
            if len(entries) > 1:
                raise CurateError(f"{at}: share is missing (its fraction of the mixture; or give weight)")
            has = ["share"]
        kind = has[0]
        kinds.add(kind)
        amount = _num(at, kind, e.get(kind, 1.0))
        if amount <= 0:
            raise CurateError(f"{at}: {kind} must be greater than 0, got {amount:g}; leave the source out instead")
        repeat = _int(at, "repeat", e.get("repeat", 1), 1, 10_000)
        sources.append(Source(
            name=sname, run=run, path=run.rstrip("/") if is_url(run) else (base / run).resolve(), amount=amount, repeat=repeat,
            eligible=_expr(at, "eligible", e.get("eligible", eligible)),
            quality=_expr(at, "quality", e.get("quality", quality)),
            group_by=_group_by(at, e["group_by"]) if "group_by" in e else None,
        ))
    if len(kinds) > 1:
        raise CurateError(f"{where}: some sources give share and others weight; use one kind for all")
    if caps.group_by is None and not any(s.group_by for s in sources):
        if caps.per_group is not None:
            raise CurateError(f"{where}: [caps] per_group needs group_by (the column whose values are capped)")
    elif caps.per_group is None:
        caps.per_group = 1
    kind = kinds.pop()
    total = sum(Fraction(s.amount) for s in sources)
    if kind == "share" and abs(float(total) - 1.0) > 1e-6:
        listed = ", ".join(f"{s.name}={s.amount:g}" for s in sources)
        raise CurateError(
            f"{where}: shares must add up to 1, but {listed} add up to {float(total):g} (or give weight instead)"
        )
    for s in sources:
        s.share = Fraction(s.amount) / total
    recipe = Recipe(name, desc, size, seed, alpha, caps, sources, kind, path=where)
    if "balance" in data:
        recipe.balance = parse_balance(where, data["balance"], {s.name: s.repeat for s in sources})
    recipe.quotas = quotas(size, sources)
    return recipe


def quotas(size: int, sources: list[Source]) -> dict[str, int]:
    """Rows per source: ``size * share``, rounded by largest remainder (ties: recipe order).

    Exact rational arithmetic, so every machine gets the same numbers.
    """
    exact = [size * s.share for s in sources]
    out = [math.floor(x) for x in exact]
    left = size - sum(out)
    order = sorted(range(len(sources)), key=lambda i: (-(exact[i] - out[i]), i))
    for i in order[:left]:
        out[i] += 1
    return {s.name: n for s, n in zip(sources, out)}
