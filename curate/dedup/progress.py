"""Progress hooks for ``curate dedup``: the library default does nothing, the CLI draws bars."""
from __future__ import annotations

from typing import Callable


class Reporter:
    """Progress hooks; the CLI draws bars with them, the library default does nothing."""

    def stage(self, name: str, total: int | None) -> Callable[[float], None]:
        return lambda n: None

    def note(self, message: str) -> None:
        pass

    def say(self, message: str) -> None:
        """A line of information (not a warning)."""


class RichReporter(Reporter):
    """Progress bars on a terminal (rich); notes are printed either way."""

    def __init__(self, console) -> None:
        self.console = console
        self.bar = None
        if console.is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), console=console, transient=True)

    def __enter__(self) -> "RichReporter":
        if self.bar is not None:
            self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()

    def stage(self, name: str, total: int | None) -> Callable[[float], None]:
        if self.bar is None:
            return lambda n: None
        task = self.bar.add_task(name, total=total)
        return lambda n: self.bar.update(task, advance=n)

    def note(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False)

    def say(self, message: str) -> None:
        self.console.print(message, highlight=False)
