"""Command-line options shared by `vlm-teacher run` and `vlm-teacher chat`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ConfigOpt = Annotated[
    Path,
    typer.Option("--config", "-c", help="Agent YAML, e.g. configs/agent/embedded.yaml."),
]
TaskOpt = Annotated[
    str,
    typer.Option("--task", "-t", help="A mini-world id (mini/maze/3) or a VBVR question folder."),
]
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="Folder for run folders (default: config out_dir).")
]
RunNameOpt = Annotated[
    str | None, typer.Option("--run-name", help="Run folder name (default: from the task id).")
]
FreshOpt = Annotated[
    bool,
    typer.Option("--fresh", help="Delete an earlier run of this task first instead of resuming."),
]
TeacherModelOpt = Annotated[
    str | None, typer.Option("--teacher-model", help="Override teacher.model.")
]
TeacherUrlOpt = Annotated[
    str | None,
    typer.Option("--teacher-url", help="Override teacher.base_url (sets teacher.kind: openai)."),
]
MaxStepsOpt = Annotated[
    int | None, typer.Option("--max-steps", help="Override budgets.max_lora_steps.")
]
WallClockOpt = Annotated[
    float | None, typer.Option("--wall-clock", help="Override budgets.wall_clock_s (seconds).")
]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", help="torch CPU threads (tiny models: 1 is fastest).")
]
