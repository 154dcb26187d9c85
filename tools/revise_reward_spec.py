"""`revise_reward_spec`: replace the current spec; the LoRA keeps what it learned."""

from __future__ import annotations

from typing import Any

from reasoner.spec import RewardSpec
from tools.base import Tool, ToolError, ToolResult, outline_referring_to
from tools.context import RunContext
from tools.write_reward_spec import adopt_spec


class ReviseRewardSpec(Tool):
    name = "revise_reward_spec"
    description = (
        "Replace the current reward spec with a revised one (send the complete new spec; say "
        "in `rationale` what changed and why). Optimization continues from the current LoRA. "
        "Revise when the loss is low but a verifier or check fails, or the frames show a "
        "question being satisfied in letter but not in intent."
    )
    Args = RewardSpec

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        # The spec's full schema is write_reward_spec's; one copy per prompt is enough.
        return outline_referring_to(super().parameters(), "write_reward_spec")

    def run(self, ctx: RunContext, args: RewardSpec) -> ToolResult:
        if not ctx.specs:
            raise ToolError("there is no spec to revise yet; call write_reward_spec first")
        return adopt_spec(ctx, args, version=len(ctx.specs) + 1)
