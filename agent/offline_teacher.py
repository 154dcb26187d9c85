"""The offline teacher: a documented policy in place of a VLM, behind the same interface.

It reads exactly what an endpoint would receive — the messages, with the first
frame as a data-URL image — and answers with tool calls, so the graph has one
code path for both teachers. Its decisions are a function of the conversation
alone, so a resumed run decides the same way.

The policy, turn by turn (tau, steps left and per-term verdicts come from the
tool results it reads):

1. No spec yet: write one from the instruction and first frame
   (`agent.offline_reading`; a mini-world task's questions in the mini
   scorer's phrasings, `evals.mini.questions`). If it is rejected, retry
   once with questions only; if that fails too, give up.
2. After the first spec is accepted: `verify` the base model's video (no LoRA
   step yet) and accept it if every term passes — a task the video model
   already solves costs no optimization. After that, or after a revision:
   `optimize` a burst.
3. After a burst: `verify` the best iterate when the loss reached tau, when the
   step budget is spent or the optimizer stopped, or when the loss has
   converged (it fell by less than `converge_rel` over the burst); otherwise
   optimize again.
4. After verify: accept that video if every term passed. Otherwise, if steps
   are left and the loss converged (or reached tau) while something still
   fails, revise (at most `max_revisions` times): failed verifiers become
   process questions (they get optimized) and failed checks weigh double.
   Otherwise optimize more while steps are left. With no steps left, finish:
   "accept" if the video passed, else "give_up" with the verified video —
   the base one included — that fails the fewest terms (ties: the lower loss),
   so giving up never ships a video the spec judges worse than one it saw.

In a chat, a user message is answered first: "more N" / "N more steps" runs
N steps, "verify", "accept" / "finish" end as asked, and any other message
(e.g. "what do you see?") gets the teacher's reading of the task, no tool call.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from agent.offline_reading import Reading, read_task, spec_for
from agent.teacher import Message, TeacherReply, ToolCall
from agent.teacher_config import OfflinePolicyConfig
from prompts.loader import load_prompts
from reasoner.cost import TeacherUsage

_MORE = re.compile(r"\b(?:more|continue|keep going|go on)\b", re.I)
_NUMBER = re.compile(r"\b(\d{1,3})\b")
_VERIFY = re.compile(r"\b(verify|check the video)\b", re.I)
_ACCEPT = re.compile(r"\b(accept|finish)\b", re.I)


@dataclass
class _Call:
    """One tool call of the conversation and what came back."""

    name: str
    arguments: dict[str, Any]
    result: dict[str, Any]

    @property
    def ok(self) -> bool:
        return "error" not in self.result


def _history(messages: Sequence[Message]) -> list[_Call]:
    """Tool calls in order, paired with their (JSON) results."""
    calls: dict[str, tuple[str, dict[str, Any]]] = {}
    out = []
    for m in messages:
        for c in m.get("tool_calls") or []:
            try:
                args = json.loads(c["function"]["arguments"] or "{}")
            except json.JSONDecodeError:
                args = {}
            calls[c["id"]] = (c["function"]["name"], args if isinstance(args, dict) else {})
        if m.get("role") == "tool" and m.get("tool_call_id") in calls:
            name, args = calls[m["tool_call_id"]]
            try:
                result = json.loads(m["content"])
            except (json.JSONDecodeError, TypeError):
                result = {"error": str(m.get("content"))}
            out.append(_Call(name, args, result if isinstance(result, dict) else {}))
    return out


def _first_view(messages: Sequence[Message]) -> tuple[str | None, str, np.ndarray | None]:
    """The task id, the instruction text and the first frame (None if the task has none)."""
    for m in messages:
        if m.get("role") != "user" or not isinstance(m.get("content"), list):
            continue
        text = "".join(p.get("text", "") for p in m["content"] if p.get("type") == "text")
        task_id, instruction = _task_line(text)
        for part in m["content"]:
            if part.get("type") == "image_url":
                url = part["image_url"]["url"]
                data = base64.b64decode(url.split(",", 1)[1])
                frame = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
                return task_id, instruction, frame
        return task_id, instruction, None
    raise ValueError("the conversation has no opening user message with the task")


_TASK_HEAD = re.compile(r"Task (\S+): ")


def _task_line(task_text: str) -> tuple[str | None, str]:
    """Task id and instruction of the task message ('Task <id>: <instruction>\\nThe video ...')."""
    head = _TASK_HEAD.match(task_text)
    if head:
        task_id, body = head.group(1), task_text[head.end() :]
    else:  # an id with spaces: the instruction still follows the first ': '
        first = task_text.split("\n", 1)[0]
        task_id, body = None, task_text.split(": ", 1)[1] if ": " in first else task_text
    return task_id, body.split("\nThe video has")[0].replace("\n", " ").strip()


def _user_request(messages: Sequence[Message]) -> str | None:
    """The user's chat message, if the newest message is one (not our own notes)."""
    last = messages[-1]
    if last.get("role") != "user" or not isinstance(last.get("content"), str):
        return None
    text = last["content"]
    nudge_head = load_prompts("teacher")["nudge"].split("\n", 1)[0]
    if text.startswith(nudge_head.split("{")[0].strip()):
        return None
    return text


