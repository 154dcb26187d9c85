"""Core types of the mini-world suite: a task, a checker's verdict, a task family.

A family turns a seed into a `Task` (first frame, instruction, solution video,
hidden ground truth) and scores any video of that task with a rule checker
that reads only the video's pixels and the hidden ground truth.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from evals.tasks.splits import layout_split, split_of_seed
from reasoner.errors import ConfigError

MAX_LAYOUT_DRAWS = 10_000


class TaskIdError(ValueError):
    """A task id that names no task; the message says which ids exist."""


class NoCheckerError(LookupError):
    """The task has no mini-world rule checker (e.g. it was read from a VBVR folder)."""


@dataclass(frozen=True, eq=False)
class Task:
    """One task: what a solver sees (instruction, first frame) and what only a checker sees.

    `hidden` is the ground truth for the checker (layout, solution path, colours)
    and must never reach a teacher. For mini-world tasks it is plain JSON data.
    Arrays are made read-only: a task is shared (cached) and must not change.
    """

    task_id: str
    family: str
    seed: int
    instruction: str
    first_frame: np.ndarray = field(repr=False)
    num_frames: int
    size: int
    solution: np.ndarray | None = field(repr=False)
    hidden: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        frame = self.first_frame
        if not (
            isinstance(frame, np.ndarray)
            and frame.dtype == np.uint8
            and frame.shape == (self.size, self.size, 3)
        ):
            raise ValueError(
                f"task {self.task_id}: first_frame must be uint8 ({self.size}, {self.size}, 3), "
                f"got {getattr(frame, 'dtype', type(frame).__name__)} "
                f"{getattr(frame, 'shape', '')}"
            )
        frame.setflags(write=False)
        if self.solution is not None:
            expected = (self.num_frames, self.size, self.size, 3)
            if self.solution.dtype != np.uint8 or self.solution.shape != expected:
                raise ValueError(
                    f"task {self.task_id}: solution must be uint8 {expected}, "
                    f"got {self.solution.dtype} {self.solution.shape}"
                )
            self.solution.setflags(write=False)


@dataclass
class CheckResult:
    """A checker's verdict on one video.

    `criteria` maps each sub-criterion to a value in [0, 1]; `score` is their
    weighted sum; `passed` holds only when every criterion is fully met;
    `reason` says what failed (or why the video could not be scored at all).
    """

    score: float
    passed: bool
    criteria: dict[str, float]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def renderable_num_frames(num_frames: object) -> bool:
    """True for a frame count the families render: 4k+1 with k >= 1."""
    return isinstance(num_frames, int) and num_frames >= 5 and (num_frames - 1) % 4 == 0


def check_frame_settings(size: int, num_frames: int) -> None:
    """Reject frame sizes and counts the families cannot render, saying what works."""
    if not isinstance(size, int) or size % 8 or not 16 <= size <= 512:
        raise ConfigError(f"size={size!r}: use a multiple of 8 between 16 and 512 (default 32)")
    if not renderable_num_frames(num_frames):
        raise ConfigError(
            f"num_frames={num_frames!r}: use 4k+1 frames with k >= 1, e.g. 5, 9, 17 (default 17)"
        )


def video_problem(video: object, task: Task) -> str | None:
    """Why `video` cannot be scored for `task`, or None when it has the right form."""
    if not isinstance(video, np.ndarray):
        return (
            f"video is a {type(video).__name__}; expected a uint8 numpy array (F, H, W, 3) "
            "(convert a tensor with evals.video_io.to_uint8)"
        )
    if video.dtype != np.uint8:
        return f"video has dtype {video.dtype}; expected uint8 in [0, 255]"
    if video.ndim != 4 or video.shape[-1] != 3:
        return f"video has shape {video.shape}; expected (frames, height, width, 3)"
    frames, height, width, _ = video.shape
    if (height, width) != (task.size, task.size):
        return f"video frames are {height}x{width}; task {task.task_id} is {task.size}x{task.size}"
    if frames != task.num_frames:
        return f"video has {frames} frames; task {task.task_id} has {task.num_frames}"
    return None


class TaskFamily(ABC):
    """A kind of procedural task: a generator, a rule checker and rule-breaking variants.

    Subclasses fill in the layout sampler, the instruction writer, the renderer
    (solution and perturbed videos) and the checker; this base class owns the
    parts every family shares: seeding, split membership, input validation and
    turning criteria into a score.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    weights: ClassVar[dict[str, float]]
    """Criterion name -> weight in the score; the weights sum to 1."""
    perturbations: ClassVar[dict[str, str]]
    """Rule-breaking video kinds `perturb` can make -> what each one does."""
    derived_keys: ClassVar[tuple[str, ...]]
    """Keys `complete_hidden` adds to the layout (pixel geometry and the like)."""

    # -- generation ---------------------------------------------------------------

    def generate(self, seed: int, size: int = 32, num_frames: int = 17) -> Task:
        """The task of this family for `seed`, rendered at `size` px and `num_frames`."""
        check_frame_settings(size, num_frames)
        if not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed={seed!r}: use a non-negative integer")
        rng = np.random.default_rng(seed)
        wanted = split_of_seed(seed)
        for _ in range(MAX_LAYOUT_DRAWS):
            layout = self.sample_layout(rng)
            if layout_split(layout) == wanted:
                break
        else:  # 10% of layouts belong to each held-out split: this never runs out
            raise RuntimeError(f"{self.name}: no {wanted} layout in {MAX_LAYOUT_DRAWS} draws")
        instruction = self.write_instruction(layout, rng)
        hidden = self.complete_hidden(layout, size, num_frames)
        solution = self.render(hidden, size, num_frames)
        return Task(
            task_id=f"mini/{self.name}/{seed}",
            family=self.name,
            seed=seed,
            instruction=instruction,
            first_frame=solution[0].copy(),
            num_frames=num_frames,
            size=size,
            solution=solution,
            hidden=hidden,
        )

    @abstractmethod
    def sample_layout(self, rng: np.random.Generator) -> dict[str, Any]:
        """A random size-independent layout (JSON data): positions, colours, solution plan."""

    @abstractmethod
    def write_instruction(self, layout: dict[str, Any], rng: np.random.Generator) -> str:
        """The natural-language instruction: names colours, the goal and the rule."""

    @abstractmethod
    def complete_hidden(self, layout: dict[str, Any], size: int, num_frames: int) -> dict:
        """The checker's ground truth: the layout plus its pixel geometry at this size."""

    def layout_of(self, hidden: dict[str, Any]) -> dict[str, Any]:
        """The size-independent layout inside a task's hidden ground truth."""
        return {k: v for k, v in hidden.items() if k not in self.derived_keys}

    @abstractmethod
    def render(
        self,
        hidden: dict[str, Any],
        size: int,
        num_frames: int,
        kind: str = "solution",
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        """The solution video (kind="solution") or a rule-breaking variant of it."""

    # -- rule-breaking variants ---------------------------------------------------

    def perturb(self, task: Task, kind: str, rng: np.random.Generator | int) -> np.ndarray:
        """A video of `task` that breaks it in the way `kind` names (see `perturbations`)."""
        if kind not in self.perturbations:
            raise ValueError(
                f"{self.name} has no perturbation {kind!r}; "
                f"choose one of {', '.join(self.perturbations)}"
            )
        self._require_own(task)
        if kind == "frozen":  # every family: the first frame, held still
            return np.repeat(task.first_frame[None], task.num_frames, axis=0)
        return self.render(
            task.hidden, task.size, task.num_frames, kind=kind, rng=np.random.default_rng(rng)
        )

    # -- checking -----------------------------------------------------------------

    def check(self, video: np.ndarray, task: Task) -> CheckResult:
        """Score `video` for `task`; never raises on a bad video (score 0 and the reason)."""
        self._require_own(task)
        problem = video_problem(video, task)
        if problem is not None:
            return CheckResult(0.0, False, dict.fromkeys(self.weights, 0.0), problem)
        criteria, notes = self.measure(video, task)
        if set(criteria) != set(self.weights):
            raise AssertionError(f"{self.name} checker returned {sorted(criteria)}")
        score = math.fsum(self.weights[k] * criteria[k] for k in self.weights)
        score = min(max(round(score, 6), 0.0), 1.0)
        passed = all(value >= 1.0 for value in criteria.values())
        return CheckResult(score, passed, criteria, "; ".join(notes) or "all criteria met")

    @abstractmethod
    def measure(self, video: np.ndarray, task: Task) -> tuple[dict[str, float], list[str]]:
        """Criterion values in [0, 1] for a well-formed video, and a note per shortfall."""

    def _require_own(self, task: Task) -> None:
        if task.family != self.name:
            raise ValueError(f"task {task.task_id} belongs to {task.family!r}, not {self.name!r}")
