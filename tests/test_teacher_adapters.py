"""The model teacher as a one-shot helper for the non-agentic methods, over loopback.

`TeacherPrompter` gives `best_of_n` its spec and the solver baseline its rewrite
and critique; the real `openai` client talks to the scripted server.
"""

from __future__ import annotations

import json

import pytest
import torch
from scripted_server import Reply, ScriptedServer
from test_teacher_openai import make_teacher

from agent.teacher_adapters import IncludeOnly, TeacherPrompter
from reasoner.errors import ConfigError
from reasoner.spec import RewardSpec

INSTRUCTION = "Move the red square to the green square without touching the black walls."
GOOD_SPEC = {
    "rationale": "the square must end on the target",
    "goal": {"text": "By the end, is the red square on the green square?"},
    "process": [{"text": "Does the red square avoid the black walls throughout?"}],
}
FIRST_FRAME = torch.rand(3, 16, 16)


def _user_text(request: dict) -> str:
    content = request["messages"][-1]["content"]
    return content if isinstance(content, str) else content[0]["text"]


def test_an_invalid_spec_goes_back_with_the_reason_then_a_valid_one_is_used() -> None:
    bad = {**GOOD_SPEC, "lam": 7}  # λ outside [0, 1]
    script = [
        Reply(tool_calls=[("write_reward_spec", bad)]),
        Reply(tool_calls=[("write_reward_spec", GOOD_SPEC)]),
    ]
    with ScriptedServer(script) as server:
        prompter = TeacherPrompter(make_teacher(server.base_url), budget_s=10.0)
        spec = prompter.write_spec(INSTRUCTION, FIRST_FRAME)
        first, second = server.requests

    assert spec == RewardSpec.model_validate(GOOD_SPEC)
    # The first request carries the instruction, the first frame and only the spec tool.
    assert INSTRUCTION in _user_text(first)
    assert first["messages"][0]["content"][1]["type"] == "image_url"
    assert [t["function"]["name"] for t in first["tools"]] == ["write_reward_spec"]
    # The second one tells the teacher what was wrong with the first spec.
    retry = second["messages"][-1]["content"]
    assert retry.startswith("That spec cannot be used:") and "lam" in retry
    assert prompter.usage.calls == 2


def test_no_valid_spec_within_the_attempts_is_a_clear_error() -> None:
    script = [Reply("I would rather describe the video.")] * 2
    with ScriptedServer(script) as server:
        prompter = TeacherPrompter(make_teacher(server.base_url), budget_s=10.0, max_attempts=2)
        with pytest.raises(ConfigError, match="no valid spec in 2 tries"):
            prompter.write_spec(INSTRUCTION, FIRST_FRAME)


def test_rewrite_and_critique_send_the_prompt_and_frames_and_return_the_text() -> None:
    script = [
        Reply("  The red square moves right twice, then down.  "),
        Reply("It goes through a wall."),
    ]
    frames = torch.rand(3, 3, 16, 16)
    with ScriptedServer(script) as server:
        prompter = TeacherPrompter(make_teacher(server.base_url), budget_s=10.0)
        rewritten = prompter.rewrite(INSTRUCTION, FIRST_FRAME)
        critique = prompter.critique(rewritten, frames)
        rewrite_request, critique_request = server.requests

    assert rewritten == "The red square moves right twice, then down."
    assert critique == "It goes through a wall."
    assert _user_text(rewrite_request).endswith(INSTRUCTION)
    critique_parts = critique_request["messages"][-1]["content"]
    assert rewritten in critique_parts[0]["text"]
    assert [p["type"] for p in critique_parts[1:]] == ["image_url"] * 3  # every frame is shown
    assert "tools" not in critique_request or not critique_request["tools"]


def test_include_only_checks_drops_the_questions_and_needs_a_goal_check() -> None:
    class Fixed:
        usage = None

        def __init__(self, spec: dict) -> None:
            self.spec = spec

        def write_spec(self, prompt: str, image: torch.Tensor | None) -> RewardSpec:
            return RewardSpec.model_validate(self.spec)

    goal_check = {
        "kind": "reach_by_end",
        "role": "goal",
        "object": {"color": "red"},
        "target": {"type": "point", "x": 0.9, "y": 0.9},
    }
    with_check = {**GOOD_SPEC, "checks": [goal_check]}
    checks_only = IncludeOnly(Fixed(with_check), "checks").write_spec(INSTRUCTION, None)
    assert checks_only.goal is None and checks_only.process == [] and len(checks_only.checks) == 1
    queries_only = IncludeOnly(Fixed(with_check), "queries").write_spec(INSTRUCTION, None)
    assert queries_only.checks == [] and queries_only.goal is not None
    with pytest.raises(ConfigError, match="no goal check"):
        IncludeOnly(Fixed(GOOD_SPEC), "checks").write_spec(INSTRUCTION, None)
    assert json.loads(checks_only.model_dump_json())["checks"][0]["kind"] == "reach_by_end"
