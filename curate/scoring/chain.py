"""Filter chains: recipe files that list filters, their parameters and thresholds.

A chain is a TOML file; the packaged ones are the repository's ``filters/`` folder::

    name = "default"
    description = "..."

    [[clean]]                # optional, in order: transforms applied before the filters
    name = "html"            # a key of curate.clean.TRANSFORMS (see curate.clean.apply)

    [[filter]]
    name = "length"          # a key of curate.scoring.filters.FILTERS
    min = 3                  # thresholds: within(score, min, max); omitted -> filter default
    max = 300
    params = { unit = "words" }

    [[filter]]
    name = "language"
    id = "lang"              # optional: the score column is score__<id> (default: name)
    allow = ["en"]           # optional: values of the filter's label column to keep

The chain is validated before any data is read; every error is one line that lists the
valid options. How a chain decides is in :mod:`curate.scoring.decision`.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.clean import Transform, parse_clean
from curate.clean.apply import clean_toml
from curate.config import read_toml, recipe_entry
from curate.errors import CurateError
from curate.scoring.filters import FILTERS, Filter

EMPTY = "empty"  # the reason of a caption with nothing in it (see decision.py)
ENTRY_KEYS = ("name", "id", "min", "max", "allow", "deny", "params")
CHAIN_KEYS = ("name", "description", "clean", "filter")
#: The packaged chains: the repository's top-level ``filters/`` folder, installed as this
#: package (pyproject.toml maps it), so a wheel carries the same files a person edits.
CHAINS_PACKAGE = "curate.scoring.chains"


@dataclass
class Step:
    id: str
    filter: Filter
    min: float | None
    max: float | None
    allow: list[str] | None = None
    deny: list[str] | None = None

    @property
    def column(self) -> str:
        return f"score__{self.id}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.filter.name, "id": self.id, "version": self.filter.version}
        d["min"], d["max"] = self.min, self.max
        if self.allow is not None:
            d["allow"] = self.allow
        if self.deny is not None:
            d["deny"] = self.deny
        d["params"] = dict(self.filter.p)
        return d


@dataclass
class Chain:
    name: str
    description: str
    steps: list[Step]
    path: str | None = None
    extra: dict = field(default_factory=dict)
    clean: list[Transform] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "description": self.description}
        if self.clean:
            d["clean"] = [t.to_dict() for t in self.clean]
        d["filter"] = [s.to_dict() for s in self.steps]
        return d

    def to_toml(self) -> str:
        lines = [f"name = {json.dumps(self.name)}", f"description = {json.dumps(self.description)}"]
        lines += clean_toml(self.clean)
        for s in self.steps:
            lines += ["", "[[filter]]", f"name = {json.dumps(s.filter.name)}"]
            if s.id != s.filter.name:
                lines.append(f"id = {json.dumps(s.id)}")
            defaults = dict(zip(("min", "max"), s.filter.thresholds()))
            for key in ("min", "max"):
                v = getattr(s, key)
                if v is not None:
                    lines.append(f"{key} = {v!r}")
                elif defaults[key] is not None:
                    lines.append(f'{key} = "{NO_BOUND}"')
            for key in ("allow", "deny"):
                v = getattr(s, key)
                if v is not None:
                    lines.append(f"{key} = {json.dumps(v)}")
            if s.filter.p:
                inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in s.filter.p.items())
                lines.append(f"params = {{ {inner} }}")
        return "\n".join(lines) + "\n"

    def scoring_key(self) -> str:
        """Hash of what the scores depend on (filters, versions, params), not thresholds."""
        desc: list = [(s.id, s.filter.name, s.filter.version, sorted(s.filter.p.items())) for s in self.steps]
        if self.clean:  # the filters score the cleaned text
            desc.append([(t.name, t.version, sorted(t.p.items())) for t in self.clean])
        return hashlib.sha256(json.dumps(desc, default=str).encode()).hexdigest()[:16]

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]

    @property
    def score_columns(self) -> list[str]:
        return [s.column for s in self.steps]


def _chains_dir() -> Path | None:
    from importlib import resources

    try:
        folder = resources.files(CHAINS_PACKAGE)
    except ModuleNotFoundError:
        return None
    return Path(str(folder)) if Path(str(folder)).is_dir() else None


def chain_names() -> list[str]:
    """The names of the packaged chains (``default``, ``english-strict``, ...)."""
    folder = _chains_dir()
    return sorted(x.stem for x in folder.glob("*.toml")) if folder else []


def resolve_chain_path(spec: str | None) -> Path:
    """``None`` -> the packaged ``default``; a bare name -> that packaged chain; else a path."""
    if spec is None:
        spec = "default"
    p = Path(spec)
    if p.is_file():
        return p
    folder = _chains_dir()
    if not p.suffix and folder is not None and (folder / f"{spec}.toml").is_file():
        return folder / f"{spec}.toml"
    raise CurateError(f"chain {spec!r} not found; give a path or one of: {', '.join(chain_names()) or '(none)'}")


def load_chain(spec: str | None = None, lid_model: str | None = None) -> Chain:
    path = resolve_chain_path(spec)
    return parse_chain(read_toml(path, "chain"), str(path), lid_model=lid_model)


NO_BOUND = "none"


def _number(where: str, key: str, v: Any) -> float | None:
    """A threshold: a number, or "none" (TOML has no null) to switch a default bound off."""
    if v is None or v == NO_BOUND:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        raise CurateError(f"{where}: {key} must be a number or \"none\", got {v!r}")
    return float(v)


def parse_chain(data: dict, where: str = "chain", lid_model: str | None = None) -> Chain:
    for key in data:
        if key not in CHAIN_KEYS:
            raise CurateError(f"{where}: unknown key {key!r}; valid keys: {', '.join(CHAIN_KEYS)}")
    entries = data.get("filter")
    if not isinstance(entries, list) or not entries:
        raise CurateError(f"{where}: a chain needs at least one [[filter]] entry")
    steps: list[Step] = []
    for i, entry in enumerate(entries, 1):
        at = f"{where}: filter #{i}"
        name, params = recipe_entry(entry, at, ENTRY_KEYS, FILTERS, "filter")
        if name == "language" and lid_model:
            params = {**params, "model": lid_model}
        try:
            filt = FILTERS[name](**params)
        except CurateError as e:
            raise CurateError(f"{at}: {e}") from None
        ident = entry.get("id", name)
        if not isinstance(ident, str) or not ident.replace("_", "").isalnum():
            raise CurateError(f"{at} ({name}): id must be letters, digits and '_', got {ident!r}")
        if ident == EMPTY or any(s.id == ident for s in steps):
            raise CurateError(f"{at} ({name}): id {ident!r} is used twice; give this entry another id")
        dmin, dmax = filt.thresholds()
        lo = _number(at, "min", entry["min"]) if "min" in entry else dmin
        hi = _number(at, "max", entry["max"]) if "max" in entry else dmax
        if lo is not None and hi is not None and lo > hi:
            raise CurateError(f"{at} ({name}): min {lo} is greater than max {hi}")
        lists = {}
        for key in ("allow", "deny"):
            v = entry.get(key)
            if v is not None:
                if filt.label is None:
                    raise CurateError(f"{at} ({name}): {key} needs a filter with a label column; "
                                      f"filters with one: {', '.join(n for n, f in FILTERS.items() if f.label)}")
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    raise CurateError(f"{at} ({name}): {key} must be a list of strings")
                why = filt.label_error(v)
                if why:
                    raise CurateError(f"{at} ({name}): {key}: {why}")
            lists[key] = v
        steps.append(Step(ident, filt, lo, hi, lists["allow"], lists["deny"]))
    labels = [s.filter.label for s in steps if s.filter.label]
    if len(labels) != len(set(labels)):
        raise CurateError(f"{where}: a filter with a label column ({', '.join(labels)}) appears twice")
    name = data.get("name", Path(where).stem)
    desc = data.get("description", "")
    if not isinstance(name, str) or not isinstance(desc, str):
        raise CurateError(f"{where}: name and description must be strings")
    return Chain(name, desc, steps, path=where, clean=parse_clean(data.get("clean"), where))


def chain_of_record(data: dict, where: str) -> Chain:
    """A chain as a run records it (``run.json``'s ``chain``): versions are the recorded
    filters', so they are dropped before parsing (parameters and thresholds are kept)."""
    entries = [{k: v for k, v in f.items() if k != "version"} for f in data.get("filter", [])]
    clean = [{k: v for k, v in t.items() if k != "version"} for t in data.get("clean", [])]
    return parse_chain({"name": data.get("name", "chain"), "clean": clean, "filter": entries}, where)
