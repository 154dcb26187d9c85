"""Frame windows: which of the K scored frames a query or check looks at.

Kept apart from ``spec.py`` because both the spec and the check vocabulary use it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasoner.errors import ConfigError

WindowKind = Literal["all", "first", "last", "first_n", "last_n", "range"]
_NEEDS_N = {"first_n", "last_n"}


class SpecError(ConfigError):
    """A spec is valid on its own but cannot be applied (e.g. a window outside the video).

    The message is written for the teacher model to fix its call.
    """


class FrameWindow(BaseModel):
    """Which frames of the scored video a query or check looks at."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "all"},
                {"kind": "last"},
                {"kind": "last_n", "n": 4},
                {"kind": "range", "start": 0.25, "end": 0.75},
            ]
        },
    )

    kind: WindowKind = Field(
        "all",
        description=(
            "'all': every frame. 'first' / 'last': the first / last frame only. "
            "'first_n' / 'last_n': the first / last n frames (set n). "
            "'range': frames whose time, as a fraction of the video (0 = first frame, "
            "1 = last frame), lies in [start, end] (set start and end)."
        ),
    )
    n: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="Number of frames, only for 'first_n' and 'last_n'. Must not exceed the "
        "number of frames scored (the tool says how many).",
    )
    start: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Only for 'range': start time as a fraction of the video, 0 to 1.",
    )
    end: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Only for 'range': end time as a fraction of the video, 0 to 1, >= start.",
    )

    @model_validator(mode="before")
    @classmethod
    def _accept_plain_kind(cls, data: Any) -> Any:
        # A model often writes "window": "last"; that is unambiguous, so accept it.
        return {"kind": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _fields_match_kind(self) -> FrameWindow:
        if self.kind in _NEEDS_N:
            if self.n is None:
                raise ValueError(f"window kind '{self.kind}' needs n (how many frames), e.g. 4")
        elif self.n is not None:
            raise ValueError(f"n is only for 'first_n' / 'last_n', not for '{self.kind}'; remove n")
        if self.kind == "range":
            if self.start is None or self.end is None:
                raise ValueError("window kind 'range' needs start and end (fractions 0..1)")
            if self.start > self.end:
                raise ValueError(f"range start={self.start} is after end={self.end}; swap them")
        elif self.start is not None or self.end is not None:
            raise ValueError(f"start/end are only for 'range', not for '{self.kind}'; remove them")
        return self

    def describe(self) -> str:
        """Short human-readable form, for logs and tool results."""
        if self.kind in _NEEDS_N:
            return f"{self.kind}({self.n})"
        if self.kind == "range":
            return f"range({self.start:g}-{self.end:g})"
        return self.kind

    def indices(self, num_frames: int) -> list[int]:
        """Indices into ``num_frames`` frames; raises :class:`SpecError` if outside the video."""
        if num_frames < 1:
            raise ConfigError(f"num_frames must be >= 1, got {num_frames}")
        if self.kind == "all":
            return list(range(num_frames))
        if self.kind == "first":
            return [0]
        if self.kind == "last":
            return [num_frames - 1]
        if self.kind in _NEEDS_N:
            assert self.n is not None  # guaranteed by validation
            if self.n > num_frames:
                raise SpecError(
                    f"window {self.describe()} asks for {self.n} frames but the reward sees only "
                    f"{num_frames}; use n <= {num_frames} (or kind 'all')."
                )
            return (
                list(range(self.n))
                if self.kind == "first_n"
                else list(range(num_frames - self.n, num_frames))
            )
        # range: frame i sits at time i / (K - 1); a one-frame video sits at time 0.
        assert self.start is not None and self.end is not None
        times = [i / (num_frames - 1) if num_frames > 1 else 0.0 for i in range(num_frames)]
        picked = [i for i, t in enumerate(times) if self.start - 1e-9 <= t <= self.end + 1e-9]
        if not picked:
            step = 1 / (num_frames - 1) if num_frames > 1 else 1.0
            raise SpecError(
                f"window {self.describe()} contains no frame: the reward sees {num_frames} frames "
                f"at times 0, {step:.3g}, {2 * step:.3g}, ... 1; widen the range to at least "
                f"{step:.3g}."
            )
        return picked
