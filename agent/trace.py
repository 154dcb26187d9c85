"""The readable trace of a run: one JSON object per line, images as files beside it.

Events (`event` field): `start`, `teacher` (a turn: text, tool calls, tokens),
`teacher_error`, `tool` (name, arguments, result or error, images, seconds),
`user` (a chat message or decision), `nudge`, `exit`, `result`.

The graph state counts the lines it has committed. A resumed run first cuts the
file back to that count, so lines written by a step that was killed before its
checkpoint do not appear twice when the step runs again.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

TRACE_FILE = "trace.jsonl"


def finite_json(value: Any) -> Any:
    """JSON has no NaN/Inf: write them as null so any reader can load the trace."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(v) for v in value]
    return value


class TraceWriter:
    """Appends events to `<run_dir>/trace.jsonl`, one flushed line each."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / TRACE_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.touch(exist_ok=True)
        self.lines = sum(1 for _ in self.path.open("rb"))

    def truncate(self, lines: int) -> None:
        """Keep only the first `lines` lines (those a checkpoint has committed)."""
        with self.path.open("rb") as f:
            kept = [line for _, line in zip(range(lines), f, strict=False)]
        # A line cut short by a kill has no newline: it was never committed.
        kept = [line for line in kept if line.endswith(b"\n")]
        self.path.write_bytes(b"".join(kept))
        self.lines = len(kept)

    def write(self, event: str, **fields: Any) -> int:
        """Append one event; returns the number of lines now in the trace."""
        record = {"event": event, "time": round(time.time(), 3), **fields}
        line = json.dumps(finite_json(record), ensure_ascii=False, allow_nan=False)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
        self.lines += 1
        return self.lines


def read_trace(run_dir: Path) -> list[dict[str, Any]]:
    """All complete events of a run's trace, in order."""
    path = run_dir / TRACE_FILE
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            events.append(json.loads(line))
    return events
