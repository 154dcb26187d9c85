"""A teacher behind any OpenAI-compatible chat endpoint (vLLM, or a hosted API).

Transient faults (timeouts, dropped connections, 429, 5xx) are retried by
`tenacity` with exponential backoff, bounded both in attempts and by the
wall-clock budget the graph passes in, so a dead endpoint ends the run with a
named exit instead of hanging. A 200 answer that is not a chat completion is
retried a bounded number of times too. Errors a retry cannot fix (400, 401,
404) fail at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import openai
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)

from agent.teacher import Message, TeacherError, TeacherReply, ToolCall
from agent.teacher_config import TeacherConfig
from reasoner.cost import TeacherUsage

# Placeholder key vLLM accepts when it was started without --api-key.
_NO_KEY = "EMPTY"


def _is_transient(err: BaseException) -> bool:
    """Faults a later attempt can fix: network trouble, overload, server errors."""
    if isinstance(err, openai.APIConnectionError):  # includes APITimeoutError
        return True
    if isinstance(err, openai.APIStatusError):
        return err.status_code == 429 or err.status_code >= 500
    return False


class _Malformed(Exception):
    """The endpoint answered, but not with a usable chat completion."""


class OpenAITeacher:
    """Chat completions with tool calling; images travel as data-URL parts."""

    def __init__(self, config: TeacherConfig) -> None:
        if config.kind != "openai" or not config.base_url:
            raise ValueError("OpenAITeacher needs teacher.kind 'openai' and a base_url")
        self.config = config
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        # Retries are ours (tenacity), so the client's own are switched off.
        self._client = openai.OpenAI(
            base_url=config.base_url,
            api_key=key or _NO_KEY,
            timeout=config.timeout_s,
            max_retries=0,
        )
        self._usage = TeacherUsage()

    @property
    def name(self) -> str:
        return f"openai:{self.config.model}"

    @property
    def usage(self) -> TeacherUsage:
        """Running totals of completed turns and their tokens (a `UsageReporter`)."""
        return self._usage

    def reply(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], budget_s: float
    ) -> TeacherReply:
        cfg = self.config
        deadline = time.monotonic() + budget_s
        attempts = 0
        malformed = 0
        # Never sleep past the deadline: the next attempt then fails with `budget`.
        backoff = wait_exponential(
            multiplier=cfg.retry_wait_s, min=cfg.retry_wait_s, max=cfg.retry_wait_max_s
        )

        def one_attempt() -> TeacherReply:
            nonlocal attempts
            attempts += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise TeacherError("budget", "no wall-clock budget left for a teacher turn")
            try:
                completion = self._client.chat.completions.create(
                    model=cfg.model,
                    messages=list(messages),  # type: ignore[arg-type]
                    tools=list(tools),  # type: ignore[arg-type]
                    tool_choice="auto",
                    temperature=cfg.temperature,
                    max_tokens=cfg.max_tokens,
                    timeout=min(cfg.timeout_s, left),
                )
            except openai.APIResponseValidationError as err:
                raise _Malformed(str(err)) from err
            except ValueError as err:  # body was not JSON at all
                raise _Malformed(str(err)) from err
            return self._parse(completion, attempts)

        while True:
            retrying = Retrying(
                retry=retry_if_exception(_is_transient),
                stop=stop_after_attempt(cfg.max_attempts)
                | stop_after_delay(max(0.0, deadline - time.monotonic())),
                wait=lambda state: min(backoff(state), max(0.0, deadline - time.monotonic())),
                reraise=False,
            )
            try:
                return retrying(one_attempt)
            except _Malformed as err:
                malformed += 1
                if malformed > cfg.max_malformed:
                    raise TeacherError(
                        "malformed",
                        f"endpoint answered {malformed} times with no usable completion: "
                        f"{_short(str(err))}",
                    ) from err
                if time.monotonic() >= deadline:
                    raise TeacherError("budget", "wall-clock budget spent on retries") from err
            except RetryError as err:
                last = err.last_attempt.exception()
                if attempts < cfg.max_attempts:  # stopped by the deadline, not the count
                    raise TeacherError(
                        "budget",
                        f"wall-clock budget spent after {attempts} attempts "
                        f"(last: {_as_teacher_error(last, attempts)})",
                    ) from last
                raise _as_teacher_error(last, attempts) from last
            except openai.APIStatusError as err:  # not transient: 4xx
                raise _as_teacher_error(err, attempts) from err

    def _parse(self, completion: Any, attempts: int) -> TeacherReply:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise _Malformed("completion has no choices")
        message = choices[0].message
        if message is None:
            raise _Malformed("completion choice has no message")
        calls = []
        for i, call in enumerate(message.tool_calls or []):
            function = getattr(call, "function", None)
            if function is None:  # a custom (non-function) tool call: no tool of ours
                calls.append(ToolCall(id=call.id or f"call_{i}", name="", arguments=""))
                continue
            calls.append(
                ToolCall(
                    id=call.id or f"call_{attempts}_{i}",
                    name=function.name or "",
                    arguments=function.arguments or "",
                )
            )
        usage = completion.usage
        content = message.content or ""
        limit = self.config.max_reply_chars
        if len(content) > limit:
            content = content[:limit] + f"\n[... {len(content) - limit} characters cut]"
        reply = TeacherReply(
            content=content,
            tool_calls=calls,
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
            attempts=attempts,
        )
        self._usage = self._usage + TeacherUsage(1, reply.prompt_tokens, reply.completion_tokens)
        return reply


def _as_teacher_error(err: BaseException | None, attempts: int) -> TeacherError:
    if isinstance(err, TeacherError):
        return err
    if isinstance(err, openai.APITimeoutError):
        return TeacherError("unreachable", f"teacher timed out ({attempts} attempts)")
    if isinstance(err, openai.APIConnectionError):
        return TeacherError("unreachable", f"teacher unreachable ({attempts} attempts): {err}")
    if isinstance(err, openai.APIStatusError):
        hint = _status_hint(err.status_code, err.message)
        return TeacherError(
            "http_status",
            f"teacher endpoint answered HTTP {err.status_code} ({attempts} attempts): "
            f"{_short(err.message)}{hint}",
        )
    return TeacherError("unreachable", f"teacher call failed: {err!r}")


def _status_hint(status: int, message: str) -> str:
    """What to change for the HTTP errors a misfit between config and server gives."""
    text = message.lower()
    if status == 401:
        return " (check teacher.api_key_env names a variable holding a valid key)"
    if status == 404:
        return " (check teacher.base_url ends in /v1 and teacher.model is served)"
    if status != 400:
        return ""
    # vLLM's wordings: "maximum context length is N tokens" and, for images,
    # "At most N image(s) may be provided in one request" or "... in
    # `--limit-mm-per-prompt`, but passed M image items in the same prompt".
    if "context length" in text:
        return (
            " (the conversation outgrew the served context: serve with a larger "
            "--max-model-len, or lower teacher.max_tokens, teacher.max_images or "
            "budgets.max_turns)"
        )
    if "image(s) may be provided" in text or "limit-mm-per-prompt" in text:
        return (
            " (set teacher.max_images to at most the server's --limit-mm-per-prompt "
            "image count, or serve with a higher one)"
        )
    return ""


def _short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[:n] + "..."
