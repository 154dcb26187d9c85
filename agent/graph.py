"""The teacher agent as a LangGraph state machine.

    START ─▶ start ─▶ teacher ─┬─▶ act ─┬─▶ act            (more tool calls this turn)
                       ▲       │        ├─▶ review ─▶ act  (chat: the user vets a spec)
                       │       │        ├─▶ human          (chat: after a burst)
                       │       │        ├─▶ teacher        (turn done)
                       │       │        └─▶ finalize       (an exit was named)
                       │       ├─▶ review / human (chat)
                       │       ├─▶ teacher (nudged: the reply called no tool)
                       │       └─▶ finalize
                       └────────────── human ─▶ teacher / finalize
                                                finalize ─▶ END

`act` runs ONE tool call per step, so each call is checkpointed on its own and a
killed run redoes at most the call it was in (from the state that call started
from). Every way out of the loop names its exit (`agent.state.ExitReason`), and
`finalize` always leaves a video: the accepted one, else the best iterate, else
the base model's sample.
"""

from __future__ import annotations

import base64
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from langgraph.graph import END, START, StateGraph
from langgraph.types import interrupt

from agent.config import BudgetConfig
from agent.state import AgentState, ExitReason, TaskInput
from agent.teacher import Teacher, TeacherError
from agent.trace import TraceWriter, finite_json
from evals.video_io import write_video
from prompts.loader import load_prompts, render
from reasoner.frames import sample_frames
from tools.base import ToolError, ToolResult
from tools.context import RunContext, to_uint8
from tools.optimize import StepBudgetSpent
from tools.paths import resolve_in
from tools.registry import MAX_ARGUMENT_CHARS, TOOLS, call_tool, tool_schemas

SPEC_TOOLS = ("write_reward_spec", "revise_reward_spec")
PAUSE_AFTER = ("optimize", "verify")  # chat: the user gets a word after these
MAX_TRACE_TEXT = 4000
VIDEO_FPS = 8
MAX_CALLS_PER_TURN = 8
"""Tool calls beyond this in one turn are dropped (bounds the steps of a run)."""


def write_playable(run_dir: Path, stem: str, frames: np.ndarray) -> dict[str, str]:
    """`<stem>.mp4` and `<stem>.gif` of a uint8 (F, H, W, 3) video, for people to watch.

    Returns their run-relative names. The mp4 is 4:2:0 (plays everywhere) when the
    frame sides are even, else lossless 4:4:4 (the only H.264 form odd sides allow).
    """
    even = frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0
    names = {"mp4": f"{stem}.mp4", "gif": f"{stem}.gif"}
    write_video(resolve_in(run_dir, names["mp4"]), frames, fps=VIDEO_FPS, lossless=not even)
    write_video(resolve_in(run_dir, names["gif"]), frames, fps=VIDEO_FPS)
    return names


@dataclass
class AgentDeps:
    """What the nodes work with besides the state (live objects, not checkpointed)."""

    ctx: RunContext
    teacher: Teacher
    trace: TraceWriter
    budgets: BudgetConfig
    max_images: int = 12
    interactive: bool = False
    on_event: Callable[[str, dict[str, Any]], None] | None = None


def _exit(reason: ExitReason, detail: str) -> dict[str, str]:
    return {"reason": reason, "detail": detail}


def _clip(text: str, limit: int = MAX_TRACE_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more]"


def _arguments_for_trace(raw: str) -> Any:
    """Parsed arguments when they are JSON (readable trace), else the raw text, clipped."""
    if len(raw) > MAX_TRACE_TEXT:
        return _clip(raw)
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, RecursionError):
        return _clip(raw)


def materialize(
    messages: list[dict[str, Any]], ctx: RunContext, max_images: int
) -> list[dict[str, Any]]:
    """The conversation as an OpenAI request: image files become PNG data URLs.

    The task's own images (first user message) are always sent; of the others
    only the newest `max_images` are, older ones become a one-line note, so a
    long run stays inside the teacher's context window.
    """
    task_message = next(i for i, m in enumerate(messages) if m.get("role") == "user")

    def images(m: dict[str, Any]) -> int:
        content = m.get("content")
        if not isinstance(content, list):
            return 0
        return sum(p.get("type") == "image_file" for p in content)

    later = sum(images(m) for i, m in enumerate(messages) if i != task_message)
    skip = max(0, later - max_images)
    out = []
    for i, message in enumerate(messages):
        content = message.get("content")
        if not isinstance(content, list):
            out.append(message)
            continue
        parts = []
        for part in content:
            if part.get("type") != "image_file":
                parts.append(part)
            elif skip > 0 and i != task_message:
                skip -= 1
                parts.append({"type": "text", "text": "[earlier image omitted]"})
            else:
                data = base64.b64encode(ctx.resolve(part["path"]).read_bytes()).decode()
                parts.append(
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{data}"}}
                )
        out.append({**message, "content": parts})
    return out


