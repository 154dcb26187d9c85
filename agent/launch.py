"""What the `run` and `chat` commands share: config with overrides, the task, the run folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.config import AgentConfig, load_agent_config
from agent.run import run_name
from reasoner.errors import ConfigError
from tools.context import TaskView

if TYPE_CHECKING:
    from evals.tasks import Task


def load_config(
    config: Path,
    *,
    teacher_model: str | None = None,
    teacher_url: str | None = None,
    max_steps: int | None = None,
    wall_clock: float | None = None,
    out: Path | None = None,
) -> AgentConfig:
    """The YAML with the command line's overrides on top."""
    overrides: dict[str, Any] = {
        "teacher.model": teacher_model,
        "teacher.base_url": teacher_url,
        "budgets.max_lora_steps": max_steps,
        "budgets.wall_clock_s": wall_clock,
        "out_dir": str(out) if out is not None else None,
    }
    if teacher_url is not None:
        overrides["teacher.kind"] = "openai"
    return load_agent_config(config, overrides)


def load_task(ref: str, config: AgentConfig) -> Task:
    """A mini-world id or a VBVR question folder, rendered at the reasoner's frame size."""
    from evals.vbvr import task_from_id_or_folder

    vm = config.reasoner.video_model
    if vm.height != vm.width and ref.startswith("mini/"):
        raise ConfigError(
            f"mini-world tasks are square but the reasoner makes {vm.width}x{vm.height} videos; "
            "use a square reasoner.video_model size"
        )
    task = task_from_id_or_folder(ref, size=vm.height, num_frames=vm.num_frames)
    if task.num_frames != vm.num_frames or task.size != vm.height:
        raise ConfigError(
            f"task {task.task_id} is {task.size}px x {task.num_frames} frames but the reasoner "
            f"makes {vm.height}px x {vm.num_frames}: make reasoner.video_model match the task"
        )
    return task


def task_view(task: Task) -> TaskView:
    """Only what the teacher may see: never the solution or the hidden rules."""
    return TaskView(
        task_id=task.task_id,
        instruction=task.instruction,
        first_frame=task.first_frame,
        num_frames=task.num_frames,
        seed=task.seed,
    )


def run_dir(config: AgentConfig, task_id: str, name: str | None = None) -> Path:
    return Path(config.out_dir) / (name or run_name(task_id))
