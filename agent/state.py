"""The agent's state: everything a run has done, as plain JSON-ready data.

The state is what the SQLite checkpointer stores after every node, so it holds
only data (no tensors, no models): live objects (the reasoner, the optimizer
session, decoded frames) sit in `tools.context.RunContext` and are rebuilt from
the run folder and this state when a run resumes.

Images never travel inside the state: a message refers to an image by its path
in the run folder (`{"type": "image_file", "path": ...}`) and the graph turns it
into a data URL when it calls the teacher.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

ExitReason = Literal[
    "accepted",  # the teacher called finish(decision="accept")
    "gave_up",  # the teacher called finish(decision="give_up")
    "budget_turns",  # the teacher used all its turns without finishing
    "budget_steps",  # the teacher asked for LoRA steps after all were spent
    "budget_wall_clock",  # the run's wall-clock budget ran out
    "teacher_failure",  # the endpoint failed after bounded retries
    "tool_errors",  # too many invalid tool calls in a row
    "no_tool_calls",  # the teacher kept answering without calling a tool
    "user_stop",  # the user stopped the run (chat)
]
EXIT_REASONS: tuple[str, ...] = ExitReason.__args__  # type: ignore[attr-defined]


class TaskInput(TypedDict):
    """The narrow input: only what a teacher may see of a task (never its solution)."""

    task_id: str
    instruction: str
    first_frame: str | None  # run-relative path of the first frame (PNG); None: text only
    num_frames: int
    height: int
    width: int
    seed: int


class AgentState(TypedDict, total=False):
    """The whole state of one run; every field is documented where it is set.

    Conversation
      messages        chat history in OpenAI form (images as run-relative files)
      pending         tool calls of the current teacher turn not yet answered
      pending_images  image parts to show after the current turn's tool results
      review          the user's verdict on the next spec call (chat only)
    History
      specs           every spec that became current: version, spec, who wrote it
      bursts          optimization bursts: steps requested, records, preview id
      verifications   verify results on full-quality videos
      videos          videos of this run by id: kind, file, iterate, spec version
      session_file    optimizer state saved after the last burst (for resume)
    Budgets used
      turns, lora_steps, elapsed_s, tool_errors (consecutive), nudges (consecutive)
      usage           teacher calls and tokens
    Outcome
      finish          the teacher's finish decision
      exit            {"reason": ExitReason, "detail": str}
      result          final video files and summary numbers
    trace_lines       lines of trace.jsonl this state has committed
    """

    task: TaskInput
    messages: list[dict[str, Any]]
    pending: list[dict[str, Any]]
    pending_images: list[dict[str, Any]]
    review: dict[str, Any] | None
    specs: list[dict[str, Any]]
    bursts: list[dict[str, Any]]
    verifications: list[dict[str, Any]]
    videos: dict[str, dict[str, Any]]
    session_file: str | None
    turns: int
    lora_steps: int
    elapsed_s: float
    tool_errors: int
    nudges: int
    usage: dict[str, int]
    finish: dict[str, Any] | None
    exit: dict[str, str] | None
    result: dict[str, Any] | None
    trace_lines: int
