"""`verify`: score every query, check and held-out verifier on a full-quality video.

The optimizer sees the fast surrogate decoder's frames; the video the user gets
comes from the full sampler and decoder. Verifying on that video, with verifier
questions the LoRA never trained against, is how the teacher catches a result
that only fools the optimized terms.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from reasoner.frames import sample_frames, uniform_indices
from tools.base import ImageOut, Tool, ToolResult
from tools.context import RunContext, to_uint8
from tools.optimize import term_rows


class VerifyArgs(BaseModel):
    """Which LoRA iterate to render and verify."""

    model_config = ConfigDict(extra="forbid")

    iterate: Literal["best", "current"] = Field(
        default="best",
        description="'best': the iterate with the lowest loss under the current spec; "
        "'current': the latest LoRA.",
    )


class Verify(Tool):
    name = "verify"
    description = (
        "Render the full-quality video (full sampler and decoder) of the best or current LoRA "
        "and score every query, check and verifier on it. Returns pass/fail and P(Yes) per "
        "term, the names of failing terms, and a video id to inspect or to accept in finish."
    )
    Args = VerifyArgs

    def run(self, ctx: RunContext, args: VerifyArgs) -> ToolResult:
        spec, reward = ctx.require_spec()
        video, iterate = ctx.render(args.iterate)  # (F, 3, H, W) in [0, 1]
        frames = sample_frames(video, reward.num_frames)
        with torch.no_grad():
            scored = reward(frames)
            held_out = reward.verify(frames)
        terms = term_rows(scored.terms) + term_rows(held_out.terms)
        failed = [t["name"] for t in terms if t.get("passed") is False]
        loss = float(scored.total)

        uint8 = to_uint8(video)
        video_id = ctx.next_id("full")
        record = ctx.add_video(
            video_id,
            uint8,
            kind="full",
            iterate=iterate,
            spec_version=spec.version,
            loss=loss,
            passed=not failed,
        )
        images = [
            ImageOut(
                path=ctx.save_image(f"{video_id}_f{i:03d}", uint8[i]),
                caption=f"{video_id} frame {i}",
            )
            for i in uniform_indices(uint8.shape[0], ctx.settings.preview_frames)
        ]
        data = {
            "video": video_id,
            "iterate": iterate,
            "spec_version": spec.version,
            "loss": round(loss, 4),
            "tau": ctx.tto_config.tau,
            "passed": not failed,
            "failed": failed,
            "terms": terms,
        }
        verification = {**data, "terms": [dict(t) for t in terms]}
        return ToolResult(
            data=data, images=images, verification=verification, videos={video_id: record}
        )
