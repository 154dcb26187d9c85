"""What a method spent on one task, and the meters that measure it.

Every method (base sample, best-of-N, solver, teacher) reports a `CostRecord`,
so compute can be compared and matched across methods: wall seconds, video
model forward passes (transformer calls), teacher calls and tokens. Records add
up with `+` and `sum(...)`, so a batch's cost is the sum of its tasks' costs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from types import TracebackType
from typing import Protocol

from torch import nn

__all__ = [
    "CostMeter",
    "CostRecord",
    "ForwardCounter",
    "TeacherUsage",
    "UsageReporter",
]


@dataclass(frozen=True)
class TeacherUsage:
    """Cumulative teacher traffic: a teacher client reports its running totals.

    Methods read it before and after their work and keep the difference, so a
    teacher shared by many tasks is billed to the task that used it.
    """

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: TeacherUsage) -> TeacherUsage:
        return TeacherUsage(
            calls=self.calls + other.calls,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )

    def __sub__(self, other: TeacherUsage) -> TeacherUsage:
        return TeacherUsage(
            calls=self.calls - other.calls,
            prompt_tokens=self.prompt_tokens - other.prompt_tokens,
            completion_tokens=self.completion_tokens - other.completion_tokens,
        )


class UsageReporter(Protocol):
    """Anything that talks to a teacher model and keeps count of it."""

    @property
    def usage(self) -> TeacherUsage:
        """Running totals since the object was made (never reset by a method)."""
        ...


@dataclass(frozen=True)
class CostRecord:
    """The cost of one method on one task (or, summed, on a batch)."""

    wall_seconds: float = 0.0
    vgm_forward_passes: int = 0
    """Calls of the video model's transformer, with or without gradients (activation
    checkpointing's recomputations in the backward pass count too: they are real work)."""
    teacher_calls: int = 0
    teacher_prompt_tokens: int = 0
    teacher_completion_tokens: int = 0
    optimization_steps: int = 0
    """Gradient steps applied to a LoRA (0 for sampling-only methods)."""
    samples: int = 0
    """Videos produced by the full sampler and full decoder."""

    @property
    def teacher_tokens(self) -> int:
        return self.teacher_prompt_tokens + self.teacher_completion_tokens

    def __add__(self, other: CostRecord) -> CostRecord:
        if not isinstance(other, CostRecord):
            return NotImplemented
        return CostRecord(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def __radd__(self, other: object) -> CostRecord:
        # `sum(records)` starts from the int 0; any other left operand is a bug.
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    @classmethod
    def from_usage(cls, usage: TeacherUsage) -> CostRecord:
        """A record holding only teacher traffic."""
        return cls(
            teacher_calls=usage.calls,
            teacher_prompt_tokens=usage.prompt_tokens,
            teacher_completion_tokens=usage.completion_tokens,
        )

    def to_dict(self) -> dict[str, float | int]:
        """Plain numbers for traces and reports (JSON-ready)."""
        return {**asdict(self), "teacher_tokens": self.teacher_tokens}


class ForwardCounter:
    """Counts calls of a module while active (a forward pre-hook).

    Counting at the module rather than in the calling code means every path
    that runs the transformer (sampler, one-step prediction, a caller's own
    loop) is billed, and nothing can forget to increment.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.count = 0
        self._handle: object | None = None

    def _hook(self, module: nn.Module, args: object) -> None:
        self.count += 1

    def __enter__(self) -> ForwardCounter:
        if self._handle is not None:
            raise RuntimeError("ForwardCounter is already active; use one `with` block at a time.")
        self._handle = self.module.register_forward_pre_hook(self._hook)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._handle is not None
        self._handle.remove()  # type: ignore[attr-defined]
        self._handle = None


class CostMeter:
    """Measures one block of work: wall clock, transformer calls, teacher traffic.

    >>> with CostMeter(reasoner.transformer, teachers=[rewriter]) as meter:
    ...     video = reasoner.sample(noise, cond)
    >>> meter.record(samples=1)
    """

    def __init__(self, transformer: nn.Module, teachers: Sequence[UsageReporter] = ()) -> None:
        self._counter = ForwardCounter(transformer)
        self._teachers = list(teachers)
        self._start = 0.0
        self._seconds: float | None = None
        self._usage_before: list[TeacherUsage] = []
        self._usage_after: list[TeacherUsage] = []

    def __enter__(self) -> CostMeter:
        self._usage_before = [t.usage for t in self._teachers]
        self._counter.__enter__()
        self._start = time.perf_counter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._seconds = time.perf_counter() - self._start
        self._counter.__exit__(exc_type, exc, tb)
        self._usage_after = [t.usage for t in self._teachers]

    def record(self, *, optimization_steps: int = 0, samples: int = 0) -> CostRecord:
        """The measured cost, plus the counts only the caller knows."""
        if self._seconds is None:
            raise RuntimeError("CostMeter.record() is read after the `with` block has ended.")
        usage = sum(
            (a - b for a, b in zip(self._usage_after, self._usage_before, strict=True)),
            TeacherUsage(),
        )
        return CostRecord(
            wall_seconds=self._seconds,
            vgm_forward_passes=self._counter.count,
            optimization_steps=optimization_steps,
            samples=samples,
        ) + CostRecord.from_usage(usage)