class OfflineTeacher:
    """Writes specs and decides by `OfflinePolicyConfig`; needs no model or network."""

    def __init__(self, policy: OfflinePolicyConfig | None = None) -> None:
        self.policy = policy or OfflinePolicyConfig()
        self._usage = TeacherUsage()
        self._turns = 0

    @property
    def name(self) -> str:
        return "offline-policy"

    @property
    def usage(self) -> TeacherUsage:
        return self._usage

    def reply(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], budget_s: float
    ) -> TeacherReply:
        self._usage = self._usage + TeacherUsage(calls=1)
        task_id, instruction, frame = _first_view(messages)
        reading = read_task(instruction, frame, task_id)
        history = _history(messages)
        request = _user_request(messages)
        if request is not None:
            answer = self._answer_user(request, reading, history)
            if answer is not None:
                return answer
        return self._decide(reading, history)

    # -- the policy --------------------------------------------------------------

    def _decide(self, reading: Reading, history: list[_Call]) -> TeacherReply:
        p = self.policy
        specs = [c for c in history if c.name in ("write_reward_spec", "revise_reward_spec")]
        accepted = [c for c in specs if c.ok]
        if not accepted:
            if not specs:
                return _call("Writing the reward spec.", "write_reward_spec", spec_for(reading))
            if len(specs) == 1:
                return _call(
                    "The spec was rejected; retrying with questions only.",
                    "write_reward_spec",
                    spec_for(reading, with_checks=False),
                )
            return _finish("give_up", "best", "no reward spec I write is accepted")

        last = history[-1]
        bursts = [c for c in history if c.name == "optimize" and c.ok]
        steps_left = bursts[-1].result["steps_left"] if bursts else None
        if not bursts and p.verify_base and not p.until_budget:
            if not any(c.name == "verify" for c in history):
                return _call(
                    "Checking the base model's video before optimizing.",
                    "verify",
                    {"iterate": "current"},
                )
            if last.name == "verify" and last.ok and last.result["passed"]:
                return _finish("accept", last.result["video"], "the base video already passes")
        if last.name in ("write_reward_spec", "revise_reward_spec") or not bursts:
            return _call("Optimizing against the spec.", "optimize", {"steps": p.burst})

        if last.name == "optimize" and last.ok:
            r = last.result
            reached = _reached_tau(r)
            if reached or r["steps_left"] == 0 or r["stop_reason"] or _converged(r, p):
                why = "the loss reached tau" if reached else "the loss stopped improving"
                return _call(f"Verifying: {why}.", "verify", {"iterate": "best"})
            return _call("The loss is still falling; more steps.", "optimize", {"steps": p.burst})

        if last.name == "verify" and last.ok:
            r = last.result
            if r["passed"]:
                return _finish("accept", r["video"], "every question, check and verifier passed")
            if steps_left == 0 or bursts[-1].result.get("stop_reason") in ("max_steps", "nan"):
                return _finish(
                    "give_up",
                    _least_failing(history),
                    f"step budget spent; still failing: {r['failed']}",
                )
            burst = bursts[-1].result
            if burst["steps_run"] == 0:  # the optimizer could not move: nothing left to try
                return _finish(
                    "give_up",
                    _least_failing(history),
                    f"no progress possible; failing: {r['failed']}",
                )
            revisions = len(accepted) - 1
            if revisions < p.max_revisions and (_reached_tau(burst) or _converged(burst, p)):
                spec = _revised(accepted[-1].arguments, r["failed"])
                if spec is not None:
                    return _call(
                        f"Optimized terms look satisfied but {r['failed']} fail: revising.",
                        "revise_reward_spec",
                        spec,
                    )
            return _call("Not there yet; more steps.", "optimize", {"steps": p.burst})

        # A tool error or a look at frames: carry on with the optimization.
        if not last.ok and last.name == "optimize":
            return _call("The optimizer cannot go on: verifying the best.", "verify", {})
        if not last.ok and last.name in ("verify", "finish"):
            return _finish("give_up", "best", f"{last.name} failed: {last.result['error']}")
        if steps_left == 0:
            return _call("No steps left: verifying the best iterate.", "verify", {})
        return _call("Continuing.", "optimize", {"steps": p.burst})

    def _answer_user(
        self, text: str, reading: Reading, history: list[_Call]
    ) -> TeacherReply | None:
        has_spec = any(c.ok for c in history if c.name.endswith("reward_spec"))
        if not has_spec and _MORE.search(text):
            return None  # the policy writes the spec first
        if has_spec and _MORE.search(text):
            number = _NUMBER.search(text)
            steps = int(number.group(1)) if number else self.policy.burst
            return _call(f"Running {steps} more steps.", "optimize", {"steps": max(1, steps)})
        if has_spec and _VERIFY.search(text):
            return _call("Verifying the best iterate.", "verify", {"iterate": "best"})
        if has_spec and _ACCEPT.search(text):
            verified = [c for c in history if c.name == "verify" and c.ok]
            video = verified[-1].result["video"] if verified else "best"
            return _finish("accept", video, "accepted at the user's request")
        return TeacherReply(content=reading.describe())


