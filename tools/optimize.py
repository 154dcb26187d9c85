"""`optimize`: a burst of LoRA gradient steps against the current spec.

Steps run one at a time (bursts of 1+1+1 equal a run of 3 in the optimizer),
so the wall-clock budget is honoured between steps. The burst ends early when
the loss reaches tau or the optimizer stops for another reason. Afterwards the
whole optimizer state is saved in the run folder, so a killed run resumes here.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from reasoner.frames import uniform_indices
from tools.base import ImageOut, Tool, ToolError, ToolResult
from tools.context import RunContext, to_uint8


class StepBudgetSpent(Exception):
    """The teacher asked for LoRA steps after the run's step budget was used up.

    Not a teacher mistake to correct: it ends the run (exit `budget_steps`).
    """


class OptimizeArgs(BaseModel):
    """How many LoRA steps to run now."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(
        ge=1,
        le=100,
        description=(
            "LoRA gradient steps in this burst (typically 4-10). The burst stops early if the "
            "loss falls to tau. Bursts longer than the per-call limit are shortened."
        ),
    )


def term_rows(terms: Any) -> list[dict[str, Any]]:
    """Compact per-term numbers for the teacher: loss, P(Yes), pass, and a check's detail.

    Takes the optimizer's `TermRecord`s or the reward's `TermResult`s (tensor losses).
    """
    rows = []
    for t in terms:
        row: dict[str, Any] = {"name": t.name, "role": t.role, "loss": round(float(t.loss), 4)}
        if t.p_yes is not None:
            row["p_yes"] = round(float(t.p_yes), 3)
        if t.passed is not None:
            row["passed"] = bool(t.passed)
        detail = getattr(t, "detail", None)
        if detail:
            row["detail"] = detail
        rows.append(row)
    return rows


class Optimize(Tool):
    name = "optimize"
    description = (
        "Run a burst of LoRA gradient steps on the video model against the current reward "
        "spec. Returns the loss after each step, the loss and P(Yes) of every query and check "
        "on the latest iterate, the steps left in the budget, and the id of a preview video "
        "(fast decoder) with a few of its frames as images."
    )
    Args = OptimizeArgs

    def run(self, ctx: RunContext, args: OptimizeArgs) -> ToolResult:
        spec, _ = ctx.require_spec()
        settings = ctx.settings
        left = settings.max_lora_steps - ctx.lora_steps
        if left <= 0:
            raise StepBudgetSpent(f"all {settings.max_lora_steps} LoRA steps are used")
        steps = min(args.steps, settings.max_burst, left)
        session = ctx.ensure_session()
        if session.done:
            raise ToolError(
                f"the optimizer has stopped ({session.stop_reason}); call verify or finish"
            )

        records = []
        for _ in range(steps):
            if ctx.deadline is not None and time.monotonic() >= ctx.deadline:
                break  # the graph ends the run with budget_wall_clock
            records += session.run(1)
            if session.stop_reason is not None:
                break
        used = sum(r.action in ("step", "skip") for r in records)
        if not records:
            raise ToolError("no time was left to run a step")

        # Preview: the K frames the spec scored on the latest evaluated iterate.
        assert session.last_frames is not None
        preview = to_uint8(session.last_frames)
        last = records[-1]
        preview_id = ctx.next_id("preview")
        video = ctx.add_video(
            preview_id,
            preview,
            kind="preview",
            iterate=last.iterate,
            spec_version=spec.version,
            loss=last.loss,
        )
        shown = uniform_indices(preview.shape[0], settings.preview_frames)
        images = [
            ImageOut(
                path=ctx.save_image(f"{preview_id}_f{i:03d}", preview[i]),
                caption=f"{preview_id} frame {i}",
            )
            for i in shown
        ]

        burst = len([v for v in ctx.videos.values() if v.get("kind") == "preview"])
        best = session.best_index
        data = {
            "steps_run": used,
            "steps_requested": args.steps,
            "steps_used_total": ctx.lora_steps + used,
            "steps_left": left - used,
            "tau": ctx.tto_config.tau,
            "stop_reason": session.stop_reason,
            "losses": [round(r.loss, 4) for r in records],
            "latest": {"iterate": last.iterate, "loss": round(last.loss, 4)},
            "terms": term_rows(last.terms),
            "best": None
            if best is None
            else {
                "iterate": session.history[best].iterate,
                "loss": round(session.history[best].loss, 4),
            },
            "preview": preview_id,
            "preview_frames": len(preview),
        }
        if burst == 1 and session.noise_losses:
            data["noise"] = {
                "picked": session.noise_index,
                "candidates": len(session.noise_losses),
                "losses": [round(x, 4) for x in session.noise_losses],
            }
        if steps < args.steps:
            data["note"] = f"burst shortened to {steps} steps (per-call limit or budget)"
        burst_record = {
            "burst": burst,
            "spec_version": spec.version,
            "requested": args.steps,
            "records": [asdict(r) for r in records],
            "stop_reason": session.stop_reason,
            "preview": preview_id,
        }
        session_file = ctx.save_session(burst)
        return ToolResult(
            data=data,
            images=images,
            steps=used,
            burst=burst_record,
            videos={preview_id: video},
            session_file=session_file,
        )
