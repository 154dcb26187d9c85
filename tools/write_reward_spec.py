"""`write_reward_spec`: the teacher's first reward spec for the task.

The arguments ARE the spec (`reasoner.spec.RewardSpec`): its JSON schema is the
tool's schema, so the field descriptions written for a model are what the
teacher reads. Validation and compilation errors go back to the teacher with a
message that says what to fix; the run's spec does not change on an error.
Fields the setup fixes (`tools.spec_overrides` of the agent config, e.g. lam
for the goal-vs-process ablation) replace the teacher's before compiling, and
the tool result names them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reasoner.spec import RewardSpec, SpecError, explain_validation_error
from tools.base import Tool, ToolError, ToolResult, with_shared_fields_described_once
from tools.context import RunContext


def fix_fields(
    spec: RewardSpec, overrides: Mapping[str, Any], include: str = "all"
) -> tuple[RewardSpec, dict[str, Any]]:
    """`spec` with the fields the setup fixes (`tools.spec_overrides`), and those fields.

    A fixed lam of 1 (goal only) or 0 (process only) keeps one group of terms; a
    spec with no optimized term in that group is refused (`SpecError`) rather
    than quietly optimizing the other group, which is what the spec's own lam
    would do (`reasoner.reward`) and not what the ablation means.
    """
    fixed = {key: value for key, value in overrides.items() if value is not None}
    if not fixed:
        return spec, {}
    spec = spec.model_copy(update=fixed)
    lam = fixed.get("lam")
    if lam in (0.0, 1.0):
        role = "goal" if lam == 1.0 else "process"
        queries = include in ("all", "queries") and (
            spec.goal is not None if role == "goal" else bool(spec.process)
        )
        checks = include in ("all", "checks") and any(c.role == role for c in spec.checks)
        if not (queries or checks):
            kinds = {"all": "question or check", "queries": "question", "checks": "check"}
            raise SpecError(
                f"this setup fixes lam = {lam:g}, so only {role} terms are optimized, but the "
                f"spec has no {role} {kinds.get(include, 'term')} that is optimized here: add one"
            )
    return spec, fixed


def adopt_spec(ctx: RunContext, spec: RewardSpec, version: int) -> ToolResult:
    """Compile `spec` as version `version` and make it current (shared with revise)."""
    spec = spec.model_copy(update={"version": version})
    try:
        include = ctx.reward_options.get("include", "all")
        spec, fixed = fix_fields(spec, ctx.settings.spec_overrides, include)
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
    if fixed:
        data["fixed_by_setup"] = fixed  # the teacher learns its value was replaced
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

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        return with_shared_fields_described_once(
            super().parameters(), "checks", ("name", "role", "weight")
        )

    def run(self, ctx: RunContext, args: RewardSpec) -> ToolResult:
        if ctx.specs:
            raise ToolError(
                f"a spec exists already (version {len(ctx.specs)}); call revise_reward_spec "
                "with the full new spec to change it"
            )
        return adopt_spec(ctx, args, version=1)