def _least_failing(history: Sequence[_Call]) -> str:
    """The verified video failing the fewest terms (ties: the lower loss; then the earlier).

    Losses of different spec versions are weighted differently, so the count of
    failing terms decides first and the loss only breaks ties.
    """
    verified = [c.result for c in history if c.name == "verify" and c.ok]
    if not verified:
        return "best"
    best = min(verified, key=lambda r: (len(r["failed"]), r.get("loss") or 0.0))
    return str(best["video"])


def _reached_tau(burst: dict[str, Any]) -> bool:
    tau, loss = burst.get("tau"), burst["latest"]["loss"]
    return tau is not None and loss is not None and loss <= tau


def _converged(burst: dict[str, Any], policy: OfflinePolicyConfig) -> bool:
    losses = [x for x in burst["losses"] if x is not None]
    if len(losses) < 2 or policy.until_budget:  # until_budget: only the step budget ends it
        return False
    return losses[0] - losses[-1] < policy.converge_rel * abs(losses[0])


def _revised(spec: dict[str, Any], failed: list[str]) -> dict[str, Any] | None:
    """Failed verifiers join the optimized questions; failed checks weigh double."""
    spec = json.loads(json.dumps(spec))  # a deep copy of plain data
    changed = []
    verifiers = spec.get("verifiers") or []
    moved = [int(m.group(1)) for f in failed if (m := re.fullmatch(r"verifier\[(\d+)\]", f))]
    for i in sorted(moved, reverse=True):
        if i < len(verifiers) and len(spec.get("process", [])) < 8:
            spec.setdefault("process", []).append(verifiers.pop(i))
            changed.append(f"verifier {i} is now optimized")
    spec["verifiers"] = verifiers
    for f in failed:
        m = re.fullmatch(r"check\[(\d+)\].*", f)
        if m and int(m.group(1)) < len(spec.get("checks", [])):
            check = spec["checks"][int(m.group(1))]
            weight = min(10.0, 2.0 * float(check.get("weight", 1.0)))
            if weight != check.get("weight", 1.0):
                check["weight"] = weight
                changed.append(f"check {m.group(1)} weighs {weight:g}")
    if not changed:
        return None
    spec["rationale"] = "Revision: " + "; ".join(changed) + "."
    spec.pop("version", None)
    return spec


def _call(text: str, name: str, arguments: dict[str, Any]) -> TeacherReply:
    return TeacherReply(
        content=text,
        tool_calls=[ToolCall(id="", name=name, arguments=json.dumps(arguments))],
    )


def _finish(decision: str, video: str, reason: str) -> TeacherReply:
    return _call(
        f"Finishing: {decision}.",
        "finish",
        {"decision": decision, "video": video, "reason": reason},
    )
