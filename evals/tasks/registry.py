"""The family registry, task ids and split iteration."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache

import numpy as np

from evals.tasks.base import CheckResult, NoCheckerError, Task, TaskFamily, TaskIdError
from evals.tasks.maze import Maze
from evals.tasks.navigate import Navigate
from evals.tasks.pairs import Pairs
from evals.tasks.recolor import Recolor
from evals.tasks.splits import SPLITS

FAMILIES: dict[str, TaskFamily] = {
    family.name: family for family in (Navigate(), Maze(), Pairs(), Recolor())
}
"""Every mini-world family by name."""

PREFIX = "mini"


def parse_task_id(task_id: str) -> tuple[str, int]:
    """(family, seed) of an id `mini/<family>/<seed>`; a clear error otherwise."""
    parts = task_id.split("/") if isinstance(task_id, str) else []
    if len(parts) != 3 or parts[0] != PREFIX or not parts[2].isdigit():
        raise TaskIdError(
            f"task id {task_id!r} is not of the form mini/<family>/<seed>, "
            f"e.g. mini/navigate/7; families: {', '.join(FAMILIES)}"
        )
    if parts[1] not in FAMILIES:
        raise TaskIdError(f"task id {task_id!r} names no family; use one of {', '.join(FAMILIES)}")
    return parts[1], int(parts[2])


@lru_cache(maxsize=512)
def get_task(task_id: str, size: int = 32, num_frames: int = 17) -> Task:
    """The task with this id (`mini/<family>/<seed>`), rendered at `size` and `num_frames`."""
    family, seed = parse_task_id(task_id)
    return FAMILIES[family].generate(seed, size=size, num_frames=num_frames)


def resolve_families(names: Iterable[str] | None) -> list[str]:
    """The named families in the given order (all of them for None); an unknown name is
    a TaskIdError that lists the known ones."""
    chosen = list(FAMILIES) if names is None else list(names)
    unknown = [n for n in chosen if n not in FAMILIES]
    if unknown:
        raise TaskIdError(f"unknown families {unknown}; use some of {', '.join(FAMILIES)}")
    return chosen


def iter_split(
    split: str,
    families: Iterable[str] | None = None,
    limit: int | None = None,
    size: int = 32,
    num_frames: int = 17,
) -> Iterator[Task]:
    """Tasks of a split, seed by seed, each seed in every chosen family in turn.

    `limit` caps the number of seeds, i.e. the tasks per family.
    """
    if split not in SPLITS:
        raise TaskIdError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    names = resolve_families(families)
    seeds = SPLITS[split]
    if limit is not None:
        seeds = seeds[: max(limit, 0)]
    for seed in seeds:
        for name in names:
            yield get_task(f"{PREFIX}/{name}/{seed}", size, num_frames)


def has_checker(task: Task) -> bool:
    """Whether a mini-world rule checker can score this task."""
    return task.family in FAMILIES and bool(task.hidden) and "geometry" in task.hidden


def check(task: Task, video: np.ndarray) -> CheckResult:
    """Score a video with the task's rule checker (never raises on a bad video).

    Raises NoCheckerError for a task that has no mini-world checker, such as
    one read from a foreign VBVR question folder.
    """
    if not has_checker(task):
        raise NoCheckerError(
            f"task {task.task_id} has no mini-world rule checker (family {task.family!r}); "
            "score it with its benchmark's own evaluator"
        )
    return FAMILIES[task.family].check(video, task)


def perturb(task: Task, kind: str, rng: np.random.Generator | int) -> np.ndarray:
    """A rule-breaking video of a mini-world task (see each family's `perturbations`)."""
    if not has_checker(task):
        raise NoCheckerError(f"task {task.task_id} is not a mini-world task; cannot perturb it")
    return FAMILIES[task.family].perturb(task, kind, rng)
