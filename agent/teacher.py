"""The teacher interface: what the graph asks a teacher, and what comes back.

A teacher reads the conversation (OpenAI chat format, images as data-URL parts)
and the tool schemas, and answers with text and/or tool calls. Two teachers
implement it: `OpenAITeacher` (any OpenAI-compatible endpoint, e.g. vLLM) and
`OfflineTeacher` (a documented policy that needs no model). The graph has one
code path for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from reasoner.cost import TeacherUsage

Message = dict[str, Any]
"""One chat message in OpenAI format (`role`, `content`, optional `tool_calls`)."""


class ToolCall(BaseModel):
    """A tool call as the teacher wrote it; `arguments` is the raw JSON text, unparsed."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Identifier the tool result must quote back.")
    name: str = Field(description="Name of the tool the teacher asked for.")
    arguments: str = Field(description="Arguments as the raw JSON text the teacher wrote.")


class TeacherReply(BaseModel):
    """One teacher turn."""

    model_config = ConfigDict(extra="forbid")

    content: str = Field(default="", description="Free text of the turn (may be empty).")
    tool_calls: list[ToolCall] = Field(default_factory=list, description="Tool calls, in order.")
    prompt_tokens: int = Field(default=0, ge=0, description="Prompt tokens the endpoint billed.")
    completion_tokens: int = Field(default=0, ge=0, description="Completion tokens billed.")
    attempts: int = Field(default=1, ge=1, description="HTTP attempts this turn took.")


class TeacherError(RuntimeError):
    """The teacher could not give a usable turn after its bounded retries.

    `kind` names the cause so the run's exit can say it: `unreachable` (connection
    refused or dropped, timeouts), `http_status` (an error status that retrying does
    not fix, or 5xx after all retries), `malformed` (the endpoint kept answering
    something that is not a chat completion), `budget` (no wall-clock left to wait).
    """

    def __init__(
        self,
        kind: Literal["unreachable", "http_status", "malformed", "budget"],
        message: str,
    ) -> None:
        super().__init__(message)
        self.kind = kind


class Teacher(Protocol):
    """Anything that can take a turn in the conversation."""

    @property
    def name(self) -> str:
        """Short description for traces (model name, never a key)."""
        ...

    @property
    def usage(self) -> TeacherUsage:
        """Running totals of turns and tokens since the teacher was made."""
        ...

    def reply(
        self, messages: Sequence[Message], tools: Sequence[dict[str, Any]], budget_s: float
    ) -> TeacherReply:
        """Answer the conversation so far, within `budget_s` seconds including retries.

        Raises `TeacherError` when no usable reply can be had in bounded retries.
        """
        ...
