"""Mini-world task suite: procedural video-reasoning tasks with independent rule checkers.

    from evals.tasks import get_task, check, perturb, iter_split
    task = get_task("mini/maze/12")          # 32 px, 17 frames
    result = check(task, task.solution)      # CheckResult(score=1.0, passed=True, ...)

See docs/mini-world.md for the families, palette, splits and criteria.
"""

from evals.tasks.base import CheckResult, NoCheckerError, Task, TaskFamily, TaskIdError
from evals.tasks.registry import (
    FAMILIES,
    check,
    get_task,
    has_checker,
    iter_split,
    parse_task_id,
    perturb,
    resolve_families,
)
from evals.tasks.splits import SPLITS, layout_split, split_of_seed

__all__ = [
    "FAMILIES",
    "SPLITS",
    "CheckResult",
    "NoCheckerError",
    "Task",
    "TaskFamily",
    "TaskIdError",
    "check",
    "get_task",
    "has_checker",
    "iter_split",
    "layout_split",
    "parse_task_id",
    "perturb",
    "resolve_families",
    "split_of_seed",
]
