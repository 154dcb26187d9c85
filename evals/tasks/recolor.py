"""`recolor`: turn every square of one colour into another colour, leaving the rest alone.

A 4 × 4 grid (8 px cells at 32 px) holding 3–6 squares (6 px at 32 px); 1–3 of
them have the source colour. The solution recolours them one at a time at
evenly spaced frames; nothing moves. Other squares may already have the new
colour, which makes "count the new-coloured squares" a trap.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from evals.tasks.base import Task, TaskFamily
from evals.tasks.geometry import Grid
from evals.tasks.palette import OBJECT_COLORS
from evals.tasks.render import Box, blank, compose

ROWS = COLS = 4

TEMPLATES = (
    "Turn every {src} square {new}. All other squares keep their colors, and nothing moves.",
    "Recolor each {src} square to {new}, leaving the squares of other colors unchanged.",
    "Paint all the {src} squares {new}. Do not change or move any other square.",
    "Change the color of every {src} square to {new}; every square that is not {src} must "
    "stay exactly as it is.",
    "There {be} {count} {src} {noun}: make {them} {new} and leave every other square as it is.",
)
NUMBERS = {1: "one", 2: "two", 3: "three"}


def change_frames(count: int, num_frames: int) -> list[int]:
    """Frames at which the 1st, 2nd, ... source square takes the new colour."""
    return [round(1 + (num_frames - 3) * (j + 1) / (count + 1)) for j in range(count)]


class Recolor(TaskFamily):
    name = "recolor"
    description = "recolour every square of one colour, leaving the other squares unchanged"
    weights: ClassVar[dict[str, float]] = {
        "reached_goal": 0.4,
        "followed_rule": 0.3,
        "object_intact": 0.2,
        "scene_preserved": 0.1,
    }
    perturbations: ClassVar[dict[str, str]] = {
        "frozen": "the first frame held still: nothing is recoloured",
        "vanish": "a source square disappears partway through",
        "split": "a source square breaks into two halves that drift apart",
        "rule_break": "a square of another colour is recoloured too",
        "recolor_other": "same as rule_break",
        "wrong_target": "the source squares take a wrong colour",
        "stop_short": "the last source square is never recoloured",
    }
    derived_keys: ClassVar[tuple[str, ...]] = ("geometry", "side")
    aliases: ClassVar[dict[str, str]] = {"recolor_other": "rule_break"}

    def grid(self, size: int) -> Grid:
        return Grid(ROWS, COLS, size // COLS, 0)

    # -- generation ---------------------------------------------------------------

    def sample_layout(self, rng: np.random.Generator) -> dict[str, Any]:
        count = int(rng.integers(3, 7))
        picks = sorted(int(p) for p in rng.choice(ROWS * COLS, size=count, replace=False))
        src, new = (OBJECT_COLORS[int(i)] for i in rng.choice(len(OBJECT_COLORS), 2, False))
        n_src = int(rng.integers(1, min(3, count - 1) + 1))
        is_src = np.zeros(count, dtype=bool)
        is_src[rng.choice(count, size=n_src, replace=False)] = True
        others = [c for c in OBJECT_COLORS if c != src]
        squares = [
            {
                "cell": [p // COLS, p % COLS],
                "color": src if is_src[i] else others[int(rng.integers(len(others)))],
                "source": bool(is_src[i]),
            }
            for i, p in enumerate(picks)
        ]
        order = [int(i) for i in rng.permutation(np.flatnonzero(is_src))]
        return {
            "rows": ROWS,
            "cols": COLS,
            "squares": squares,
            "source_color": src,
            "new_color": new,
            "order": order,
        }

    def write_instruction(self, layout: dict[str, Any], rng: np.random.Generator) -> str:
        count = sum(sq["source"] for sq in layout["squares"])
        template = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
        return template.format(
            src=layout["source_color"],
            new=layout["new_color"],
            count=NUMBERS[count],
            be="is" if count == 1 else "are",
            noun="square" if count == 1 else "squares",
            them="it" if count == 1 else "them",
        )

    def complete_hidden(self, layout: dict[str, Any], size: int, num_frames: int) -> dict:
        grid = self.grid(size)
        return {
            **layout,
            "geometry": grid.to_dict(),
            "side": grid.cell - 2 * max(1, grid.cell // 8),
        }

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
        side = hidden["side"]
        squares = hidden["squares"]
        order = list(hidden["order"])
        new = hidden["new_color"]
        # (square index, frame it changes at, colour it changes to)
        changes = [
            (i, f, new) for i, f in zip(order, change_frames(len(order), num_frames), strict=True)
        ]

        if kind == "wrong_target":
            wrong = [c for c in OBJECT_COLORS if c not in (new, hidden["source_color"])]
            color = wrong[int(rng.integers(len(wrong)))]
            changes = [(i, f, color) for i, f, _ in changes]
        elif kind == "stop_short":
            changes = changes[:-1]
        elif kind == "rule_break":
            others = [i for i, sq in enumerate(squares) if not sq["source"]]
            victim = others[int(rng.integers(len(others)))]
            own = squares[victim]["color"]
            color = new if own != new else hidden["source_color"]
            changes.append((victim, changes[-1][1], color))
        elif kind not in ("solution", "vanish", "split"):
            raise ValueError(f"{self.name} cannot render {kind!r}")

        broken = order[int(rng.integers(len(order)))]  # the square that vanishes or splits
        when = int(rng.integers(num_frames // 3, 2 * num_frames // 3 + 1))
        drift_max = max(1, grid.cell // 8) + 1
        frames = []
        for f in range(num_frames):
            boxes = []
            for i, sq in enumerate(squares):
                color = sq["color"]
                for j, at, to in changes:
                    if j == i and f >= at:
                        color = to
                y, x = grid.box_origin(*sq["cell"], side)
                if i == broken and f >= when and kind == "vanish":
                    continue
                if i == broken and f >= when and kind == "split":
                    drift = min(f - when + 1, drift_max)
                    left = side // 2
                    boxes.append(Box(color, y, x - drift, side, left))
                    boxes.append(Box(color, y, x + left + drift, side, side - left))
                    continue
                boxes.append(Box(color, y, x, side, side))
            frames.append(boxes)
        return compose(blank(size), frames)

    # -- checking -----------------------------------------------------------------

    def measure(self, video: np.ndarray, task: Task) -> tuple[dict[str, float], list[str]]:
        # Imported here, not at the top: the checkers import the palette from this
        # package, and importing a checker first must not find this package half-built.
        from evals.checkers import recolor as checker

        return checker.measure(video, task.hidden)
