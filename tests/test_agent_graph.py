"""The agent graph driven through the real `openai` client and a scripted endpoint.

Each test is one run on tiny real models (Wan transformer, Qwen3-VL scorer):
the branches of the state machine — write → optimize → verify → finish, revise
after a failed verify, budget exhaustion, a teacher that never finishes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from agent_support import (
    SPEC,
    agent_config,
    assert_complete_trace,
    drawn_task,
    reasoner,
    run_scripted,
    tool_events,
)
from scripted_server import Reply, ScriptedServer, last_tool_results
from tiny_wan import one_torch_thread

from tools.registry import TOOLS


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def call(name: str, args: dict | str) -> Reply:
    return Reply(tool_calls=[(name, args)])


def finish_with_verified_video(request: dict) -> Reply:
    """Accept the full-quality video the last verify produced (read from its result)."""
    video = last_tool_results(request)[0]["video"]
    return call("finish", {"decision": "accept", "video": video, "reason": "verified"})


def test_write_optimize_inspect_verify_finish(tmp_path: Path) -> None:
    script = [
        call("write_reward_spec", SPEC),
        call("optimize", {"steps": 3}),
        call("inspect_frames", {"video": "preview-1", "frames": [0, -1]}),
        call("verify", {"iterate": "best"}),
        finish_with_verified_video,
    ]
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run")
    assert outcome.exit["reason"] == "accepted"
    events = assert_complete_trace(outcome)
    tools = [e for e in events if e["event"] == "tool"]
    assert [e["name"] for e in tools] == [
        "write_reward_spec",
        "optimize",
        "inspect_frames",
        "verify",
        "finish",
    ]
    assert all(e["ok"] for e in tools)

    # The teacher saw every tool's schema, the first frame and, after the burst, images.
    first = server.requests[0]
    assert {t["function"]["name"] for t in first["tools"]} == set(TOOLS)
    assert first["messages"][1]["content"][1]["image_url"]["url"].startswith("data:image/png")
    after_burst = server.requests[2]["messages"]
    assert after_burst[-2]["role"] == "tool" and after_burst[-1]["role"] == "user"
    assert sum(p["type"] == "image_url" for p in after_burst[-1]["content"]) == 3

    state = outcome.state
    assert state["lora_steps"] == 3 and len(state["bursts"]) == 1
    assert [s["version"] for s in state["specs"]] == [1]
    # The accepted video is the one verify rendered, byte for byte.
    verified = tools[3]["result"]["video"]
    assert outcome.result["source"] == verified
    assert np.array_equal(
        np.load(outcome.video_path), np.load(tmp_path / "run" / f"videos/{verified}.npy")
    )
    # The burst trained the LoRA (saved state differs from the fresh adapter) and the
    # shared model was left with a fresh, zero-effect LoRA.
    saved = torch.load(tmp_path / "run" / state["session_file"], weights_only=True)
    fresh = [p.detach() for p in reasoner().lora.trainable_parameters()]
    assert any(not torch.equal(a, b) for a, b in zip(saved["params"], fresh, strict=True))
    assert saved["steps_taken"] == 3
    # Per-query numbers of the final video are in the result.
    names = {t["name"] for t in outcome.result["scores"]["terms"]}
    assert {"goal", "process[0]", "verifier[0]"} <= names


def test_the_first_burst_reports_the_noise_the_run_picked(tmp_path: Path) -> None:
    script = [
        call("write_reward_spec", SPEC),
        call("optimize", {"steps": 1}),
        call("optimize", {"steps": 1}),
        call("finish", {"decision": "give_up", "reason": "enough"}),
    ]
    config = agent_config(tto={"noise_candidates": 3})
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", config=config)
    first, second = [e["result"] for e in tool_events(outcome.run_dir) if e["name"] == "optimize"]
    noise = first["noise"]
    assert noise["candidates"] == 3 and len(noise["losses"]) == 3
    assert noise["picked"] == min(range(3), key=noise["losses"].__getitem__)
    assert "noise" not in second  # said once, with the first burst


def test_revise_after_a_failed_verify(tmp_path: Path) -> None:
    revised = {**SPEC, "rationale": "Goal check only, weighted higher.", "lam": 0.8}
    script = [
        call("write_reward_spec", SPEC),
        call("optimize", {"steps": 2}),
        call("verify", {}),
        call("revise_reward_spec", revised),
        call("optimize", {"steps": 2}),
        call("verify", {"iterate": "current"}),
        finish_with_verified_video,
    ]
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run")
    assert outcome.exit["reason"] == "accepted"
    assert_complete_trace(outcome)
    first_verify = tool_events(tmp_path / "run")[2]["result"]
    assert first_verify["passed"] is False and first_verify["failed"]  # random models fail
    state = outcome.state
    assert [s["version"] for s in state["specs"]] == [1, 2]
    assert state["specs"][1]["spec"]["lam"] == 0.8
    # The second burst optimized the revised spec and continued the same LoRA.
    assert [b["spec_version"] for b in state["bursts"]] == [1, 2]
    second = state["bursts"][1]["records"]
    assert {r["spec_version"] for r in second} == {2}
    assert second[0]["iterate"] == 2
    assert state["lora_steps"] == 4
    # The teacher was told the revision was accepted.
    revise_result = json.loads(server.requests[4]["messages"][-1]["content"])
    assert revise_result["accepted"] and revise_result["version"] == 2


def test_step_budget_clips_bursts_then_ends_the_run(tmp_path: Path) -> None:
    config = agent_config(budgets={"max_lora_steps": 5})
    script = [
        call("write_reward_spec", SPEC),
        call("optimize", {"steps": 4}),
        call("optimize", {"steps": 4}),  # only 1 left: shortened
        call("optimize", {"steps": 4}),  # none left: the run ends
        call("finish", {"decision": "accept", "reason": "never reached"}),
    ]
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", config)
    assert outcome.exit["reason"] == "budget_steps"
    assert_complete_trace(outcome)
    assert server.remaining == 1
    bursts = [e["result"] for e in tool_events(tmp_path / "run") if e["name"] == "optimize"]
    assert [b["steps_run"] if b else None for b in bursts] == [4, 1, None]
    assert bursts[1]["steps_left"] == 0 and "shortened" in bursts[1]["note"]
    assert outcome.state["lora_steps"] == 5
    assert outcome.result["source"].startswith("best")


def test_a_teacher_that_never_finishes_hits_the_turn_budget(tmp_path: Path) -> None:
    config = agent_config(budgets={"max_turns": 4})
    look = call("inspect_frames", {"video": "first_frame"})
    with ScriptedServer([look] * 50) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", config)
    assert outcome.exit["reason"] == "budget_turns"
    assert len(server.requests) == 4
    assert_complete_trace(outcome)
    assert outcome.result["source"].startswith("base model")


def test_a_teacher_that_only_talks_is_nudged_then_stopped(tmp_path: Path) -> None:
    config = agent_config(budgets={"max_nudges": 2})
    with ScriptedServer([Reply("I think the square should move.")] * 10) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", config)
    assert outcome.exit["reason"] == "no_tool_calls"
    assert len(server.requests) == 3
    nudge = server.requests[1]["messages"][-1]
    assert nudge["role"] == "user" and "finish" in nudge["content"]
    assert_complete_trace(outcome)


def test_give_up_is_its_own_exit(tmp_path: Path) -> None:
    script = [call("finish", {"decision": "give_up", "video": "best", "reason": "impossible"})]
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run")
    assert outcome.exit == {"reason": "gave_up", "detail": "impossible"}
    assert_complete_trace(outcome)


def test_finished_run_is_reported_not_rerun(tmp_path: Path) -> None:
    script = [call("finish", {"decision": "give_up", "reason": "no"})]
    with ScriptedServer(script) as server:
        first = run_scripted(server.base_url, tmp_path / "run")
        again = run_scripted(server.base_url, tmp_path / "run")
    assert len(server.requests) == 1
    assert again.exit == first.exit and again.result == first.result
    assert drawn_task().task_id in json.dumps(again.state["task"])


def test_the_api_key_never_reaches_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-agent-test-" + "7" * 24
    monkeypatch.setenv("AGENT_TEST_KEY", secret)
    script = [
        call("write_reward_spec", SPEC),
        call("optimize", {"steps": 1}),
        call("finish", {"decision": "give_up", "reason": "done"}),
    ]
    with ScriptedServer(script) as server:
        run_scripted(server.base_url, tmp_path / "run", api_key_env="AGENT_TEST_KEY")
    assert all(h["authorization"] == f"Bearer {secret}" for h in server.headers)
    files = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert any(p.name == "checkpoints.sqlite" for p in files)
    for path in files:
        assert secret.encode() not in path.read_bytes(), path


def test_only_the_last_two_burst_states_are_kept(tmp_path: Path) -> None:
    """Resuming needs the state its checkpoint names (the latest, or the one before
    while a burst's result is being checkpointed); older ones are deleted."""
    config = agent_config(budgets={"max_lora_steps": 8})
    script = [call("write_reward_spec", SPEC)] + [call("optimize", {"steps": 2})] * 4
    script.append(call("finish", {"decision": "accept", "reason": "enough"}))
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", config)
    assert_complete_trace(outcome)
    assert outcome.state["lora_steps"] == 8
    kept = sorted(p.name for p in (tmp_path / "run" / "session").iterdir())
    assert kept == ["burst-0003.pt", "burst-0004.pt"]
    assert outcome.state["session_file"] == "session/burst-0004.pt"


def test_a_finished_run_can_drop_its_session_states(tmp_path: Path) -> None:
    """keep_session_states: false deletes the LoRA states at the end, not before."""
    config = agent_config(budgets={"max_lora_steps": 4}).model_copy(
        update={"keep_session_states": False}
    )
    script = [call("write_reward_spec", SPEC)] + [call("optimize", {"steps": 2})] * 2
    script.append(call("finish", {"decision": "accept", "reason": "enough"}))
    with ScriptedServer(script) as server:
        outcome = run_scripted(server.base_url, tmp_path / "run", config)
        assert_complete_trace(outcome)
        assert outcome.state["lora_steps"] == 4
        assert list((tmp_path / "run" / "session").iterdir()) == []
        assert (outcome.run_dir / outcome.result["video"]).is_file()
        # A resumed finished run reports without the states.
        again = run_scripted(server.base_url, tmp_path / "run", config)
    assert again.result == outcome.result
    assert len(server.requests) == 4
    # A state written after the end (an older run resumed under the new setting) goes too.
    stale = tmp_path / "run" / "session" / "burst-0009.pt.tmp"
    stale.write_bytes(b"x")
    with ScriptedServer([]) as server:
        run_scripted(server.base_url, tmp_path / "run", config)
    assert not stale.exists()
