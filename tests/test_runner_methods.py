"""Real tiny methods for the batch-runner tests, as picklable factories.

The reasoner's own methods (base, best-of-N, the fixed teacher pipeline) on a
tiny pixel-space Wan model at 16 px x 5 frames. Importing this module is cheap
(torch and the models load inside the factories), so a batch driver started
by a test stays light and its workers import the heavy parts themselves.
This module holds no tests.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evals.batch.methods import PlainMethod
    from reasoner.methods import Condition, MethodOutput
    from reasoner.spec import RewardSpec
    from reasoner.video_model import VideoReasoner

SIZE, FRAMES = 16, 5


@functools.cache
def tiny_reasoner() -> VideoReasoner:
    """One tiny TI2V reasoner per process, shared by every method built here."""
    from tiny_wan import tiny_config

    from reasoner.video_model import VideoReasoner

    cfg = tiny_config(
        "tiny-pixel", "wan_ti2v", "identity", height=SIZE, width=SIZE, num_frames=FRAMES
    )
    return VideoReasoner.from_config(cfg)


def corner_spec() -> RewardSpec:
    from reasoner.spec import RewardSpec

    return RewardSpec(
        rationale="the white object must end in the bottom-right corner",
        checks=[
            {
                "kind": "reach_by_end",
                "role": "goal",
                "object": {"color": "white", "tolerance": 0.5},
                "target": {"type": "point", "x": 0.9, "y": 0.9},
            }
        ],
    )


def make_base() -> PlainMethod:
    from evals.batch.methods import PlainMethod
    from reasoner.methods import BaseMethod

    return PlainMethod(BaseMethod(tiny_reasoner()))


def make_best_of_n() -> PlainMethod:
    from evals.batch.methods import PlainMethod
    from reasoner.methods import BestOfN

    return PlainMethod(BestOfN(tiny_reasoner(), n=2, spec=corner_spec(), num_frames=FRAMES))


def make_teacher() -> PlainMethod:
    from evals.batch.methods import PlainMethod
    from reasoner.methods import TeacherMethod
    from reasoner.tto import TTOConfig

    config = TTOConfig(lr=1e-2, max_steps=2, tau=None, num_frames=FRAMES)
    return PlainMethod(TeacherMethod(tiny_reasoner(), config, spec=corner_spec()))


FACTORIES = {"base": make_base, "best_of_n": make_best_of_n, "teacher": make_teacher}


class Flaky:
    """The base method, broken on purpose for chosen instances, once each.

    Real failure mechanisms, raised where they would arise: CUDA's out-of-memory
    error, a teacher endpoint that refuses connections, a video full of NaN. A
    marker file per instance makes each failure happen once, so a retry passes.
    """

    def __init__(self, marker_dir: str, faults: dict[str, str]) -> None:
        from reasoner.methods import BaseMethod

        self.marker_dir, self.faults = Path(marker_dir), faults
        self.base = BaseMethod(tiny_reasoner())

    def __call__(self, cond: Condition, run_dir: Path) -> MethodOutput:
        import torch

        fault = self.faults.get(cond.key)
        marker = self.marker_dir / cond.key.replace("/", "_")
        if fault is None or marker.exists():
            return self.base(cond)
        marker.touch()
        if fault == "oom":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if fault == "teacher":
            import httpx
            import openai

            request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
            raise openai.APIConnectionError(request=request)
        output = self.base(cond)
        output.video = torch.full_like(output.video, float("nan"))
        return output


def make_flaky(marker_dir: str, faults: dict[str, str]) -> Flaky:
    return Flaky(marker_dir, faults)


def eval_config(out: Path, **overrides: Any) -> Any:
    """An `EvalConfig` of the mini test split at this module's frame size."""
    from evals.batch.config import EvalConfig

    data = {
        "suite": "mini:test",
        "methods": ["base", "best_of_n", "teacher"],
        "out": str(out),
        "size": SIZE,
        "num_frames": FRAMES,
        "fsync": False,
        **overrides,
    }
    return EvalConfig.model_validate(data)
