"""Run the agent on one task, resumably: the session that `run`, `chat` and batch eval share.

A run lives in one folder: `trace.jsonl`, `checkpoints.sqlite` (LangGraph's
SQLite checkpointer, thread id = the folder's name), images, videos and the
optimizer's saved state. Opening a session on a folder that holds an
unfinished run continues it where it stopped; on a finished one it just
reports the result.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.types import Command

from agent.config import AgentConfig
from agent.graph import MAX_CALLS_PER_TURN, AgentDeps, build_graph
from agent.state import TaskInput
from agent.teacher import Teacher
from agent.trace import TraceWriter
from tools.context import RunContext, TaskView, ToolSettings

if TYPE_CHECKING:
    from reasoner.video_model import VideoReasoner
    from reasoner.vqa import VQAScorer

CHECKPOINT_FILE = "checkpoints.sqlite"


def run_name(task_id: str) -> str:
    """A folder name for a task id: 'mini/navigate/3' -> 'mini-navigate-3'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", task_id).strip("-.")
    return name or "task"


@dataclass
class RunOutcome:
    """How a run ended, and where its files are."""

    run_dir: Path
    exit: dict[str, str]
    result: dict[str, Any]
    state: dict[str, Any]

    @property
    def video_path(self) -> Path:
        return self.run_dir / self.result["video"]


class AgentSession:
    """One task's run: a compiled graph on the run folder's SQLite checkpointer."""

    def __init__(
        self,
        config: AgentConfig,
        task: TaskView,
        run_dir: Path,
        *,
        reasoner: VideoReasoner,
        scorer: VQAScorer | None,
        teacher: Teacher,
        interactive: bool = False,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.task = task
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        vm = config.reasoner.video_model
        if task.first_frame is None and vm.kind == "wan_ti2v":
            raise ValueError(
                f"task {task.task_id} has no first frame but the video model ({vm.kind}) is "
                "conditioned on one: give the task an image or use a text-to-video model"
            )
        if task.first_frame is not None and task.first_frame.shape[:2] != (vm.height, vm.width):
            raise ValueError(
                f"task {task.task_id} has {task.first_frame.shape[1]}x{task.first_frame.shape[0]}"
                f" frames but the reasoner makes {vm.width}x{vm.height}: render the task at the"
                " reasoner's size or change reasoner.video_model.height/width"
            )
        settings = ToolSettings(
            max_lora_steps=config.budgets.max_lora_steps, **config.tools.model_dump()
        )
        self.ctx = RunContext(
            self.run_dir,
            task,
            reasoner,
            scorer,
            config.tto,
            settings,
            reward_options={
                "include": config.scorer.include,
                "normalize_yes_no": config.scorer.normalize_yes_no,
                "query_pass_p": config.scorer.query_pass_p,
            },
        )
        self.trace = TraceWriter(self.run_dir)
        self._conn = sqlite3.connect(self.run_dir / CHECKPOINT_FILE, check_same_thread=False)
        deps = AgentDeps(
            ctx=self.ctx,
            teacher=teacher,
            trace=self.trace,
            budgets=config.budgets,
            max_images=config.teacher.max_images,
            interactive=interactive,
            on_event=on_event,
        )
        self.graph = build_graph(deps, SqliteSaver(self._conn))
        # Our budgets bound the loop; LangGraph's own step limit only guards against bugs.
        # Per turn: the teacher, each call (and its review in a chat), a human pause.
        limit = config.budgets.max_turns * (2 * MAX_CALLS_PER_TURN + 3) + 20
        self.graph_config = {
            "configurable": {"thread_id": self.run_dir.name},
            "recursion_limit": limit,
        }

    # -- driving -------------------------------------------------------------

    def _input(self) -> TaskInput:
        vm = self.config.reasoner.video_model
        return {
            "task_id": self.task.task_id,
            "instruction": self.task.instruction,
            "first_frame": None if self.task.first_frame is None else "images/first_frame.png",
            "num_frames": vm.num_frames,
            "height": vm.height,
            "width": vm.width,
            "seed": self.task.seed,
        }

    def pending_interrupt(self) -> dict[str, Any] | None:
        """What the graph waits for from the user (chat), if it waits."""
        snapshot = self.graph.get_state(self.graph_config)
        for task in snapshot.tasks:
            for item in task.interrupts:
                return dict(item.value)
        return None

    @property
    def finished(self) -> bool:
        return bool(self.graph.get_state(self.graph_config).values.get("result"))

    def advance(self, resume: Any = None) -> dict[str, Any] | None:
        """Run until the graph ends or asks the user; returns the question, or None at the end.

        With no checkpoint the run starts; with an unfinished one it continues
        (first cutting the trace back to what the checkpoint committed);
        `resume` answers a pending question (chat).
        """
        snapshot = self.graph.get_state(self.graph_config)
        if resume is not None:
            run_input: Any = Command(resume=resume)
        elif not snapshot.values:
            self.trace.truncate(0)
            run_input = {"task": self._input()}
        elif snapshot.values.get("result"):
            self._drop_session_states()
            return None  # finished earlier
        else:
            # Unfinished. `next` may be empty: a step that completed just before a
            # kill has its writes saved (already in `values`) but no checkpoint after
            # it yet; streaming on applies them and continues.
            waiting = self.pending_interrupt()
            if waiting is not None:
                return waiting
            self.trace.truncate(int(snapshot.values.get("trace_lines", 0)))
            run_input = None
        # "sync": each step's checkpoint is on disk before the next step starts, so a
        # kill loses at most the step in flight (the default writes in the background).
        for _ in self.graph.stream(
            run_input, self.graph_config, stream_mode="updates", durability="sync"
        ):
            pass
        if self.finished:
            self._drop_session_states()
        return self.pending_interrupt()

    def _drop_session_states(self) -> None:
        """With `keep_session_states: false`, a finished run's LoRA states are deleted.

        Nothing reads them after the end: a resumed finished run only reports.
        """
        if self.config.keep_session_states:
            return
        # `*.pt.tmp`: a write a kill interrupted, never renamed into place.
        for state_file in (self.run_dir / "session").glob("burst-*.pt*"):
            state_file.unlink(missing_ok=True)

    def outcome(self) -> RunOutcome:
        values = dict(self.graph.get_state(self.graph_config).values)
        if not values.get("result"):
            raise RuntimeError(f"the run in {self.run_dir} has not finished")
        return RunOutcome(self.run_dir, values["exit"], values["result"], values)

    def state(self) -> dict[str, Any]:
        return dict(self.graph.get_state(self.graph_config).values)

    def close(self) -> None:
        """Leave the shared video model as it was found: a fresh, zero-effect LoRA."""
        self.ctx.reasoner.lora.reset()
        self._conn.close()

    def __enter__(self) -> AgentSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_task(
    config: AgentConfig,
    task: TaskView,
    run_dir: Path,
    *,
    reasoner: VideoReasoner,
    scorer: VQAScorer | None,
    teacher: Teacher,
    on_event: Callable[[str, dict[str, Any]], None] | None = None,
) -> RunOutcome:
    """Run (or resume, or just report) the non-interactive agent on one task."""
    with AgentSession(
        config, task, run_dir, reasoner=reasoner, scorer=scorer, teacher=teacher, on_event=on_event
    ) as session:
        question = session.advance()
        if question is not None:  # only chat sessions ask; a batch run never should
            raise RuntimeError(f"non-interactive run stopped to ask the user: {question}")
        return session.outcome()
