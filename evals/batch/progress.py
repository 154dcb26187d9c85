"""A progress bar for a batch: records done, failures, rate and time left."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Records per minute (or seconds per record when slower than one a minute)."""

    def render(self, task: Task) -> Text:
        speed = task.speed
        if not speed:
            return Text("-- rec/min", style="progress.data.speed")
        per_minute = speed * 60
        if per_minute >= 1:
            return Text(f"{per_minute:.1f} rec/min", style="progress.data.speed")
        return Text(f"{1 / speed:.0f} s/rec", style="progress.data.speed")


class BatchProgress:
    """`advance(ok)` once per record; shows done/total, failures, rate, elapsed and ETA."""

    def __init__(
        self, total: int, description: str, enabled: bool = True, console: Console | None = None
    ) -> None:
        self.failed = 0
        self._description = description
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            RateColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
            # A batch runs for hours: average the rate over many records, not a few.
            speed_estimate_period=600.0,
        )
        self._task = self._progress.add_task(description, total=total, failed=0)

    def advance(self, ok: bool) -> None:
        if not ok:
            self.failed += 1
        self._progress.update(self._task, advance=1, failed=self.failed)

    def __enter__(self) -> BatchProgress:
        self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.stop()
