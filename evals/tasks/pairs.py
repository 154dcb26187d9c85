"""`pairs`: move two coloured squares onto the targets of their own colour, one at a time.

A 4 × 4 grid (8 px cells at 32 px). Each target is four L-shaped corner marks
of its colour around a cell; each square is half a cell wide and fits inside
the marks without touching them. The squares start 1–3 moves from their
targets (4 moves in all) and the solution moves one, then the other, along
L-shaped paths that never cross the other square.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from evals.tasks.base import Task, TaskFamily
from evals.tasks.geometry import Grid, corner_rects, manhattan
from evals.tasks.palette import OBJECT_COLORS
from evals.tasks.render import Box, blank, compose, fill, point_on_path, split_box

ROWS = COLS = 4
MAX_TOTAL_MOVES = 4

TEMPLATES = (
    "Move the {a} square onto the {a} target and the {b} square onto the {b} target. "
    "Move one square at a time: the first must arrive before the other starts.",
    "Each square belongs on the target of its own color: bring the {a} square to the {a} "
    "target and the {b} square to the {b} target, one square after the other.",
    "Put the {a} and {b} squares on their matching targets (the corner marks of the same "
    "color). Only one square may be on its way at any moment.",
    "Slide each square into the corner marks of its own color, {a} to {a} and {b} to {b}. "
    "Never move both squares at once; finish one before starting the other.",
)

Cell = tuple[int, int]


def l_paths(start: Cell, end: Cell) -> list[list[Cell]]:
    """The one or two L-shaped cell paths from start to end (rows first, columns first)."""

    def walk(first_rows: bool) -> list[Cell]:
        r, c = start
        path = [(r, c)]
        axes = ("r", "c") if first_rows else ("c", "r")
        for axis in axes:
            target = end[0] if axis == "r" else end[1]
            while (r if axis == "r" else c) != target:
                step = 1 if target > (r if axis == "r" else c) else -1
                if axis == "r":
                    r += step
                else:
                    c += step
                path.append((r, c))
        return path

    paths = [walk(True), walk(False)]
    return paths if paths[0] != paths[1] else paths[:1]


def schedule(lengths: tuple[int, int], num_frames: int) -> list[tuple[float, float]]:
    """Distance travelled by the first and second mover at each frame, one after the other.

    Frames are split between the two in proportion to their path lengths, so
    both move at about the same speed and never within the same frame step.
    """
    moving = num_frames - 2
    first, second = lengths
    m = min(max(round(moving * first / (first + second)), 1), moving - 1)
    out = []
    for f in range(num_frames):
        if f <= m:
            out.append((first * f / m, 0.0))
        else:
            out.append((float(first), second * min(1.0, (f - m) / (moving - m))))
    return out


class Pairs(TaskFamily):
    name = "pairs"
    description = "move two squares onto the targets of their own colour, one at a time"
    weights: ClassVar[dict[str, float]] = {
        "reached_goal": 0.4,
        "followed_rule": 0.3,
        "object_intact": 0.2,
        "scene_preserved": 0.1,
    }
    perturbations: ClassVar[dict[str, str]] = {
        "frozen": "the first frame held still: nothing moves",
        "vanish": "the second square to move disappears halfway through the video",
        "split": "a moving square breaks into two halves that drift apart",
        "rule_break": "both squares move at the same time",
        "both_at_once": "same as rule_break",
        "wrong_target": "each square goes to the target of the other colour",
        "stop_short": "the second square stops halfway to its target",
    }
    derived_keys: ClassVar[tuple[str, ...]] = ("geometry", "side")
    aliases: ClassVar[dict[str, str]] = {"both_at_once": "rule_break"}

    def grid(self, size: int) -> Grid:
        return Grid(ROWS, COLS, size // COLS, 0)

    # -- generation ---------------------------------------------------------------

    def sample_layout(self, rng: np.random.Generator) -> dict[str, Any]:
        while True:
            picks = rng.choice(ROWS * COLS, size=4, replace=False)
            a0, b0, ta, tb = [(int(p) // COLS, int(p) % COLS) for p in picks]
            da, db = manhattan(a0, ta), manhattan(b0, tb)
            if not (1 <= da <= 3 and 1 <= db <= 3 and da + db <= MAX_TOTAL_MOVES):
                continue
            ends = [(a0, ta), (b0, tb)]
            plans = []
            for first in (0, 1):
                (s1, t1), (s2, t2) = ends[first], ends[1 - first]
                for p1 in l_paths(s1, t1):
                    if s2 in p1:  # would run over the square still waiting
                        continue
                    plans += [(first, p1, p2) for p2 in l_paths(s2, t2) if t1 not in p2]
            if not plans:
                continue
            first, p1, p2 = plans[int(rng.integers(len(plans)))]
            colors = [OBJECT_COLORS[int(i)] for i in rng.choice(len(OBJECT_COLORS), 2, False)]
            objects = [
                {"color": colors[i], "start": list(ends[i][0]), "target": list(ends[i][1])}
                for i in range(2)
            ]
            return {
                "rows": ROWS,
                "cols": COLS,
                "objects": objects,
                "order": [colors[first], colors[1 - first]],
                "paths": {
                    colors[first]: [list(c) for c in p1],
                    colors[1 - first]: [list(c) for c in p2],
                },
            }

    def write_instruction(self, layout: dict[str, Any], rng: np.random.Generator) -> str:
        colors = [o["color"] for o in layout["objects"]]
        if rng.integers(2):
            colors.reverse()
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        return template.format(a=colors[0], b=colors[1])

    def complete_hidden(self, layout: dict[str, Any], size: int, num_frames: int) -> dict:
        grid = self.grid(size)
        return {**layout, "geometry": grid.to_dict(), "side": grid.cell // 2}

    # -- videos -------------------------------------------------------------------

    def _static(self, hidden: dict[str, Any], size: int) -> np.ndarray:
        grid = Grid.from_dict(hidden["geometry"])
        frame = blank(size)
        for obj in hidden["objects"]:
            for rect in corner_rects(grid, *obj["target"]):
                fill(frame, *rect, obj["color"])
        return frame

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
        side = hidden["side"]
        order = hidden["order"]
        paths = {color: [tuple(c) for c in hidden["paths"][color]] for color in order}
        if kind == "wrong_target":  # swap targets; plain L paths, same order
            ends = {o["color"]: tuple(o["start"]) for o in hidden["objects"]}
            targets = {o["color"]: tuple(o["target"]) for o in hidden["objects"]}
            swapped = {order[0]: targets[order[1]], order[1]: targets[order[0]]}
            paths = {c: l_paths(ends[c], swapped[c])[0] for c in order}
        lengths = (len(paths[order[0]]) - 1, len(paths[order[1]]) - 1)
        plan = schedule(lengths, num_frames)
        if kind == "rule_break":  # both at once, each over the whole moving time
            moving = num_frames - 2
            plan = [
                (lengths[0] * min(f / moving, 1), lengths[1] * min(f / moving, 1))
                for f in range(num_frames)
            ]
        elif kind == "stop_short":
            plan = [(s1, min(s2, lengths[1] / 2)) for s1, s2 in plan]
        elif kind not in ("solution", "vanish", "split", "wrong_target"):
            raise ValueError(f"{self.name} cannot render {kind!r}")

        def box(color: str, s: float) -> Box:
            r, c = point_on_path(paths[color], s)
            y, x = grid.box_origin(r, c, side)
            return Box(color, y, x, side, side)

        frames = [[box(order[0], s1), box(order[1], s2)] for s1, s2 in plan]
        if kind == "vanish":
            gone = int(rng.integers(num_frames // 3, 2 * num_frames // 3 + 1))
            frames = [boxes if f < gone else boxes[:1] for f, boxes in enumerate(frames)]
        elif kind == "split":
            frames = self._split(frames, plan, rng)
        return compose(self._static(hidden, size), frames)

    @staticmethod
    def _split(
        frames: list[list[Box]], plan: list[tuple[float, float]], rng: np.random.Generator
    ) -> list[list[Box]]:
        """A square breaks while it moves: its trailing half stays, its leading half goes on."""
        moves = [
            (f, i)
            for f in range(len(plan) - 1)
            for i in (0, 1)
            if plan[f + 1][i] > plan[f][i]
            and (frames[f + 1][i].y, frames[f + 1][i].x) != (frames[f][i].y, frames[f][i].x)
        ]
        moves = moves[: max(1, len(moves) // 2)]  # break early enough to see the pieces
        m, i = moves[int(rng.integers(len(moves)))]
        here, there = frames[m][i], frames[m + 1][i]
        vertical = abs(there.x - here.x) >= abs(there.y - here.y)
        leading_second = (there.x > here.x) if vertical else (there.y > here.y)
        halves = split_box(here, vertical)
        stay = halves[0] if leading_second else halves[1]
        out = [list(boxes) for boxes in frames]
        for f in range(m + 1, len(frames)):
            a, b = split_box(frames[f][i], vertical)
            out[f][i : i + 1] = [stay, b if leading_second else a]
        return out

    # -- checking -----------------------------------------------------------------

    def measure(self, video: np.ndarray, task: Task) -> tuple[dict[str, float], list[str]]:
        # Imported here, not at the top: the checkers import the palette from this
        # package, and importing a checker first must not find this package half-built.
        from evals.checkers import pairs as checker

        return checker.measure(video, task.hidden)
