"""`vlm-teacher run`: the agent on one task, start to end, with progress and a summary.

The summary is printed and written as `summary.html` in the run folder (agent/summary.py).
"""

from __future__ import annotations

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
    prepare_run,
    report_outcome,
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
    from rich.console import Console

    from agent.components import build_reasoner, build_scorer, build_teacher
    from agent.display import EventPrinter
    from agent.launch import task_view
    from agent.run import run_task

    console = Console()
    cfg, the_task, folder = prepare_run(
        console,
        config,
        task,
        out=out,
        run_name=run_name,
        fresh=fresh,
        teacher_model=teacher_model,
        teacher_url=teacher_url,
        max_steps=max_steps,
        wall_clock=wall_clock,
        threads=threads,
    )

    teacher = build_teacher(cfg.teacher)
    console.print(f"[dim]building the reasoner and scorer; run folder {folder}[/dim]")
    view, reasoner = task_view(the_task), build_reasoner(cfg)
    outcome = run_task(
        cfg,
        view,
        folder,
        reasoner=reasoner,
        scorer=build_scorer(cfg.scorer),
        teacher=teacher,
        on_event=EventPrinter(console, cfg.budgets.max_lora_steps),
    )
    report_outcome(console, outcome, cfg, the_task, view, reasoner)
