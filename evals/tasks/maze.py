"""`maze`: walk a square through a maze's white corridors to the goal square.

A perfect maze of 4 × 4 rooms drawn on 7 × 7 cells (4 px at 32 px) inside a
black outer wall; walls are black cells. Start and goal are rooms 2–4 rooms
apart along the maze (4–8 cell moves) that a straight slide cannot join.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from evals.tasks.geometry import Grid
from evals.tasks.navigation import (
    MAX_MOVES,
    MIN_STRAIGHT_OVERLAP,
    NAVIGATION_PERTURBATIONS,
    GridNavigationFamily,
    reachable,
    shortest_path,
    straight_overlap,
)
from evals.tasks.palette import OBJECT_COLORS

ROOMS = 4
CELLS = 2 * ROOMS - 1

TEMPLATES = (
    "Solve the maze: move the {agent} square through the white corridors to the {goal} "
    "square without crossing any black wall.",
    "Guide the {agent} square along the open paths of the maze until it reaches the {goal} "
    "square. It must never pass through the black walls.",
    "Find the way through the maze and slide the {agent} square to the {goal} square, "
    "staying inside the white corridors.",
    "The {agent} square has to get to the {goal} square in this maze. The walls are black; "
    "do not cross them.",
)
ENDINGS = ("", " The walls do not move.", " Keep the {agent} square whole.")


def carve_maze(rng: np.random.Generator) -> set[tuple[int, int]]:
    """Open cells of a random perfect maze (depth-first carving over the rooms)."""
    start = (int(rng.integers(ROOMS)), int(rng.integers(ROOMS)))
    seen = {start}
    stack = [start]
    open_cells = {(2 * start[0], 2 * start[1])}
    while stack:
        r, c = stack[-1]
        options = [
            (nr, nc)
            for nr, nc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1))
            if 0 <= nr < ROOMS and 0 <= nc < ROOMS and (nr, nc) not in seen
        ]
        if not options:
            stack.pop()
            continue
        nr, nc = options[int(rng.integers(len(options)))]
        seen.add((nr, nc))
        open_cells |= {(2 * nr, 2 * nc), (r + nr, c + nc)}  # the room and the gap to it
        stack.append((nr, nc))
    return open_cells


class Maze(GridNavigationFamily):
    name = "maze"
    description = "walk a square through a maze to the goal square without crossing walls"
    blocked_word = "wall"
    outside_blocked = True
    aliases: ClassVar[dict[str, str]] = {"through_wall": "rule_break"}
    perturbations: ClassVar[dict[str, str]] = {
        **NAVIGATION_PERTURBATIONS,
        "through_wall": "same as rule_break",
    }

    def grid(self, size: int) -> Grid:
        cell = size // (CELLS + 1)
        return Grid(CELLS, CELLS, cell, cell // 2)

    def sample_layout(self, rng: np.random.Generator) -> dict[str, Any]:
        while True:
            open_cells = carve_maze(rng)
            walls = {(r, c) for r in range(CELLS) for c in range(CELLS)} - open_cells
            start = (2 * int(rng.integers(ROOMS)), 2 * int(rng.integers(ROOMS)))
            dist = reachable(CELLS, CELLS, walls, start)
            goals = [
                cell
                for cell, d in sorted(dist.items())
                if cell[0] % 2 == 0
                and cell[1] % 2 == 0
                and 4 <= d <= MAX_MOVES
                and straight_overlap(start, cell, walls) >= MIN_STRAIGHT_OVERLAP
            ]
            if not goals:
                continue
            goal = goals[int(rng.integers(len(goals)))]
            agent, goal_color = rng.choice(len(OBJECT_COLORS), size=2, replace=False)
            return {
                "rows": CELLS,
                "cols": CELLS,
                "blocked": [list(c) for c in sorted(walls)],
                "start": list(start),
                "goal": list(goal),
                "path": [list(c) for c in shortest_path(CELLS, CELLS, walls, start, goal)],
                "agent_color": OBJECT_COLORS[int(agent)],
                "goal_color": OBJECT_COLORS[int(goal_color)],
            }

    def write_instruction(self, layout: dict[str, Any], rng: np.random.Generator) -> str:
        words = {"agent": layout["agent_color"], "goal": layout["goal_color"]}
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        ending = ENDINGS[int(rng.integers(len(ENDINGS)))]
        return (template + ending).format(**words)
