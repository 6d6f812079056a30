"""The one exception type the library raises for problems a user can fix."""


class CurateError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 1."""


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__
