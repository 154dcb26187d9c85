"""`finish`: end the run, accepting a video or giving up with a reason."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.base import FinishDecision, Tool, ToolError, ToolResult
from tools.context import RunContext


class FinishArgs(BaseModel):
    """The closing decision."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["accept", "give_up"] = Field(
        description="'accept': the video solves the task. 'give_up': it cannot be made to."
    )
    video: str = Field(
        default="best",
        max_length=40,
        description=(
            "Which video the run ends with: 'best' (the iterate with the lowest loss under the "
            "current spec), 'current' (the latest LoRA), or the id of a full-quality video "
            "from verify, e.g. 'full-2'. A final full-quality video is made from it."
        ),
    )
    reason: str = Field(
        min_length=1,
        max_length=1000,
        description="One or two sentences: why the video is right, or why you give up.",
    )


class Finish(Tool):
    name = "finish"
    description = (
        "End the run. Accept the current or best video when it solves the task (after a "
        "verify that passes), or give up with a reason. This is the last call of a run."
    )
    Args = FinishArgs

    def run(self, ctx: RunContext, args: FinishArgs) -> ToolResult:
        if args.video not in ("best", "current"):
            record = ctx.videos.get(args.video)
            if record is None or record.get("kind") != "full":
                full = sorted(k for k, v in ctx.videos.items() if v.get("kind") == "full")
                raise ToolError(
                    f"video {args.video!r} is not a full-quality video of this run; use 'best', "
                    f"'current' or one of: {', '.join(full) or 'none yet (call verify)'}"
                )
        decision = FinishDecision(decision=args.decision, video=args.video, reason=args.reason)
        return ToolResult(data={"finished": True, **decision.model_dump()}, finish=decision)
