"""The one exception type the library raises for problems a user can fix."""


class CurateError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 1."""


def error_line(e: BaseException) -> str:
    """What a child process reports of its failure: a CurateError's message as it is, any
    other exception as its type and first line."""
    if isinstance(e, CurateError):
        return str(e)
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
