"""The OpenAI-compatible teacher client against a scripted server on loopback.

The real `openai` client talks HTTP to `tests/scripted_server.py`; faults are real
socket-level events (a status, a dropped connection, a late answer).
"""

from __future__ import annotations

import base64
import time

import pytest
from pydantic import ValidationError
from scripted_server import Delay, Drop, Malformed, Reply, ScriptedServer, Status

from agent.openai_teacher import OpenAITeacher
from agent.teacher import TeacherError
from agent.teacher_config import TeacherConfig

USER = [{"role": "user", "content": "hello"}]


def make_teacher(url: str, **overrides: object) -> OpenAITeacher:
    fields: dict[str, object] = {
        "kind": "openai",
        "base_url": url,
        "model": "Qwen/Qwen3-VL-4B-Instruct",
        "timeout_s": 0.5,
        "max_attempts": 3,
        "retry_wait_s": 0.01,
        "retry_wait_max_s": 0.02,
        "max_malformed": 1,
    }
    fields.update(overrides)
    return OpenAITeacher(TeacherConfig(**fields))  # type: ignore[arg-type]


def test_tool_calls_images_and_tools_reach_the_endpoint() -> None:
    png = base64.b64encode(b"\x89PNG fake bytes").decode()
    messages = [
        {"role": "system", "content": "be a teacher"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "first frame"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}},
            ],
        },
    ]
    tools = [
        {
            "type": "function",
            "function": {
                "name": "optimize",
                "description": "run steps",
                "parameters": {"type": "object", "properties": {"steps": {"type": "integer"}}},
            },
        }
    ]
    with ScriptedServer([Reply("thinking", [("optimize", {"steps": 4})])]) as server:
        reply = make_teacher(server.base_url).reply(messages, tools, budget_s=10)
    assert reply.content == "thinking"
    assert [(c.name, c.arguments) for c in reply.tool_calls] == [("optimize", '{"steps": 4}')]
    assert reply.prompt_tokens == 10
    sent = server.requests[0]
    assert sent["model"] == "Qwen/Qwen3-VL-4B-Instruct"
    assert sent["tools"][0]["function"]["name"] == "optimize"
    part = sent["messages"][1]["content"][1]
    assert part["image_url"]["url"].startswith("data:image/png;base64,")


def test_api_key_comes_from_the_named_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-secret-123")
    with ScriptedServer([Reply("ok")]) as server:
        teacher = make_teacher(server.base_url, api_key_env="TEST_TEACHER_KEY")
        teacher.reply(USER, [], budget_s=5)
    assert server.headers[0]["authorization"] == "Bearer sk-secret-123"
    assert "sk-secret" not in teacher.config.model_dump_json()
    assert "sk-secret" not in teacher.name


def test_transient_faults_are_retried_until_a_reply() -> None:
    script = [Status(500), Drop(), Status(503), Reply("finally")]
    with ScriptedServer(script) as server:
        reply = make_teacher(server.base_url, max_attempts=4).reply(USER, [], budget_s=10)
    assert reply.content == "finally"
    assert reply.attempts == 4
    assert len(server.requests) == 4


def test_retries_are_bounded_by_attempts() -> None:
    with ScriptedServer([Status(500)] * 10) as server, pytest.raises(TeacherError) as err:
        make_teacher(server.base_url, max_attempts=3).reply(USER, [], budget_s=10)
    assert err.value.kind == "http_status"
    assert "500" in str(err.value)
    assert len(server.requests) == 3


def test_timeouts_are_retried_and_bounded_by_the_wall_clock_budget() -> None:
    # Every answer comes after 5 s; the client waits 0.5 s per attempt, and the
    # turn has 1.2 s in all: it must give up in about that time, not 5 s x attempts.
    with ScriptedServer([Delay(5.0)] * 10) as server:
        teacher = make_teacher(server.base_url, max_attempts=10, timeout_s=0.5)
        start = time.monotonic()
        with pytest.raises(TeacherError) as err:
            teacher.reply(USER, [], budget_s=1.2)
        took = time.monotonic() - start
    assert err.value.kind in {"unreachable", "budget"}
    assert took < 2.5
    assert 2 <= len(server.requests) <= 4


def test_a_late_reply_within_the_timeout_is_accepted() -> None:
    with ScriptedServer([Delay(0.1, Reply("slow but fine"))]) as server:
        reply = make_teacher(server.base_url, timeout_s=2).reply(USER, [], budget_s=5)
    assert reply.content == "slow but fine"


def test_malformed_bodies_are_retried_a_bounded_number_of_times() -> None:
    with ScriptedServer([Malformed(), Reply("ok")]) as server:
        assert make_teacher(server.base_url).reply(USER, [], budget_s=5).content == "ok"
    script = [Malformed(), Malformed('{"choices": []}'), Reply("late")]
    with ScriptedServer(script) as server, pytest.raises(TeacherError) as err:
        make_teacher(server.base_url, max_malformed=1).reply(USER, [], budget_s=5)
    assert err.value.kind == "malformed"
    assert len(server.requests) == 2


def test_client_errors_are_not_retried() -> None:
    script = [Status(400, "context too long"), Reply("never")]
    with ScriptedServer(script) as server, pytest.raises(TeacherError) as err:
        make_teacher(server.base_url).reply(USER, [], budget_s=5)
    assert err.value.kind == "http_status"
    assert "400" in str(err.value)
    assert len(server.requests) == 1
    with (
        ScriptedServer([Status(401, "bad key")]) as server,
        pytest.raises(TeacherError, match="api_key_env"),
    ):
        make_teacher(server.base_url).reply(USER, [], budget_s=5)


@pytest.mark.parametrize(
    ("message", "hint"),
    [
        (
            "This model's maximum context length is 16384 tokens. However, you requested "
            "18002 tokens (15954 in the messages, 2048 in the completion).",
            "--max-model-len",
        ),
        ("At most 8 image(s) may be provided in one request.", "teacher.max_images"),
        (
            "You set image=8 (or defaulted to 1) in `--limit-mm-per-prompt`, but passed 9 "
            "image items in the same prompt.",
            "teacher.max_images",
        ),
    ],
)
def test_a_request_the_server_cannot_take_says_which_setting_to_change(
    message: str, hint: str
) -> None:
    with ScriptedServer([Status(400, message)]) as server, pytest.raises(TeacherError) as err:
        make_teacher(server.base_url).reply(USER, [], budget_s=5)
    assert err.value.kind == "http_status"
    assert hint in str(err.value)
    assert len(server.requests) == 1


def test_connection_refused_is_unreachable() -> None:
    with ScriptedServer() as server:
        url = server.base_url  # the port is closed once the server stops
    with pytest.raises(TeacherError) as err:
        make_teacher(url, max_attempts=2).reply(USER, [], budget_s=5)
    assert err.value.kind == "unreachable"


def test_a_one_megabyte_reply_is_cut_before_it_enters_history() -> None:
    huge = "x" * 1_000_000
    with ScriptedServer([Reply(huge)]) as server:
        reply = make_teacher(server.base_url, max_reply_chars=5000).reply(USER, [], budget_s=10)
    assert len(reply.content) < 5100
    assert reply.content.endswith("characters cut]")


def test_openai_kind_without_url_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match="base_url"):
        TeacherConfig(kind="openai")
    with pytest.raises(ValidationError, match="http"):
        TeacherConfig(kind="openai", base_url="localhost:8000/v1")
    with pytest.raises(ValidationError, match="extra"):
        TeacherConfig(kind="openai", base_url="http://x/v1", api_key="sk-inline")  # type: ignore[call-arg]
