"""How the batch runner sees a method: a factory per name, called once per worker.

The runner knows methods only through this interface, so `evals/` never imports
the agent: the CLI hands it a mapping `name -> factory`, where the agentic
teacher is one more entry beside the reasoner's baselines.

A factory is a picklable zero-argument callable (a module-level function, a
`functools.partial` of one, or a small dataclass): local workers and Ray tasks
receive it by pickle and build the method where they run, once per process, so
heavy models load once per worker rather than once per instance.

A method is called with the reasoner's `Condition` and a run folder of its own
(`runs/<method>/<instance>/`), where it may write a trace; everything it writes
must stay inside that folder.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # runtime import deferred: reasoner.methods pulls in torch and models
    from reasoner.methods import Condition, Method, MethodOutput

__all__ = ["BatchMethod", "MethodFactory", "MethodSummary", "PlainMethod", "summarize"]


class BatchMethod(Protocol):
    """A method as the batch runs it."""

    def __call__(self, cond: Condition, run_dir: Path) -> MethodOutput: ...


MethodFactory = Callable[[], BatchMethod]
MethodFactories = Mapping[str, MethodFactory]


@dataclass(frozen=True)
class PlainMethod:
    """A reasoner `Method` (which writes no files) as a `BatchMethod`."""

    method: Method

    def __call__(self, cond: Condition, run_dir: Path) -> MethodOutput:
        return self.method(cond)


@dataclass(frozen=True)
class MethodSummary:
    """The few facts of a method's output a results record keeps."""

    steps: int
    exit_reason: str | None
    loss_curve: list[float]
    trace: str | None
    """A trace file the method wrote, relative to its run folder."""


def summarize(output: MethodOutput) -> MethodSummary:
    """Read steps, exit reason, loss curve and trace from a method's output.

    The keys are the ones `reasoner.methods` and the agent put in `details`:
    `exit_reason` (agent) or `stop_reason` (TTO), `history` (a list of steps with
    a `loss`), and `trace` (a path inside the run folder).
    """
    details: dict[str, Any] = output.details
    reason = details.get("exit_reason", details.get("stop_reason"))
    history = details.get("history") or []
    curve = [float(step["loss"]) for step in history if isinstance(step, dict) and "loss" in step]
    trace = details.get("trace")
    return MethodSummary(
        steps=int(output.cost.optimization_steps),
        exit_reason=None if reason is None else str(reason),
        loss_curve=curve,
        trace=None if trace is None else str(trace),
    )
