"""`write_reward_spec`: the teacher's first reward spec for the task.

The arguments ARE the spec (`reasoner.spec.RewardSpec`): its JSON schema is the
tool's schema, so the field descriptions written for a model are what the
teacher reads. Validation and compilation errors go back to the teacher with a
message that says what to fix; the run's spec does not change on an error.
"""

from __future__ import annotations

from typing import Any

from reasoner.spec import RewardSpec, SpecError, explain_validation_error
from tools.base import Tool, ToolError, ToolResult
from tools.context import RunContext


def adopt_spec(ctx: RunContext, spec: RewardSpec, version: int) -> ToolResult:
    """Compile `spec` as version `version` and make it current (shared with revise)."""
    spec = spec.model_copy(update={"version": version})
    try:
        ctx.set_spec(spec)
    except SpecError as err:
        raise ToolError(explain_validation_error(err)) from err
    terms: list[dict[str, Any]] = [
        {"name": name, "role": role, "text": q.text, "window": q.window.describe()}
        for name, role, q in spec.queries()
    ]
    terms += [
        {"name": f"check[{i}]", "role": c.role, "kind": c.kind, "label": c.name}
        for i, c in enumerate(spec.checks)
    ]
    data = {
        "accepted": True,
        "version": version,
        "terms": terms,
        "next": "call optimize to run LoRA steps against this spec",
    }
    return ToolResult(data=data, spec=spec.model_dump(mode="json"))


class WriteRewardSpec(Tool):
    name = "write_reward_spec"
    description = (
        "Write the reward spec for this task: one goal question about the end state, 1-3 "
        "process questions about the trajectory (each phrased so 'Yes' means satisfied), the "
        "weight lam between them, optional held-out verifier questions, and optional precise "
        "checks on colours and positions. Call once; use revise_reward_spec to change it."
    )
    Args = RewardSpec

    def run(self, ctx: RunContext, args: RewardSpec) -> ToolResult:
        if ctx.specs:
            raise ToolError(
                f"a spec exists already (version {len(ctx.specs)}); call revise_reward_spec "
                "with the full new spec to change it"
            )
        return adopt_spec(ctx, args, version=1)
