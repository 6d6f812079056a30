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

