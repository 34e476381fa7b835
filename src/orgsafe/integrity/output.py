"""What a person (or a pipeline) sees: lines, progress, SQL, the final JSON.

Three modes: a rich progress bar when standard error is a terminal, plain
progress lines when it is not, and with `--json` nothing on standard output
but one JSON object at the end.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

PLAIN_EVERY_SECONDS = 2.0


class Ticker:
    """Counts work done inside a progress context."""

    def __init__(self, report: Reporter, label: str, total: int | None) -> None:
        self.report = report
        self.label = label
        self.total = total
        self.done = 0
        self._last = time.monotonic()
        self._bar: Progress | None = None
        self._task: Any = None

    def advance(self, amount: int) -> None:
        self.done += amount
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
            return
        now = time.monotonic()
        if self.report.plain_progress and now - self._last >= PLAIN_EVERY_SECONDS:
            self._last = now
            self.report.err(f"{self.label}: {self._count()}")

    def _count(self) -> str:
        return f"{self.done}/{self.total}" if self.total else str(self.done)


class Reporter:
    def __init__(
        self, json_mode: bool, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.errs = err or sys.stderr
        self.emitted = False

    @property
    def tty(self) -> bool:
        return not self.json_mode and self.errs.isatty()

    @property
    def plain_progress(self) -> bool:
        return not self.json_mode and not self.tty

    def line(self, text: str) -> None:
        if not self.json_mode:
            print(text, file=self.out, flush=True)

    def err(self, text: str) -> None:
        print(text, file=self.errs, flush=True)

    def warn(self, text: str) -> None:
        self.err(f"warning: {text}")

    def sql(self, statement: str) -> None:
        self.line(statement.rstrip().rstrip(";") + ";")

    @contextmanager
    def progress(self, label: str, total: int | None) -> Iterator[Ticker]:
        ticker = Ticker(self, label, total)
        if not self.tty:
            yield ticker
            if self.plain_progress:
                self.err(f"{label}: {ticker._count()} done")
            return
        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=Console(file=self.errs)) as bar:
            ticker._bar = bar
            ticker._task = bar.add_task(label, total=total)
            yield ticker

    def table(self, title: str, columns: list[str], rows: list[list[str]]) -> None:
        if self.json_mode:
            return
        table = Table(title=title)
        for name in columns:
            table.add_column(name)
        for row in rows:
            table.add_row(*row)
        Console(file=self.out, width=max(100, _width(self.out))).print(table)

    def result(self, payload: dict[str, Any]) -> None:
        if self.json_mode:
            self.emitted = True
            print(json.dumps(payload, default=str, sort_keys=True), file=self.out)


def _width(stream: TextIO) -> int:
    return 160 if not stream.isatty() else Console(file=stream).width
