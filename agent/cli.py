"""The `vlm-teacher` command line.

Each subcommand group lives in `agent/commands/<name>.py` and imports its heavy
dependencies (torch, diffusers, transformers) inside the command functions, so
`vlm-teacher --help` stays fast.
"""

from __future__ import annotations

from importlib.metadata import version

import typer

from agent.commands import bench as bench_command
from agent.commands import chat as chat_command
from agent.commands import demo as demo_command
from agent.commands import eval as eval_command
from agent.commands import experiment as experiment_command
from agent.commands import report as report_command
from agent.commands import run as run_command
from agent.commands import tasks as tasks_command
from agent.commands import train as train_command

app = typer.Typer(
    name="vlm-teacher",
    help="Video reasoning by test-time optimization, with a VLM as the teacher.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def main() -> None:
    """Video reasoning by test-time optimization, with a VLM as the teacher."""


# Command groups: one line each, wired here so the whole CLI is visible at a glance.
app.command("report")(report_command.report)
app.command("eval")(eval_command.eval_command)
app.command("experiment")(experiment_command.experiment_command)
app.add_typer(tasks_command.app, name="tasks")
app.add_typer(train_command.app, name="train")
app.add_typer(bench_command.app, name="bench")
app.command("demo")(demo_command.demo)
app.command("run")(run_command.run)
app.command("chat")(chat_command.chat)


@app.command("version")
def show_version() -> None:
    """Print the installed vlm-teacher version."""
    typer.echo(version("vlm-teacher"))


if __name__ == "__main__":
    app()
