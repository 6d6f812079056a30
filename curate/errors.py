"""The one exception type the library raises for problems a user can fix."""


class CurateError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 1."""
