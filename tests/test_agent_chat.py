"""`vlm-teacher chat`: the user approves, edits or rejects specs, asks, asks for steps, stops.

The chat loop is driven by scripted user input; the teacher is the offline one
(its approve/edit/more/stop actions must work without a model) or a scripted
OpenAI endpoint for a free conversation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_support import SPEC, agent_config, drawn_task, openai_teacher, reasoner, scorer
from scripted_server import Reply, ScriptedServer
from tiny_wan import one_torch_thread

from agent.chat import chat_loop
from agent.offline_teacher import OfflineTeacher
from agent.run import AgentSession
from agent.trace import read_trace


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def session(run_dir: Path, teacher=None, **budgets: object) -> AgentSession:
    config = agent_config(teacher={"offline": {"burst": 2}}, budgets=budgets)
    return AgentSession(
        config,
        drawn_task(),
        run_dir,
        reasoner=reasoner(),
        scorer=scorer(),
        teacher=teacher or OfflineTeacher(config.teacher.offline),
        interactive=True,
    )


class User:
    """Answers prompts from a list and records what the agent showed."""

    def __init__(self, answers: list[str]) -> None:
        self._answers: Iterator[str] = iter(answers)
        self.prompts: list[str] = []
        self.shown: list[str] = []

    def ask(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return next(self._answers)

    def show(self, text: str) -> None:
        self.shown.append(str(text))


def user_events(run_dir: Path) -> list[dict]:
    return [e for e in read_trace(run_dir) if e["event"] == "user"]


def test_offline_chat_approve_ask_more_steps_stop(tmp_path: Path) -> None:
    # "" after the base video's verdict lets the teacher go on with its first burst.
    user = User(["a", "", "What do you see?", "run 3 more steps please", "/spec", "/stop"])
    with session(tmp_path / "run") as s:
        assert chat_loop(s, user.ask, user.show)
        outcome = s.outcome()
    assert outcome.exit == {"reason": "user_stop", "detail": "stopped by the user"}
    assert user.prompts[0].startswith("spec:")
    # After the first burst the user asked a question: a text answer, no tool call.
    teacher_turns = [e for e in read_trace(tmp_path / "run") if e["event"] == "teacher"]
    answer = next(t for t in teacher_turns if not t["tool_calls"])
    assert "red square must travel to the blue square" in answer["content"]
    # "3 more steps" ran a burst of 3 after the policy's first burst of 2.
    assert [b["requested"] for b in outcome.state["bursts"]] == [2, 3]
    assert outcome.state["lora_steps"] == 5
    assert any('"rationale"' in text for text in user.shown)  # /spec showed the spec
    kinds = [e["kind"] for e in user_events(tmp_path / "run")]
    assert kinds == ["review", "chat", "chat", "chat", "chat"]
    assert outcome.video_path.is_file()


def test_edited_spec_is_used_and_recorded_as_the_users(tmp_path: Path) -> None:
    edited = {**SPEC, "lam": 0.9, "rationale": "mine"}
    user = User(["e", json.dumps(edited), "", "/stop"])
    with session(tmp_path / "run") as s:
        assert chat_loop(s, user.ask, user.show)
        state = s.state()
    assert state["specs"][0]["by"] == "user"
    assert state["specs"][0]["spec"]["lam"] == 0.9
    assert state["bursts"][0]["spec_version"] == 1


def test_rejected_spec_goes_back_to_the_teacher(tmp_path: Path) -> None:
    # Rejected: the offline teacher answers with a questions-only spec, approved.
    user = User(["r", "no checks please", "a", "/stop"])
    with session(tmp_path / "run") as s:
        assert chat_loop(s, user.ask, user.show)
        state = s.state()
    assert len(state["specs"]) == 1
    assert "checks" not in state["specs"][0]["spec"] or not state["specs"][0]["spec"]["checks"]
    rejection = next(
        m for m in state["messages"] if m["role"] == "tool" and "rejected" in m["content"]
    )
    assert "no checks please" in rejection["content"]


def test_quit_pauses_and_the_next_session_resumes_the_same_question(tmp_path: Path) -> None:
    with session(tmp_path / "run") as s:
        assert not chat_loop(s, User(["a", "", "/quit"]).ask, print)
    with session(tmp_path / "run") as s:
        assert s.pending_interrupt() == {"kind": "chat"}
        assert chat_loop(s, User(["/stop"]).ask, print)
        assert s.outcome().exit["reason"] == "user_stop"
        assert s.state()["lora_steps"] == 2  # the first burst was not redone


def test_free_conversation_with_an_endpoint(tmp_path: Path) -> None:
    script = [
        Reply("I see a red square top-left and a blue one bottom-right."),
        Reply("Writing it.", [("write_reward_spec", SPEC)]),
        Reply(None, [("optimize", {"steps": 1})]),
        Reply("Done.", [("finish", {"decision": "accept", "reason": "the user is happy"})]),
    ]
    user = User(["Please write the spec.", "a", "looks good, finish"])
    with (
        ScriptedServer(script) as server,
        session(tmp_path / "run", teacher=openai_teacher(server.base_url)) as s,
    ):
        assert chat_loop(s, user.ask, user.show)
        outcome = s.outcome()
    assert outcome.exit["reason"] == "accepted"
    said = [m for m in server.requests[1]["messages"] if m["role"] == "user"][-1]
    assert said["content"] == "Please write the spec."
    assert server.requests[3]["messages"][-1]["content"] == "looks good, finish"
