"""Reading recipe files (chains, mixtures) as TOML, with one-line errors."""
from __future__ import annotations

from pathlib import Path

from curate.errors import CurateError


def read_toml(path: Path, what: str) -> dict:
    """A TOML file (a chain, a recipe) as a dict; unreadable or invalid TOML is a one-line error."""
    import tomllib

    try:
        return tomllib.loads(Path(path).read_text())
    except tomllib.TOMLDecodeError as e:
        raise CurateError(f"{path}: invalid TOML ({e})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CurateError(f"{path}: cannot read {what} ({e})") from None


def recipe_entry(entry, at: str, keys: tuple[str, ...], registry: dict, kind: str) -> tuple[str, dict]:
    """One ``[[filter]]`` or ``[[clean]]`` table checked: a table, only ``keys``, a ``name``
    that ``registry`` holds and a ``params`` table; returns (name, params)."""
    if not isinstance(entry, dict):
        raise CurateError(f"{at}: must be a table")
    for key in entry:
        if key not in keys:
            raise CurateError(f"{at}: unknown key {key!r}; valid keys: {', '.join(keys)}")
    name = entry.get("name")
    if not isinstance(name, str) or name not in registry:
        raise CurateError(f"{at}: unknown {kind} {name!r}; valid {kind}s: {', '.join(registry)}")
    params = entry.get("params", {})
    if not isinstance(params, dict):
        raise CurateError(f"{at} ({name}): params must be a table")
    return name, params
