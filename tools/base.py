"""What a tool is: a name, a description, typed arguments and a `run` function.

A tool declares everything a model needs in one place: the description and the
pydantic argument model (whose field descriptions become the JSON schema the
teacher reads). `ToolError` is for the teacher's mistakes (an unknown video id,
optimizing before a spec exists): the graph returns its message to the teacher
as the tool result. Any other exception is our bug and propagates.
"""

from __future__ import annotations

import copy
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
    def parameters(cls) -> dict[str, Any]:
        """The JSON schema of the arguments, as the teacher reads it."""
        return without_generated_titles(cls.Args.model_json_schema())

    @classmethod
    def schema(cls) -> dict[str, Any]:
        """The OpenAI `tools=` entry: a function with a JSON-schema for its arguments."""
        return {
            "type": "function",
            "function": {
                "name": cls.name,
                "description": cls.description,
                "parameters": cls.parameters(),
            },
        }


# Keys whose values are data (instances, literals), not schemas: never rewritten.
_DATA_KEYS = frozenset({"examples", "default", "const", "enum"})


def without_generated_titles(schema: Any) -> Any:
    """`schema` without the `title` pydantic derives from every model and field name.

    The tool schemas are rendered into every teacher prompt, and these titles only
    repeat the names beside them (about 6 % of the spec's schema). A field that is
    itself called `title` is kept: under `properties` the keys are field names.
    """
    if isinstance(schema, list):
        return [without_generated_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("properties", "$defs", "patternProperties"):
            out[key] = {name: without_generated_titles(sub) for name, sub in value.items()}
        elif key in _DATA_KEYS:
            out[key] = value
        elif key == "title" and isinstance(value, str):
            continue
        else:
            out[key] = without_generated_titles(value)
    return out


def with_shared_fields_described_once(
    schema: dict[str, Any], array_field: str, fields: tuple[str, ...]
) -> dict[str, Any]:
    """`schema` with `fields` described once, on `array_field`, not in every item kind.

    The spec's eleven check kinds share `name`, `role` and `weight`; their three
    descriptions, repeated per kind, were 3.4k of the 26k characters of the spec's
    schema in every teacher prompt. A field keeps its description when the kinds
    describe it differently, so nothing a kind says of its own is lost.
    """
    out = copy.deepcopy(schema)
    kinds = [
        d for d in out.get("$defs", {}).values() if set(fields) <= set(d.get("properties", {}))
    ]
    if len(kinds) < 2:
        return out
    notes = []
    for name in fields:
        texts = {k["properties"][name].get("description") for k in kinds}
        if len(texts) != 1 or None in texts:
            continue
        for kind in kinds:
            del kind["properties"][name]["description"]
        notes.append(f"`{name}`: {texts.pop().rstrip('.')}")
    if notes:
        carrier = out["properties"][array_field]
        shared = " Every kind also takes " + "; ".join(notes) + "."
        carrier["description"] = carrier.get("description", "").rstrip() + shared
    return out


def outline_referring_to(schema: dict[str, Any], tool_name: str) -> dict[str, Any]:
    """`schema` with its top-level fields kept and every nested model left as `object`.

    For a tool whose arguments are another tool's (revise_reward_spec takes the same
    spec as write_reward_spec): the full spec schema is ~14k characters, and sending
    it twice put ~28k characters of JSON in every teacher prompt, more than a
    16k-token context holds. The teacher reads the full form once, under `tool_name`;
    the arguments are still validated against the full model when the tool is called.
    """

    def outline(node: Any) -> Any:
        if isinstance(node, list):
            return [outline(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node or "oneOf" in node:
            described = node.get("description", "").strip()
            note = f"Same format as in {tool_name}."
            return {"type": "object", "description": f"{described} {note}".strip()}
        return {
            key: value if key in _DATA_KEYS else outline(value)
            for key, value in node.items()
            if key != "$defs"
        }

    return outline(schema)
