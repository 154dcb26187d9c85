"""`navigate`: slide a square to a goal square on an open grid without touching obstacles.

An 8 × 8 grid (4 px cells at 32 px) with 6–12 black obstacle cells. The straight
slide from start to goal always crosses an obstacle, so the solver has to go
around; the shortest way around is 3–8 moves.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from evals.tasks.geometry import Grid
from evals.tasks.navigation import (
    MAX_MOVES,
    MIN_MOVES,
    MIN_STRAIGHT_OVERLAP,
    NAVIGATION_PERTURBATIONS,
    GridNavigationFamily,
    shortest_path,
    straight_overlap,
)
from evals.tasks.palette import OBJECT_COLORS

ROWS = COLS = 8

TEMPLATES = (
    "Move the {agent} square to the {goal} square without touching any black block.",
    "Guide the {agent} square onto the {goal} square. The black blocks are obstacles: "
    "go around them, never through them.",
    "Slide the {agent} square along a path to the {goal} square, avoiding every black obstacle.",
    "The {agent} square must reach the {goal} square. Do not let it touch the black squares "
    "on the way.",
    "Navigate the {agent} square to the {goal} goal while staying clear of all black obstacles.",
)
ENDINGS = ("", " Keep the {agent} square in one piece.", " Everything else stays where it is.")


class Navigate(GridNavigationFamily):
    name = "navigate"
    description = "slide a square to the goal square around black obstacles"
    blocked_word = "obstacle"
    outside_blocked = False
    aliases: ClassVar[dict[str, str]] = {"through_obstacle": "rule_break"}
    perturbations: ClassVar[dict[str, str]] = {
        **NAVIGATION_PERTURBATIONS,
        "through_obstacle": "same as rule_break",
    }

    def grid(self, size: int) -> Grid:
        return Grid(ROWS, COLS, size // COLS, 0)

    def sample_layout(self, rng: np.random.Generator) -> dict[str, Any]:
        while True:
            count = int(rng.integers(6, 13))
            picks = rng.choice(ROWS * COLS, size=count + 2, replace=False)
            cells = [(int(p) // COLS, int(p) % COLS) for p in picks]
            start, goal, obstacles = cells[0], cells[1], set(cells[2:])
            path = shortest_path(ROWS, COLS, obstacles, start, goal)
            if not path or not MIN_MOVES <= len(path) - 1 <= MAX_MOVES:
                continue
            if straight_overlap(start, goal, obstacles) < MIN_STRAIGHT_OVERLAP:
                continue
            agent, goal_color = rng.choice(len(OBJECT_COLORS), size=2, replace=False)
            return {
                "rows": ROWS,
                "cols": COLS,
                "blocked": [list(c) for c in sorted(obstacles)],
                "start": list(start),
                "goal": list(goal),
                "path": [list(c) for c in path],
                "agent_color": OBJECT_COLORS[int(agent)],
                "goal_color": OBJECT_COLORS[int(goal_color)],
            }

    def write_instruction(self, layout: dict[str, Any], rng: np.random.Generator) -> str:
        words = {"agent": layout["agent_color"], "goal": layout["goal_color"]}
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        ending = ENDINGS[int(rng.integers(len(ENDINGS)))]
        return (template + ending).format(**words)
