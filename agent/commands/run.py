"""`vlm-teacher run`: the agent on one task, start to end, with progress and a summary."""

from __future__ import annotations

import shutil

import typer

from agent.commands.agent_options import (
    ConfigOpt,
    FreshOpt,
    MaxStepsOpt,
    OutOpt,
    RunNameOpt,
    TaskOpt,
    TeacherModelOpt,
    TeacherUrlOpt,
    ThreadsOpt,
    WallClockOpt,
)


def run(
    config: ConfigOpt,
    task: TaskOpt,
    out: OutOpt = None,
    run_name: RunNameOpt = None,
    fresh: FreshOpt = False,
    teacher_model: TeacherModelOpt = None,
    teacher_url: TeacherUrlOpt = None,
    max_steps: MaxStepsOpt = None,
    wall_clock: WallClockOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Run the teacher agent on one task (resumes an unfinished run in the same folder)."""
    import torch
    from rich.console import Console

    from agent.components import build_reasoner, build_scorer, build_teacher
    from agent.display import EventPrinter, print_summary
    from agent.launch import load_config, load_task, run_dir, task_view
    from agent.run import run_task
    from evals.tasks import check as check_task
    from evals.tasks import has_checker
    from reasoner.errors import ConfigError

    console = Console()
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
    except (ConfigError, ValueError) as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(code=2) from None
    folder = run_dir(cfg, the_task.task_id, run_name)
    if fresh and folder.exists():
        shutil.rmtree(folder)
    if threads is not None:
        torch.set_num_threads(threads)

    teacher = build_teacher(cfg.teacher)
    console.print(f"[dim]building the reasoner and scorer; run folder {folder}[/dim]")
    outcome = run_task(
        cfg,
        task_view(the_task),
        folder,
        reasoner=build_reasoner(cfg),
        scorer=build_scorer(cfg.scorer),
        teacher=teacher,
        on_event=EventPrinter(console, cfg.budgets.max_lora_steps),
    )
    checker = None
    if has_checker(the_task):
        import numpy as np

        checker = check_task(the_task, np.load(outcome.video_path)).to_dict()
    print_summary(console, outcome, checker)
