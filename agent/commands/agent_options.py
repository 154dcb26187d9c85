"""Command-line options and set-up shared by `vlm-teacher run` and `vlm-teacher chat`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from agent.config import AgentConfig
    from agent.run import RunOutcome
    from evals.tasks import Task
    from reasoner.video_model import VideoReasoner
    from tools.context import TaskView

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


def prepare_run(
    console: Console,
    config: Path,
    task: str,
    *,
    out: Path | None,
    run_name: str | None,
    fresh: bool,
    teacher_model: str | None,
    teacher_url: str | None,
    max_steps: int | None,
    wall_clock: float | None,
    threads: int | None,
) -> tuple[AgentConfig, Task, Path]:
    """Load the config with its overrides and the task, and pick the run folder.

    Bad input exits with code 2 and the error's message (which says what to change)
    before any model is built.
    """
    import torch

    from agent.components import check_shipped_models
    from agent.launch import load_config, load_task, run_dir
    from reasoner.errors import ConfigError

    try:
        cfg = load_config(
            config,
            teacher_model=teacher_model,
            teacher_url=teacher_url,
            max_steps=max_steps,
            wall_clock=wall_clock,
            out=out,
        )
        the_task = load_task(task, cfg)
        check_shipped_models(cfg)
    except (ConfigError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(code=2) from None
    folder = run_dir(cfg, the_task.task_id, run_name)
    if fresh and folder.exists():
        shutil.rmtree(folder)
    if threads is not None:
        torch.set_num_threads(threads)
    return cfg, the_task, folder


def report_outcome(
    console: Console,
    outcome: RunOutcome,
    config: AgentConfig,
    task: Task,
    view: TaskView,
    reasoner: VideoReasoner,
) -> None:
    """After a run or chat: the checker's verdict, summary.html, the terminal summary."""
    import numpy as np

    from agent.display import print_summary
    from agent.summary import before_frames, checker_verdict, write_summary

    checker = checker_verdict(task, np.load(outcome.video_path, allow_pickle=False))
    # Samples the base video once; write_summary reads it back from the run folder.
    before = checker_verdict(task, before_frames(outcome, config, view, reasoner))
    page = write_summary(outcome, config, view, reasoner, checker, before)
    print_summary(console, outcome, checker, page, before)
