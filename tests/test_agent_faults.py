"""Faults of the teacher endpoint and mistakes of the teacher, through a whole run.

Every run must end with a named exit and a complete trace, within its budgets;
mistakes go back to the teacher as tool errors and retries stay bounded.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from agent_support import SPEC, agent_config, assert_complete_trace, run_scripted, tool_events
from scripted_server import Delay, Drop, Malformed, Reply, ScriptedServer, Status
from tiny_wan import one_torch_thread


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def call(name: str, args: dict | str) -> Reply:
    return Reply(tool_calls=[(name, args)])


GIVE_UP = call("finish", {"decision": "give_up", "reason": "test over"})


def test_transient_faults_between_turns_are_retried(tmp_path: Path) -> None:
    script = [
        Status(500),
        Drop(),
        call("write_reward_spec", SPEC),
        Status(503),
        Malformed(),
        call("optimize", {"steps": 1}),
        Delay(3.0),  # longer than the 1 s client timeout: retried
        GIVE_UP,
    ]
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", timeout_s=1.0, max_attempts=4)
    assert outcome.exit["reason"] == "gave_up"
    assert_complete_trace(outcome)
    attempts = [e["attempts"] for e in assert_complete_trace(outcome) if e["event"] == "teacher"]
    assert attempts == [3, 3, 2]
    assert [e["name"] for e in tool_events(tmp_path / "run")] == [
        "write_reward_spec",
        "optimize",
        "finish",
    ]


def test_an_endpoint_that_stays_down_ends_the_run_with_teacher_failure(tmp_path: Path) -> None:
    with ScriptedServer([Status(500)] * 20) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", max_attempts=3)
    assert outcome.exit["reason"] == "teacher_failure"
    assert "500" in outcome.exit["detail"]
    assert len(server.requests) == 3  # bounded
    events = assert_complete_trace(outcome)
    assert any(e["event"] == "teacher_error" for e in events)


def test_a_dead_endpoint_after_progress_still_leaves_the_best_video(tmp_path: Path) -> None:
    script = [call("write_reward_spec", SPEC), call("optimize", {"steps": 2}), Drop(), Drop()]
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", max_attempts=2)
    assert outcome.exit["reason"] == "teacher_failure"
    assert outcome.result["source"].startswith("best")
    assert outcome.result["lora_steps"] == 2
    assert_complete_trace(outcome)


def test_a_slow_endpoint_cannot_outlast_the_wall_clock(tmp_path: Path) -> None:
    config = agent_config(budgets={"wall_clock_s": 1.5})
    with ScriptedServer([Delay(30.0)] * 50) as server:
        start = time.monotonic()
        outcome = run_scripted(
            server.base_url, tmp_path / "run", config, timeout_s=0.4, max_attempts=20
        )
        took = time.monotonic() - start
    assert outcome.exit["reason"] in ("budget_wall_clock", "teacher_failure")
    assert outcome.exit["reason"] == "budget_wall_clock" or "budget" in outcome.exit["detail"]
    assert took < 8.0  # 1.5 s of teacher waits plus building and the base video
    assert_complete_trace(outcome)


def test_teacher_mistakes_return_as_tool_errors(tmp_path: Path) -> None:
    bad_spec = {**SPEC, "lam": 3.0, "checks": [{"kind": "teleport_detector"}]}
    script = [
        call("write_reward_spec", '{"rationale": "unterminated'),  # invalid JSON
        call("delete_files", {"path": "/"}),  # unknown tool
        call("write_reward_spec", bad_spec),  # fails validation
        call("inspect_frames", {"video": "../../etc/passwd"}),  # path escape
        call("write_reward_spec", SPEC),
        call("optimize", {"steps": 0}),  # out of range
        call("finish", {"decision": "accept", "video": "/etc/passwd", "reason": "x"}),
        GIVE_UP,
    ]
    config = agent_config(budgets={"max_tool_errors": 5})
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", config)
    assert outcome.exit["reason"] == "gave_up"
    assert_complete_trace(outcome)
    events = tool_events(tmp_path / "run")
    assert [e["ok"] for e in events] == [False, False, False, False, True, False, False, True]
    errors = [e["error"] for e in events]
    assert "not valid JSON" in errors[0]
    assert "no tool 'delete_files'" in errors[1] and "write_reward_spec" in errors[1]
    assert "lam" in errors[2] and "teleport_detector" in errors[2]
    assert "'..'" in errors[3] and "run's folder" in errors[3]
    assert "steps" in errors[5]
    assert "absolute" in errors[6]
    # The teacher read each error as the tool's result.
    answer = json.loads(server.requests[3]["messages"][-1]["content"])
    assert "invalid" in answer["error"] and "lam" in answer["error"]
    # Nothing outside the run folder was touched or created.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_too_many_errors_in_a_row_end_the_run(tmp_path: Path) -> None:
    config = agent_config(budgets={"max_tool_errors": 3})
    bad = call("optimize", {"steps": 2})  # no spec yet: an error every time
    with ScriptedServer([bad] * 10) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", config)
    assert outcome.exit["reason"] == "tool_errors"
    assert len(server.requests) == 3
    assert "write_reward_spec first" in outcome.exit["detail"]
    assert_complete_trace(outcome)


def test_empty_replies_are_nudged_and_bounded(tmp_path: Path) -> None:
    config = agent_config(budgets={"max_nudges": 1})
    with ScriptedServer([Reply(None), Reply(""), Reply(None)]) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", config)
    assert outcome.exit["reason"] == "no_tool_calls"
    assert len(server.requests) == 2
    assert_complete_trace(outcome)


def test_a_one_megabyte_reply_and_arguments_do_not_break_the_run(tmp_path: Path) -> None:
    huge_text = "I am thinking. " * 70_000  # ~1 MB of content
    huge_args = json.dumps({**SPEC, "rationale": "x" * 1_000_000})
    script = [
        Reply(huge_text, [("write_reward_spec", huge_args)]),
        Reply(huge_text, [("write_reward_spec", SPEC)]),
        GIVE_UP,
    ]
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", max_reply_chars=2000)
    assert outcome.exit["reason"] == "gave_up"
    events = assert_complete_trace(outcome)
    tools = tool_events(tmp_path / "run")
    assert not tools[0]["ok"] and "characters long" in tools[0]["error"]
    assert tools[1]["ok"]
    # History keeps the cut text, so later requests stay small.
    assert len(json.dumps(server.requests[2]["messages"])) < 20_000
    assert max(len(json.dumps(e)) for e in events) < 20_000  # the trace stays readable


def test_many_calls_in_one_turn_run_in_order_and_images_follow_the_results(
    tmp_path: Path,
) -> None:
    script = [
        Reply(
            "two at once",
            [
                ("write_reward_spec", SPEC),
                ("inspect_frames", {"video": "first_frame"}),
                ("inspect_frames", {"video": "nope"}),
            ],
        ),
        GIVE_UP,
    ]
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run")
    assert_complete_trace(outcome)
    messages = server.requests[1]["messages"]
    roles = [m["role"] for m in messages[-5:]]
    assert roles == ["assistant", "tool", "tool", "tool", "user"]  # results, then images
    assert "unknown video id 'nope'" in messages[-2]["content"]
    assert any(p["type"] == "image_url" for p in messages[-1]["content"])
