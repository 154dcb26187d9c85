"""What the `navigate` and `maze` families share: one square walks a grid to a goal.

A layout is a grid of cells, some blocked (black), a start cell holding the
agent square and a goal cell of another colour. The solution slides the agent
along a shortest free path at constant speed. The rule-breaking variants move
it through blocked cells, stop it early, send it elsewhere, or break it apart.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from evals.tasks.base import Task, TaskFamily
from evals.tasks.geometry import Grid
from evals.tasks.palette import WALL
from evals.tasks.render import Box, blank, compose, fill, point_on_path, progress, split_box

Cell = tuple[int, int]

MIN_MOVES, MAX_MOVES = 3, 8
"""Solution path length in cells: 8 cells of 4 px over 15 moving frames is ~2 px/frame."""

MIN_STRAIGHT_OVERLAP = 0.5
"""A straight slide from start to goal must cover a blocked cell by at least this
fraction of a cell somewhere, so that ignoring the rule visibly breaks it."""


def shortest_path(rows: int, cols: int, blocked: set[Cell], start: Cell, goal: Cell) -> list[Cell]:
    """A shortest 4-connected path of free cells from start to goal ([] if none)."""
    previous: dict[Cell, Cell | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            path = [cell]
            while previous[path[-1]] is not None:
                path.append(previous[path[-1]])  # type: ignore[arg-type]
            return path[::-1]
        r, c = cell
        for nxt in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if (
                0 <= nxt[0] < rows
                and 0 <= nxt[1] < cols
                and nxt not in blocked
                and nxt not in previous
            ):
                previous[nxt] = cell
                queue.append(nxt)
    return []


def reachable(rows: int, cols: int, blocked: set[Cell], start: Cell) -> dict[Cell, int]:
    """Free cells reachable from start, with their distance in moves."""
    dist = {start: 0}
    queue = deque([start])
    while queue:
        r, c = queue.popleft()
        for nxt in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            if 0 <= nxt[0] < rows and 0 <= nxt[1] < cols and nxt not in blocked and nxt not in dist:
                dist[nxt] = dist[(r, c)] + 1
                queue.append(nxt)
    return dist


def straight_overlap(start: Cell, goal: Cell, blocked: Iterable[Cell], samples: int = 64) -> float:
    """Largest fraction of a cell that a unit square sliding straight start→goal covers
    of any single blocked cell."""
    cells = np.array(list(blocked), dtype=float).reshape(1, -1, 2)  # (1, N, 2)
    if cells.size == 0:
        return 0.0
    t = np.linspace(0.0, 1.0, samples)[:, None, None]  # (S, 1, 1)
    pos = np.array(start, dtype=float) + t * (np.array(goal) - np.array(start))  # (S, 1, 2)
    overlap = np.clip(1 - np.abs(cells - pos), 0, None).prod(axis=-1)  # (S, N)
    return float(overlap.max())


def as_cells(items: Iterable[Iterable[int]]) -> list[Cell]:
    return [(int(a), int(b)) for a, b in items]


class GridNavigationFamily(TaskFamily):
    """Base class of the navigation families; subclasses lay out the grid and phrase it."""

    weights: ClassVar[dict[str, float]] = {
        "reached_goal": 0.4,
        "followed_rule": 0.3,
        "object_intact": 0.2,
        "scene_preserved": 0.1,
    }
    blocked_word: ClassVar[str]
    outside_blocked: ClassVar[bool]
    derived_keys: ClassVar[tuple[str, ...]] = ("geometry", "outside_blocked", "blocked_word")
    aliases: ClassVar[dict[str, str]]

    @abstractmethod
    def grid(self, size: int) -> Grid:
        """Pixel geometry of the layout grid at this frame size."""

    # -- generation ---------------------------------------------------------------

    def complete_hidden(self, layout: dict[str, Any], size: int, num_frames: int) -> dict:
        return {
            **layout,
            "geometry": self.grid(size).to_dict(),
            "outside_blocked": self.outside_blocked,
            "blocked_word": self.blocked_word,
        }

    def _static(self, hidden: dict[str, Any], size: int) -> np.ndarray:
        grid = Grid.from_dict(hidden["geometry"])
        frame = blank(size)
        if hidden["outside_blocked"]:
            span = grid.origin + grid.rows * grid.cell
            fill(frame, 0, 0, size, size, WALL)
            fill(frame, grid.origin, grid.origin, span, span, "white")
        for row, col in hidden["blocked"]:
            fill(frame, *grid.rect(row, col), WALL)
        fill(frame, *grid.rect(*hidden["goal"]), hidden["goal_color"])
        return frame

    # -- videos -------------------------------------------------------------------

    def render(
        self,
        hidden: dict[str, Any],
        size: int,
        num_frames: int,
        kind: str = "solution",
        rng: np.random.Generator | None = None,
    ) -> np.ndarray:
        kind = self.aliases.get(kind, kind)
        rng = rng if rng is not None else np.random.default_rng(0)
        grid = Grid.from_dict(hidden["geometry"])
        color = hidden["agent_color"]
        path = as_cells(hidden["path"])
        moves = len(path) - 1
        t = progress(num_frames)
        start, goal = path[0], path[-1]

        def box(pos: tuple[float, float]) -> Box:
            y, x = grid.box_origin(pos[0], pos[1], grid.cell)
            return Box(color, y, x, grid.cell, grid.cell)

        along = [point_on_path(path, moves * tf) for tf in t]
        frames: list[list[Box]]
        if kind == "solution":
            frames = [[box(p)] for p in along]
        elif kind == "vanish":
            gone = int(rng.integers(num_frames // 3, 2 * num_frames // 3 + 1))
            frames = [[box(p)] if f < gone else [] for f, p in enumerate(along)]
        elif kind == "split":
            frames = self._split_frames(along, box, num_frames, rng)
        elif kind == "rule_break":  # straight through the blocked cells
            frames = [
                [box((start[0] + (goal[0] - start[0]) * tf, start[1] + (goal[1] - start[1]) * tf))]
                for tf in t
            ]
        elif kind == "wrong_target":
            detour = self._path_elsewhere(hidden, rng)
            frames = [[box(point_on_path(detour, (len(detour) - 1) * tf))] for tf in t]
        elif kind == "stop_short":
            frames = [[box(point_on_path(path, min(moves * tf, moves / 2)))] for tf in t]
        elif kind == "teleport":
            frames = [[box(start if f < num_frames // 2 else goal)] for f in range(num_frames)]
        else:
            raise ValueError(f"{self.name} cannot render {kind!r}")
        return compose(self._static(hidden, size), frames)

    @staticmethod
    def _split_frames(along, box, num_frames: int, rng: np.random.Generator) -> list[list[Box]]:
        """The agent breaks at frame m: the trailing half stays, the leading half goes on.

        The cut is across the direction of motion at frame m, so the two halves
        separate at once instead of sliding along each other.
        """
        m = int(rng.integers(max(num_frames // 4, 1), num_frames // 2 + 1))
        (r0, c0), (r1, c1) = along[m], along[m + 1]
        vertical = abs(c1 - c0) >= abs(r1 - r0)
        leading_second = (c1 > c0) if vertical else (r1 > r0)
        first, second = split_box(box(along[m]), vertical)
        stay = first if leading_second else second
        frames = []
        for f, pos in enumerate(along):
            if f < m:
                frames.append([box(pos)])
                continue
            a, b = split_box(box(pos), vertical)
            frames.append([stay, b if leading_second else a])
        return frames

    def _path_elsewhere(self, hidden: dict[str, Any], rng: np.random.Generator) -> list[Cell]:
        """A legal path from the start to a free cell that is not the goal."""
        geometry = hidden["geometry"]
        rows, cols = geometry["rows"], geometry["cols"]
        blocked = set(as_cells(hidden["blocked"]))
        start, goal = tuple(hidden["start"]), tuple(hidden["goal"])
        dist = reachable(rows, cols, blocked, start)  # type: ignore[arg-type]

        def away(cell: Cell) -> int:
            return max(abs(cell[0] - goal[0]), abs(cell[1] - goal[1]))

        options = [c for c, d in dist.items() if 2 <= d <= MAX_MOVES and away(c) >= 2]
        if not options:  # a cramped maze: any reachable cell off the goal will do
            options = [c for c in dist if c != start and away(c) >= 1]
        target = options[int(rng.integers(len(options)))]
        return shortest_path(rows, cols, blocked, start, target)  # type: ignore[arg-type]

    # -- checking -----------------------------------------------------------------

    def measure(self, video: np.ndarray, task: Task) -> tuple[dict[str, float], list[str]]:
        # Imported here, not at the top: the checkers import the palette from this
        # package, and importing a checker first must not find this package half-built.
        from evals.checkers import navigation as checker

        return checker.measure(video, task.hidden)


NAVIGATION_PERTURBATIONS = {
    "frozen": "the first frame held still: the agent never moves",
    "vanish": "the agent follows the solution, then disappears",
    "split": "the agent breaks into two halves that drift apart",
    "rule_break": "the agent slides straight to the goal, through blocked cells",
    "wrong_target": "the agent takes a legal path to a cell that is not the goal",
    "stop_short": "the agent stops halfway along the solution path",
    "teleport": "the agent waits, then jumps to the goal in one frame",
}
