"""The append-only results store of a batch: one JSON line per (instance, method).

Why JSONL and append-only: a batch may be killed at any moment (SIGKILL, OOM
killer, a pre-empted node). Appending one complete line per finished record and
never rewriting earlier ones means the file is always a valid prefix of the
batch, so a restart only has to skip the keys already present. The one thing a
kill can leave behind is a torn last line (a write cut short): it is a record
that never finished, so opening the store for writing truncates it away.

Only the batch's driver process writes (workers hand records back to it), and a
lock file keeps a second driver off the same folder, so lines never interleave.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

RESULTS_FILE = "results.jsonl"
LOCK_FILE = ".lock"
SCHEMA_VERSION = 1

FailureKind = Literal[
    "oom",
    "teacher_unavailable",
    "judge_unavailable",
    "bad_video",
    "bad_input",
    "timeout",
    "worker_died",
    "error",
]


class ResultsError(RuntimeError):
    """The results file or its folder cannot be used as asked; the message says why."""


class Failure(BaseModel):
    """Why an (instance, method) produced no score."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FailureKind = Field(description="Coarse class of the failure, for counting in reports.")
    message: str = Field(description="The error text, enough to act on without the logs.")


class EvalRecord(BaseModel):
    """One finished (instance, method) of a batch: scored, or failed with its reason.

    Paths are relative to the batch folder, so a batch folder can be moved or
    copied to another machine and its report still links its videos and traces.
    """

    model_config = ConfigDict(extra="forbid")

    schema_version: int = Field(default=SCHEMA_VERSION, description="Record layout version.")
    suite: str = Field(description="Suite spec the batch ran, e.g. 'mini:test'.")
    instance_id: str = Field(description="Stable id of the instance within its suite.")
    family: str = Field(description="Family (mini-world, VBVR generator) or RULER category.")
    task: str | None = Field(default=None, description="Finer task name (RULER task, VBVR type).")
    method: str = Field(description="Method name as given to --methods.")
    seed: int = Field(description="Seed the method ran with (derived from the batch seed).")
    status: Literal["ok", "failed"] = Field(description="'ok' when a video was produced.")
    score: float | None = Field(
        default=None, description="Checker or judge score in [0, 1]; None when unscored."
    )
    passed: bool | None = Field(
        default=None, description="Checker pass/fail; None when the scorer has no pass notion."
    )
    sub_scores: dict[str, float] = Field(
        default_factory=dict, description="Named sub-criteria or judge metrics."
    )
    score_note: str = Field(default="", description="The scorer's reason text, if any.")
    details: dict[str, Any] = Field(
        default_factory=dict, description="Scorer extras (e.g. the judge's labels per question)."
    )
    cost: dict[str, float] = Field(
        default_factory=dict, description="The method's cost record (seconds, VGM calls, ...)."
    )
    steps: int | None = Field(default=None, description="LoRA optimization steps taken.")
    exit_reason: str | None = Field(default=None, description="Why the method stopped.")
    loss_curve: list[float | None] = Field(
        default_factory=list,
        description="Total loss per optimization step (null for a non-finite step), if any.",
    )
    video: str | None = Field(default=None, description="Output video, relative to the batch.")
    trace: str | None = Field(default=None, description="Trace file, relative to the batch.")
    failure: Failure | None = Field(default=None, description="Set when status is 'failed'.")
    seconds: float = Field(default=0.0, description="Wall seconds of the job (method + scoring).")
    finished_at: str = Field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"),
        description="UTC time the record was written.",
    )

    @field_validator("loss_curve", mode="before")
    @classmethod
    def _non_finite_to_none(cls, curve: list[float | None]) -> list[float | None]:
        # JSON has no NaN/Inf. A step the optimizer skipped for a non-finite loss
        # is kept in place (as null) so the curve's x axis stays the step number.
        return [v if v is None or math.isfinite(v) else None for v in curve]

    @property
    def key(self) -> tuple[str, str]:
        return (self.instance_id, self.method)

    def comparable(self) -> dict[str, Any]:
        """The fields that must be identical between two runs of the same batch.

        Leaves out wall-clock times and timestamps, which are never reproducible.
        """
        data = self.model_dump(exclude={"seconds", "finished_at", "cost"})
        data["cost"] = {k: v for k, v in self.cost.items() if "second" not in k}
        return data


class ResultsStore:
    """The append-only JSONL file of a batch folder.

    Reading is always allowed; writing needs `open_for_append()`, which takes an
    exclusive lock on the folder (released by the kernel if the process dies)
    and cuts a torn last line left by a killed writer.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / RESULTS_FILE
        self._fd: int | None = None
        self._lock_fd: int | None = None

    # ----------------------------------------------------------------- reading
    def iter_records(self) -> Iterator[EvalRecord]:
        """Every complete record in file order (a torn last line is skipped)."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        lines = data.split(b"\n")
        # The piece after the last newline is either empty or a torn write.
        for number, raw in enumerate(lines[:-1], start=1):
            if not raw.strip():
                continue
            try:
                yield EvalRecord.model_validate_json(raw)
            except ValidationError as err:
                raise ResultsError(
                    f"{self.path}: line {number} is not a valid record ({err.errors()[0]['msg']}); "
                    "the file was edited or written by another program. Remove that line or "
                    "use a new --out folder."
                ) from err

    def latest(self) -> dict[tuple[str, str], EvalRecord]:
        """The last record of each (instance, method): a retried failure is replaced."""
        return {record.key: record for record in self.iter_records()}

    def finished_keys(self, retry_failed: bool = False) -> set[tuple[str, str]]:
        """Keys a rerun must skip: every recorded key, or only the successes."""
        return {
            key
            for key, record in self.latest().items()
            if record.status == "ok" or not retry_failed
        }

    # ----------------------------------------------------------------- writing
    def open_for_append(self) -> ResultsStore:
        """Lock the folder, repair a torn tail, and keep the file open for appends."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(lock_fd)
            raise ResultsError(
                f"another batch is writing to {self.folder} right now; wait for it to finish or "
                "choose a different --out folder"
            ) from err
        self._lock_fd = lock_fd
        self._truncate_torn_tail()
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        return self

    def _truncate_torn_tail(self) -> None:
        if not self.path.exists():
            return
        with open(self.path, "rb+") as handle:
            data = handle.read()
            if not data or data.endswith(b"\n"):
                return
            # Everything after the last newline is a record the killed writer never
            # finished; dropping it makes the next append start on a fresh line.
            handle.truncate(data.rfind(b"\n") + 1)

    def append(self, record: EvalRecord, fsync: bool = True) -> None:
        """Write one record as one line; durable on return when `fsync`."""
        if self._fd is None:
            raise ResultsError("ResultsStore.append() needs open_for_append() first")
        line = (record.model_dump_json() + "\n").encode()
        view = memoryview(line)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        if fsync:
            os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> ResultsStore:
        return self.open_for_append()

    def __exit__(self, *exc: object) -> None:
        self.close()


def atomic_write_json(path: Path, data: Any) -> None:
    """Write JSON so that readers see the old file or the new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
