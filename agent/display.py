"""Terminal display of a run: one line per event as it happens, a summary table at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agent.run import RunOutcome


class EventPrinter:
    """An `on_event` callback for `AgentSession` that prints progress lines."""

    def __init__(self, console: Console, max_lora_steps: int, full_text: bool = False) -> None:
        self.console = console
        self.full_text = full_text  # chat: the teacher's whole reply, not a preview
        self.max_steps = max_lora_steps
        self.steps = 0

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        print_line = self.console.print
        if kind == "start":
            print_line(f"[bold]task[/bold] {data['task_id']}")
        elif kind == "teacher":
            calls = ", ".join(data["calls"]) or "no tool call"
            text = (data.get("content") or "").strip()
            if not self.full_text:
                text = text.replace("\n", " ")[:160]
            print_line(f"[cyan]teacher {data['turn']}[/cyan] → {calls}")
            if text:
                print_line(
                    f"  [dim]{escape(text)}[/dim]" if not self.full_text else f"  {escape(text)}"
                )
        elif kind == "tool":
            print_line("  " + self._tool_line(data), markup=False)
        elif kind == "exit":
            print_line(f"[bold]exit[/bold] {data['reason']}: {escape(data['detail'])}")

    def _tool_line(self, data: dict[str, Any]) -> str:
        name, result = data["name"], data.get("data")
        if not data["ok"]:
            return f"{name} failed: {str(data.get('error'))[:200]}"
        if name == "optimize":
            self.steps = result["steps_used_total"]
            losses = result["losses"]
            trend = f"{losses[0]:.3f} → {losses[-1]:.3f}" if losses else "-"
            return (
                f"optimize: loss {trend}  steps {self.steps}/{self.max_steps}"
                f"  preview {result['preview']}"
            )
        if name == "verify":
            verdict = "pass" if result["passed"] else f"fail {result['failed']}"
            return f"verify {result['video']}: loss {result['loss']:.3f}, {verdict}"
        if name.endswith("reward_spec"):
            return f"{name}: spec v{result['version']} with {len(result['terms'])} terms"
        if name == "finish":
            return f"finish: {result['decision']} ({result['reason']})"
        return f"{name}: ok"


def print_summary(
    console: Console,
    outcome: RunOutcome,
    checker: dict[str, Any] | None = None,
    page: Path | None = None,
    before_checker: dict[str, Any] | None = None,
) -> None:
    """Exit reason, steps, seconds, per-query P(Yes), and where the files are (`page`: the
    run's summary.html; `before_checker`: the checker's verdict on the base video)."""
    result = outcome.result
    table = Table(title=f"run {outcome.run_dir.name}", show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # paths wrap, never cut with an ellipsis
    table.add_row("exit", escape(f"{outcome.exit['reason']}: {outcome.exit['detail']}"))
    table.add_row("LoRA steps", str(result["lora_steps"]))
    table.add_row("teacher turns", str(result["turns"]))
    table.add_row("seconds", f"{result['seconds']:.1f}")
    table.add_row("final video", f"{result['source']}")
    scores = result.get("scores")
    if scores:
        for term in scores["terms"]:
            shown = (
                f"P(Yes)={term['p_yes']:.3f}"
                if term.get("p_yes") is not None
                else f"loss={term['loss']:.3f}"
            )
            mark = {True: "pass", False: "fail", None: ""}[term.get("passed")]
            table.add_row(f"  {term['name']}", f"{shown} {mark}")
    for label, verdict in (("checker", checker), ("checker, before", before_checker)):
        if verdict is not None:
            table.add_row(label, f"score {verdict['score']:.3f}, passed={verdict['passed']}")
    for label, rel in result.get("files", {}).items():
        table.add_row(label, str(outcome.run_dir / rel))
    if result.get("video"):
        # The mp4 is 4:2:0 for players; checkers and scripts want the exact frames.
        table.add_row("frames (exact)", str(outcome.run_dir / result["video"]))
    table.add_row("trace", str(outcome.run_dir / "trace.jsonl"))
    if page is not None:
        table.add_row("summary (html)", str(page))
    console.print(table)
