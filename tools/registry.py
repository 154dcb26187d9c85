"""The teacher's tools by name, their schemas, and the one entry point that calls them.

`call_tool` turns whatever the teacher wrote into either a result or a
`ToolError` whose message tells the teacher what to change: an unknown tool,
arguments that are not a JSON object, a `../` or absolute path anywhere in the
arguments, or arguments that fail the tool's schema. Anything else a tool raises
is our bug and propagates.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from reasoner.spec import RewardSpec, explain_validation_error
from tools.base import Tool, ToolError, ToolResult
from tools.context import RunContext
from tools.finish import Finish
from tools.inspect_frames import InspectFrames
from tools.optimize import Optimize
from tools.paths import PathRefused, refuse_path_escapes
from tools.revise_reward_spec import ReviseRewardSpec
from tools.verify import Verify
from tools.write_reward_spec import WriteRewardSpec

TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        InspectFrames(),
        WriteRewardSpec(),
        ReviseRewardSpec(),
        Optimize(),
        Verify(),
        Finish(),
    )
}

MAX_ARGUMENT_CHARS = 64_000
"""Longer argument text is refused unread (a spec is a few kB at most)."""


def tool_schemas() -> list[dict[str, Any]]:
    """The `tools=` list for an OpenAI-compatible chat request."""
    return [tool.schema() for tool in TOOLS.values()]


def _explain(err: ValidationError, tool: Tool) -> str:
    if tool.Args is RewardSpec:
        return explain_validation_error(err)
    lines = []
    for item in err.errors(include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "(arguments)"
        reason = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            reason = "unknown argument; remove it"
        lines.append(f"- {where}: {reason}")
    fields = ", ".join(tool.Args.model_fields)
    return f"invalid arguments for {tool.name} (it takes: {fields}):\n" + "\n".join(lines)


def parse_arguments(name: str, raw: str) -> tuple[Tool, Any]:
    """Validate a tool call as the teacher wrote it; `ToolError` says what is wrong."""
    tool = TOOLS.get(name)
    if tool is None:
        raise ToolError(f"there is no tool {name!r}; the tools are: {', '.join(TOOLS)}")
    if len(raw) > MAX_ARGUMENT_CHARS:
        raise ToolError(
            f"the arguments are {len(raw)} characters long; the limit is {MAX_ARGUMENT_CHARS}"
        )
    try:
        parsed = json.loads(raw) if raw.strip() else {}
    except json.JSONDecodeError as err:
        raise ToolError(
            f"the arguments of {name} are not valid JSON ({err.msg} at character {err.pos}); "
            "send one JSON object that matches the tool's schema"
        ) from None
    if not isinstance(parsed, dict):
        raise ToolError(
            f"the arguments of {name} must be a JSON object, got {type(parsed).__name__}"
        )
    try:
        refuse_path_escapes(parsed)
    except PathRefused as err:
        raise ToolError(str(err)) from None
    try:
        return tool, tool.Args.model_validate(parsed)
    except ValidationError as err:
        raise ToolError(_explain(err, tool)) from None


def call_tool(ctx: RunContext, name: str, raw_arguments: str) -> ToolResult:
    """Run one tool call; teacher mistakes raise `ToolError`, our bugs propagate."""
    tool, args = parse_arguments(name, raw_arguments)
    return tool.run(ctx, args)
