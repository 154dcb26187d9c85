"""What the mini models' trainers share so that a run can be stopped and resumed.

- `save_atomic`: torch.save through a temporary file, so a run killed mid-write (a
  job's time limit, a full disk) leaves the previous file, or none, never a
  truncated one that the resume would then fail to load.
- `TimeLimit`: a job's time limit (a batch queue's, a lent GPU's). A trainer asks
  `reached()` after each checkpoint and stops there; the same command again resumes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch


def save_atomic(obj: object, path: Path) -> None:
    """`torch.save(obj, path)`, with `path` replaced only once the write is complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


class TimeLimit:
    """Seconds since `start()` against a limit; None never runs out."""

    def __init__(self, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        if seconds is not None and seconds < 0:
            raise ValueError(f"a time limit must be 0 or more seconds, got {seconds}")
        self.seconds = seconds
        self.clock = clock
        self._started: float | None = None

    def start(self) -> None:
        self._started = self.clock()

    def reached(self) -> bool:
        if self.seconds is None or self._started is None:
            return False
        return self.clock() - self._started >= self.seconds

    def stop_message(self, where: str, work_dir: Path) -> str:
        """The log line of a stop: where it stopped and how to go on."""
        return (
            f"time limit ({self.seconds:.0f} s) reached at {where}; the checkpoint in "
            f"{work_dir} holds it: run the same command again to go on"
        )
