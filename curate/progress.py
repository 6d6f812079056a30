"""Progress of long commands: one protocol for every stage (scoring, embedding, searching ...).

A library function that runs long takes a :class:`Reporter`. It calls
``tick = reporter.stage(name, total)`` when a stage starts (``total`` may be None when it is
not known yet; ``tick.total(n)`` sets it later), ``tick(amount)`` as work is done, and
``reporter.note(text)`` for a warning a person should read. The default reports nothing; the
command line draws bars with it, and with ``--debug`` a :class:`LogReporter` also writes each
stage's amount and seconds to a log file.
"""
from __future__ import annotations

import os
import time
import traceback
from pathlib import Path


class Stage:
    """The callable a stage reports through: ``stage(amount)``; ``stage.total(n)``."""

    def __call__(self, amount: float) -> None:
        pass

    def total(self, total: int | None) -> None:
        pass


class Reporter:
    """Progress hooks; the library default does nothing."""

    def stage(self, name: str, total: int | None = None) -> Stage:
        return Stage()

    def note(self, message: str) -> None:
        pass

    def say(self, message: str) -> None:
        """A line of information a person should see (not a warning)."""


class LogReporter(Reporter):
    """Passes every call on to ``inner`` and writes a log: the command, each stage with its
    amount and seconds, every note and, from :meth:`failed`, the traceback."""

    def __init__(self, inner: Reporter, path: str | os.PathLike, command: str) -> None:
        self.inner = inner
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.current: tuple[str, float, list[float]] | None = None
        self.log(f"start: {command} (pid {os.getpid()})")

    def log(self, text: str) -> None:
        self.file.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {text}\n")

    def _finish_stage(self) -> None:
        if self.current is not None:
            name, t0, done = self.current
            self.log(f"stage {name}: {done[0]:,.0f} done in {time.perf_counter() - t0:.1f} s")
            self.current = None

    def stage(self, name: str, total: int | None = None) -> Stage:
        self._finish_stage()
        self.log(f"stage {name}: started" + (f", total {total:,}" if total is not None else ""))
        done = [0.0]
        self.current = (name, time.perf_counter(), done)
        inner = self.inner.stage(name, total)
        log = self.log

        class Logged(Stage):
            def __call__(self, amount: float) -> None:
                done[0] += amount
                inner(amount)

            def total(self, n: int | None) -> None:
                log(f"stage {name}: total {n:,}" if n is not None else f"stage {name}: total unknown")
                inner.total(n)

        return Logged()

    def note(self, message: str) -> None:
        self.log(f"note: {message}")
        self.inner.note(message)

    def say(self, message: str) -> None:
        self.log(message)
        self.inner.say(message)

    def failed(self, exc: BaseException) -> None:
        self._finish_stage()
        self.log("failed:\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip())

    def close(self) -> None:
        if not self.file.closed:
            self._finish_stage()
            self.log("end")
            self.file.close()
