"""What a tool is: a name, a description, typed arguments and a `run` function.

A tool declares everything a model needs in one place: the description and the
pydantic argument model (whose field descriptions become the JSON schema the
teacher reads). `ToolError` is for the teacher's mistakes (an unknown video id,
optimizing before a spec exists): the graph returns its message to the teacher
as the tool result. Any other exception is our bug and propagates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from tools.context import RunContext


class ToolError(ValueError):
    """The teacher's call cannot be carried out; the message tells it what to change."""


class ImageOut(BaseModel):
    """An image a tool shows the teacher, saved in the run folder."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Path relative to the run folder.")
    caption: str = Field(description="What the image is (video id, frame index, time).")


class FinishDecision(BaseModel):
    """The teacher's closing decision, as recorded by the `finish` tool."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["accept", "give_up"]
    video: str = Field(description="Video id the run ends with, or 'best' / 'current'.")
    reason: str


class ToolResult(BaseModel):
    """What a tool returns: data for the teacher, images, and effects on the run."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(description="JSON-ready result the teacher reads.")
    images: list[ImageOut] = Field(default_factory=list)
    steps: int = Field(default=0, ge=0, description="LoRA steps this call used.")
    spec: dict[str, Any] | None = Field(
        default=None, description="A new spec that became current (validated, JSON form)."
    )
    burst: dict[str, Any] | None = Field(default=None, description="Optimization burst record.")
    verification: dict[str, Any] | None = Field(default=None, description="Verify record.")
    videos: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Videos this call produced, by id."
    )
    session_file: str | None = Field(
        default=None, description="Saved optimizer state after this call (run-relative)."
    )
    finish: FinishDecision | None = None


class Tool:
    """Base of the teacher's tools; subclasses set the class attributes and `run`."""

    name: ClassVar[str]
    description: ClassVar[str]
    Args: ClassVar[type[BaseModel]]

    def run(self, ctx: RunContext, args: Any) -> ToolResult:
        raise NotImplementedError

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The OpenAI `tools=` entry: a function with a JSON-schema for its arguments."""
        parameters = cls.Args.model_json_schema()
        parameters.pop("title", None)
        return {
            "type": "function",
            "function": {
                "name": cls.name,
                "description": cls.description,
                "parameters": parameters,
            },
        }
