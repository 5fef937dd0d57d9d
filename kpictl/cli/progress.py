"""Progress bars on stderr, only when stderr is a terminal (rich)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kpictl.services.jobs.progress import Progress


class RichProgress(Progress):
    def __init__(self, bar: Any):
        self.bar = bar
        self.task: Any = None

    def start(self, description: str, total: int | None) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(description, total=total)

    def advance(self, amount: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, amount)


@contextmanager
def progress_bar(quiet: bool = False) -> Iterator[Progress]:
    """A rich progress bar when both stdout and stderr are terminals (docs/spec/cli.md: none when stdout
    is not); a silent one otherwise (cron, pipes, redirected output, -q)."""
    if quiet or not (sys.stderr.isatty() and sys.stdout.isatty()):
        yield Progress()
        return
    import os

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    console = Console(stderr=True, no_color="NO_COLOR" in os.environ)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Bar(*columns, console=console, transient=True) as bar:
        yield RichProgress(bar)