def build_graph(deps: AgentDeps, checkpointer: Any = None) -> Any:
    """Wire the nodes; `checkpointer` (e.g. SqliteSaver) makes runs resumable."""
    ctx, budgets, trace = deps.ctx, deps.budgets, deps.trace
    schemas = tool_schemas()

    def emit(kind: str, **data: Any) -> None:
        if deps.on_event is not None:
            deps.on_event(kind, data)

    def spent(state: AgentState, t0: float) -> float:
        return float(state.get("elapsed_s", 0.0)) + (time.monotonic() - t0)

    # -- nodes -----------------------------------------------------------------

    def start(state: AgentState) -> dict[str, Any]:
        """Open the conversation: system prompt, instruction and first frame."""
        t0 = time.monotonic()
        task: TaskInput = state["task"]
        first = ctx.task.first_frame
        content: list[dict[str, Any]] = []
        videos, first_path = {}, None
        if first is not None:
            first_path = ctx.save_image("first_frame", first)
            videos["first_frame"] = ctx.add_video("first_frame", first[None], kind="input")
            content.append({"type": "image_file", "path": first_path})
        prompt_vars = {
            "tau": ctx.tto_config.tau,
            "max_turns": budgets.max_turns,
            "max_lora_steps": budgets.max_lora_steps,
            "wall_clock_s": round(budgets.wall_clock_s),
            "examples": load_prompts("teacher")["examples"],
        }
        system = render("teacher", "system", **prompt_vars)
        user_text = render(
            "teacher",
            "task",
            task_id=task["task_id"],
            instruction=task["instruction"],
            num_frames=task["num_frames"],
            width=task["width"],
            height=task["height"],
            has_frame=first is not None,
        )
        messages = [
            {"role": "system", "content": system},
            {
                "role": "user",
                "content": [{"type": "text", "text": user_text}, *content],
            },
        ]
        trace.write(
            "start",
            task_id=task["task_id"],
            instruction=task["instruction"],
            teacher=deps.teacher.name,
            first_frame=first_path,
            budgets=budgets.model_dump(),
        )
        emit("start", task_id=task["task_id"])
        return {
            "messages": messages,
            "pending": [],
            "pending_images": [],
            "review": None,
            "specs": [],
            "bursts": [],
            "verifications": [],
            "videos": videos,
            "session_file": None,
            "turns": 0,
            "lora_steps": 0,
            "elapsed_s": time.monotonic() - t0,
            "tool_errors": 0,
            "nudges": 0,
            "usage": {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0},
            "finish": None,
            "exit": None,
            "result": None,
            "trace_lines": trace.lines,
        }

    def teacher(state: AgentState) -> dict[str, Any]:
        """One teacher turn: budgets first, then the call, then its tool calls queued."""
        t0 = time.monotonic()
        elapsed = float(state["elapsed_s"])
        turns = int(state["turns"])
        if elapsed >= budgets.wall_clock_s:
            return _finish_with(state, "budget_wall_clock", f"{elapsed:.1f} s used", t0)
        if turns >= budgets.max_turns:
            return _finish_with(state, "budget_turns", f"{turns} teacher turns used", t0)

        request = materialize(state["messages"], ctx, deps.max_images)
        try:
            reply = deps.teacher.reply(request, schemas, budget_s=budgets.wall_clock_s - elapsed)
        except TeacherError as err:
            reason: ExitReason = "budget_wall_clock" if err.kind == "budget" else "teacher_failure"
            trace.write("teacher_error", turn=turns + 1, kind=err.kind, error=str(err))
            return _finish_with(state, reason, f"{err.kind}: {err}", t0)

        turn = turns + 1
        calls, seen = [], set()
        dropped = len(reply.tool_calls) - MAX_CALLS_PER_TURN
        for i, call in enumerate(reply.tool_calls[:MAX_CALLS_PER_TURN]):
            # Ids must be unique for the tool results to pair up; some servers repeat them.
            call_id = call.id if call.id and call.id not in seen else f"call_{turn}_{i}"
            seen.add(call_id)
            entry = {"id": call_id, "name": call.name, "arguments": call.arguments}
            if len(call.arguments) > MAX_ARGUMENT_CHARS:
                # Refused unread; only a stub stays in the history sent back each turn.
                entry["arguments"] = call.arguments[:200]
                entry["oversize"] = len(call.arguments)
            calls.append(entry)
        usage = dict(state["usage"])
        usage["calls"] += 1
        usage["prompt_tokens"] += reply.prompt_tokens
        usage["completion_tokens"] += reply.completion_tokens
        trace.write(
            "teacher",
            turn=turn,
            content=_clip(reply.content),
            tool_calls=[
                {
                    "id": c["id"],
                    "name": c["name"],
                    "arguments": _arguments_for_trace(c["arguments"]),
                }
                for c in calls
            ],
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            attempts=reply.attempts,
            dropped_calls=max(0, dropped),
            seconds=round(time.monotonic() - t0, 3),
        )
        emit("teacher", turn=turn, content=reply.content, calls=[c["name"] for c in calls])

        messages = list(state["messages"])
        if reply.content or calls:
            assistant: dict[str, Any] = {"role": "assistant", "content": reply.content or None}
            if calls:
                assistant["tool_calls"] = [
                    {
                        "id": c["id"],
                        "type": "function",
                        "function": {"name": c["name"], "arguments": c["arguments"]},
                    }
                    for c in calls
                ]
            messages.append(assistant)
        update: dict[str, Any] = {
            "messages": messages,
            "pending": calls,
            "turns": turn,
            "usage": usage,
        }
        if not calls and not deps.interactive:
            nudges = int(state["nudges"]) + 1
            update["nudges"] = nudges
            if nudges > budgets.max_nudges:
                update["exit"] = _exit("no_tool_calls", f"{nudges} replies in a row called no tool")
            else:
                nudge = render("teacher", "nudge", tool_names=list(TOOLS))
                messages.append({"role": "user", "content": nudge})
                trace.write("nudge", turn=turn, text=nudge)
        elif calls:
            update["nudges"] = 0
        update["elapsed_s"] = spent(state, t0)
        update["trace_lines"] = trace.lines
        return update

    def act(state: AgentState) -> dict[str, Any]:
        """Run the first pending tool call and record its result."""
        t0 = time.monotonic()
        call, rest = state["pending"][0], state["pending"][1:]
        ctx.sync(state)
        ctx.deadline = t0 + (budgets.wall_clock_s - float(state["elapsed_s"]))
        update: dict[str, Any] = {"pending": rest}
        result: ToolResult | None = None
        error: str | None = None
        try:
            if call.get("oversize"):
                raise ToolError(
                    f"the arguments are {call['oversize']} characters long; the limit is "
                    f"{MAX_ARGUMENT_CHARS}: send a shorter call"
                )
            result = call_tool(ctx, call["name"], call["arguments"])
        except ToolError as err:
            error = str(err)
        except StepBudgetSpent as err:
            error = f"{err}; the run ends here"
            update["exit"] = _exit("budget_steps", str(err))

        messages = list(state["messages"])
        images = list(state.get("pending_images") or [])
        # A skipped (non-finite) step has a NaN loss: the teacher reads it as null.
        content = json.dumps(finite_json(result.data if result else {"error": error}))
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": content})
        if result is not None:
            update["tool_errors"] = 0
            for image in result.images:
                images.append({"type": "text", "text": image.caption})
                images.append({"type": "image_file", "path": image.path})
            _apply_effects(state, result, update)
        elif "exit" not in update:
            errors = int(state["tool_errors"]) + 1
            update["tool_errors"] = errors
            if errors >= budgets.max_tool_errors:
                update["exit"] = _exit(
                    "tool_errors", f"{errors} invalid tool calls in a row; last: {error}"
                )
        if not rest and images:
            # Tool results must directly follow the call; images come after all of them.
            count = sum(p["type"] == "image_file" for p in images)
            note = render("teacher", "images_note", count=count)
            messages.append({"role": "user", "content": [{"type": "text", "text": note}, *images]})
            images = []
        update["messages"] = messages
        update["pending_images"] = images
        update["review"] = None

        elapsed = spent(state, t0)
        update["elapsed_s"] = elapsed
        if "exit" not in update and elapsed >= budgets.wall_clock_s:
            update["exit"] = _exit("budget_wall_clock", f"{elapsed:.1f} s used")
        trace.write(
            "tool",
            turn=state["turns"],
            call_id=call["id"],
            name=call["name"],
            arguments=_arguments_for_trace(call["arguments"]),
            ok=result is not None,
            result=result.data if result else None,
            error=error,
            images=[i.path for i in result.images] if result else [],
            seconds=round(time.monotonic() - t0, 3),
        )
        emit(
            "tool",
            name=call["name"],
            ok=result is not None,
            data=result.data if result else None,
            error=error,
        )
        update["trace_lines"] = trace.lines
        return update

    def _apply_effects(state: AgentState, result: ToolResult, update: dict[str, Any]) -> None:
        """Fold a tool's effects into the state (the state is the record of the run)."""
        if result.spec is not None:
            by = "user" if (state.get("review") or {}).get("verdict") == "edit" else "teacher"
            entry = {
                "version": result.spec["version"],
                "spec": result.spec,
                "by": by,
                "turn": state["turns"],
            }
            update["specs"] = [*state["specs"], entry]
        if result.burst is not None:
            update["bursts"] = [*state["bursts"], result.burst]
        if result.verification is not None:
            update["verifications"] = [*state["verifications"], result.verification]
        if result.videos:
            update["videos"] = {**state["videos"], **result.videos}
        if result.steps:
            update["lora_steps"] = int(state["lora_steps"]) + result.steps
        if result.session_file is not None:
            update["session_file"] = result.session_file
        if result.finish is not None:
            update["finish"] = result.finish.model_dump()
            reason: ExitReason = "accepted" if result.finish.decision == "accept" else "gave_up"
            update["exit"] = _exit(reason, result.finish.reason)

    def review(state: AgentState) -> dict[str, Any]:
        """Chat: the user approves, edits or rejects a spec before it is used."""
        t0 = time.monotonic()
        call = state["pending"][0]
        answer = interrupt(
            {
                "kind": "review_spec",
                "tool": call["name"],
                "arguments": _arguments_for_trace(call["arguments"]),
            }
        )
        verdict = str(answer.get("verdict", "approve"))
        trace.write("user", kind="review", verdict=verdict, text=answer.get("text"))
        if verdict == "stop":
            return {
                "exit": _exit("user_stop", "stopped by the user at spec review"),
                "elapsed_s": spent(state, t0),
                "trace_lines": trace.lines,
            }
        if verdict == "reject":
            comment = str(answer.get("text") or "no reason given")
            messages = [
                *state["messages"],
                {
                    "role": "tool",
                    "tool_call_id": call["id"],
                    "content": json.dumps({"error": f"the user rejected this spec: {comment}"}),
                },
            ]
            return {
                "messages": messages,
                "pending": state["pending"][1:],
                "review": None,
                "elapsed_s": spent(state, t0),
                "trace_lines": trace.lines,
            }
        pending = list(state["pending"])
        if verdict == "edit":
            pending[0] = {**call, "arguments": str(answer["arguments"])}
        return {
            "pending": pending,
            "review": {"call_id": call["id"], "verdict": verdict},
            "elapsed_s": spent(state, t0),
            "trace_lines": trace.lines,
        }

    def human(state: AgentState) -> dict[str, Any]:
        """Chat: the user's turn — a message for the teacher, 'continue', or 'stop'."""
        t0 = time.monotonic()
        answer = interrupt({"kind": "chat"})
        action = str(answer.get("action", "continue"))
        trace.write("user", kind="chat", action=action, text=answer.get("text"))
        update: dict[str, Any] = {"nudges": 0}
        if action == "stop":
            update["exit"] = _exit("user_stop", str(answer.get("text") or "stopped by the user"))
        elif action == "message":
            update["messages"] = [
                *state["messages"],
                {"role": "user", "content": str(answer.get("text", ""))},
            ]
        update["elapsed_s"] = spent(state, t0)
        update["trace_lines"] = trace.lines
        return update

    def finalize(state: AgentState) -> dict[str, Any]:
        """Leave a video whatever the exit: accepted, else best iterate, else base sample."""
        t0 = time.monotonic()
        ctx.sync(state)
        finish = state.get("finish") or {}
        choice = finish.get("video", "best")
        if choice in state["videos"] and state["videos"][choice].get("kind") == "full":
            frames = ctx.video(choice)
            source = choice
        elif ctx.spec is not None:
            video, iterate = ctx.render(choice if choice in ("best", "current") else "best")
            frames = to_uint8(video)
            source = f"{choice if choice == 'current' else 'best'} (iterate {iterate})"
        else:
            frames = to_uint8(ctx.base_video())
            source = "base model (no spec was written)"
        record = ctx.add_video("final", frames, kind="final", source=source)
        scores = _final_scores(frames)
        # Playable copies for people; videos/final.npy stays the exact record.
        playable = write_playable(ctx.run_dir, "video", frames)
        result = {
            "video": record["path"],
            "files": {"video (mp4)": playable["mp4"], "video (gif)": playable["gif"]},
            "source": source,
            "scores": scores,
            "lora_steps": state["lora_steps"],
            "turns": state["turns"],
            "seconds": round(float(state["elapsed_s"]) + time.monotonic() - t0, 3),
            "specs": len(state["specs"]),
        }
        exit_ = state.get("exit") or _exit("teacher_failure", "the loop ended without an exit")
        trace.write("exit", **exit_)
        trace.write("result", **result)
        emit("exit", **exit_, result=result)
        return {
            "result": result,
            "exit": exit_,
            "videos": {**state["videos"], "final": record},
            "elapsed_s": spent(state, t0),
            "trace_lines": trace.lines,
        }

    def _final_scores(frames: np.ndarray) -> dict[str, Any] | None:
        """Per-term loss / P(Yes) / pass of the final video under the current spec."""
        if ctx.reward is None:
            return None
        # On the reasoner's device, where the optimizer scores its frames too.
        video = torch.from_numpy(frames).to(ctx.reasoner.device).permute(0, 3, 1, 2) / 255.0
        k_frames = sample_frames(video, ctx.reward.num_frames)
        with torch.no_grad():
            scored = ctx.reward(k_frames).as_dict()
            held_out = ctx.reward.verify(k_frames).as_dict()
        total = scored["total"]
        return {
            "loss": total if math.isfinite(total) else None,
            "passed": scored["passed"] and held_out["passed"],
            "terms": [
                {k: t[k] for k in ("name", "role", "loss", "p_yes", "passed")}
                for t in scored["terms"] + held_out["terms"]
            ],
        }

    def _finish_with(state: AgentState, reason: ExitReason, detail: str, t0: float) -> dict:
        return {
            "exit": _exit(reason, detail),
            "elapsed_s": spent(state, t0),
            "trace_lines": trace.lines,
        }

    # -- routers ---------------------------------------------------------------

    def next_call_node(state: AgentState) -> Literal["act", "review"]:
        call = state["pending"][0]
        reviewed = (state.get("review") or {}).get("call_id") == call["id"]
        if deps.interactive and call["name"] in SPEC_TOOLS and not reviewed:
            return "review"
        return "act"

    def after_teacher(
        state: AgentState,
    ) -> Literal["act", "review", "human", "teacher", "finalize"]:
        if state.get("exit"):
            return "finalize"
        if state.get("pending"):
            return next_call_node(state)
        return "human" if deps.interactive else "teacher"

    def after_act(state: AgentState) -> Literal["act", "review", "human", "teacher", "finalize"]:
        if state.get("exit"):
            return "finalize"
        if state.get("pending"):
            return next_call_node(state)
        last_tool = _last_tool_name(state)
        if deps.interactive and last_tool in PAUSE_AFTER:
            return "human"
        return "teacher"

    def after_human(state: AgentState) -> Literal["teacher", "finalize"]:
        return "finalize" if state.get("exit") else "teacher"

    # -- wiring ----------------------------------------------------------------

    graph = StateGraph(AgentState)
    graph.add_node("start", start)
    graph.add_node("teacher", teacher)
    graph.add_node("act", act)
    graph.add_node("review", review)
    graph.add_node("human", human)
    graph.add_node("finalize", finalize)
    # The conversation opens once; a resumed run continues from its checkpoint.
    graph.add_edge(START, "start")
    graph.add_edge("start", "teacher")
    # A turn either queues tool calls, asks the user (chat), is nudged, or ends the run.
    graph.add_conditional_edges("teacher", after_teacher)
    # One tool call per step; after the last one the teacher (or the user) speaks.
    graph.add_conditional_edges("act", after_act)
    # A reviewed spec call runs (approved/edited) or was answered with a rejection.
    graph.add_conditional_edges("review", after_act)
    # The user's word goes to the teacher, unless it was "stop".
    graph.add_conditional_edges("human", after_human)
    # Every exit passes through finalize, which always leaves a video.
    graph.add_edge("finalize", END)
    return graph.compile(checkpointer=checkpointer)


def _last_tool_name(state: AgentState) -> str | None:
    """Name of the tool whose result is the newest tool message."""
    for message in reversed(state["messages"]):
        if message.get("role") == "tool":
            call_id = message.get("tool_call_id")
            for m in reversed(state["messages"]):
                for call in m.get("tool_calls") or []:
                    if call["id"] == call_id:
                        return call["function"]["name"]
            return None
    return None
