"""`vlm-teacher chat`: talk with the agent about one task (see agent/chat.py)."""

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


def chat(
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
    """Chat with the teacher about one task: review its spec, ask, ask for steps, stop."""
    from rich.console import Console

    from agent.chat import chat_loop
    from agent.components import build_reasoner, build_scorer, build_teacher
    from agent.display import EventPrinter
    from agent.launch import task_view
    from agent.run import AgentSession

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
    console.print(
        f"[bold]{the_task.task_id}[/bold]: {the_task.instruction}\n"
        "[dim]Enter: let the teacher go on · /spec: show the spec · /stop: end the run · "
        "/quit: leave (resume later)[/dim]"
    )
    view, reasoner = task_view(the_task), build_reasoner(cfg)
    with AgentSession(
        cfg,
        view,
        folder,
        reasoner=reasoner,
        scorer=build_scorer(cfg.scorer),
        teacher=build_teacher(cfg.teacher),
        interactive=True,
        on_event=EventPrinter(console, cfg.budgets.max_lora_steps, full_text=True),
    ) as session:
        finished = chat_loop(session, ask=console.input, show=console.print)
        outcome = session.outcome() if finished else None
    if outcome is None:
        console.print(f"paused; run the same command again to resume ({folder})")
        return
    # After the session: it has put the video model back to a fresh LoRA.
    report_outcome(console, outcome, cfg, the_task, view, reasoner)
