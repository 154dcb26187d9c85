"""`inspect_frames`: show the teacher frames of a video of this run, with a few numbers."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tools.base import ImageOut, Tool, ToolError, ToolResult
from tools.context import RunContext


class InspectFramesArgs(BaseModel):
    """Which frames of which video to look at."""

    model_config = ConfigDict(extra="forbid")

    video: str = Field(
        max_length=40,
        description=(
            "Id of a video of this run, as given in an earlier tool result: 'first_frame', "
            "'preview-<n>' (from optimize) or 'full-<n>' (from verify)."
        ),
    )
    frames: list[int] | None = Field(
        default=None,
        max_length=16,
        description=(
            "Frame indices, 0 = first; negative counts from the end (-1 = last). "
            "Give `frames` or `times`, not both; neither gives 4 evenly spaced frames."
        ),
    )
    times: list[float] | None = Field(
        default=None,
        max_length=16,
        description="Positions in the video from 0.0 (start) to 1.0 (end), e.g. [0, 0.5, 1].",
    )

    @model_validator(mode="after")
    def _one_selector(self) -> InspectFramesArgs:
        if self.frames is not None and self.times is not None:
            raise ValueError("give either `frames` or `times`, not both")
        if self.times is not None and any(not 0.0 <= t <= 1.0 for t in self.times):
            raise ValueError("every entry of `times` must lie in [0, 1]")
        return self


class InspectFrames(Tool):
    name = "inspect_frames"
    description = (
        "Look at frames of a video produced in this run. Returns the frames as images, and "
        "for each frame how much it differs from the first frame and from the previous frame "
        "(mean absolute pixel change, 0-1): large jumps hint at teleporting or flicker."
    )
    Args = InspectFramesArgs

    def run(self, ctx: RunContext, args: InspectFramesArgs) -> ToolResult:
        video = ctx.video(args.video)
        count = video.shape[0]
        if args.frames is not None:
            bad = [i for i in args.frames if not -count <= i < count]
            if bad:
                raise ToolError(
                    f"frame indices {bad} are outside video {args.video!r}, which has {count} "
                    f"frames (valid: 0..{count - 1}, or -1..-{count} from the end)"
                )
            indices = [i % count for i in args.frames]
        elif args.times is not None:
            indices = [round(t * (count - 1)) for t in args.times]
        else:
            indices = sorted({round(i * (count - 1) / 3) for i in range(4)})
        indices = list(dict.fromkeys(indices))  # keep order, drop repeats
        limit = ctx.settings.max_inspect_frames
        if len(indices) > limit:
            raise ToolError(f"ask for at most {limit} frames per call (asked {len(indices)})")

        first = video[0].astype("float32")
        rows, images = [], []
        for i in indices:
            frame = video[i].astype("float32")
            row = {
                "frame": i,
                "time": round(i / max(count - 1, 1), 3),
                "change_from_first": round(float(abs(frame - first).mean() / 255.0), 4),
            }
            if i > 0:
                previous = video[i - 1].astype("float32")
                row["change_from_previous"] = round(float(abs(frame - previous).mean() / 255.0), 4)
            rows.append(row)
            path = ctx.save_image(f"{args.video}_f{i:03d}", video[i])
            images.append(ImageOut(path=path, caption=f"{args.video} frame {i}"))
        data = {"video": args.video, "num_frames": count, "frames": rows}
        return ToolResult(data=data, images=images)
