"""How the offline teacher reads a task: instruction words and first-frame pixels -> a spec.

It sees what a VLM teacher would see, nothing more: the instruction text and
the first frame. Instructions of the mini world name colours from a fixed
palette (`evals.tasks.palette`), so colour words become colour masks; a few
phrasings decide the kind of task:

- recolour ("turn / paint / recolor / change the color of ... X ... Y"):
  no X left at the end, as many Y squares as X and Y squares in the first
  frame together, other squares unchanged;
- pairs ("target", "corner marks", "own color", "matching"): each colour's
  square ends on the centre of that colour's marks, read off the first frame;
- reach ("move / guide / slide / navigate ... X square ... Y"): the X square
  ends on the Y square, never overlaps black obstacles or walls (named, or a
  maze whose first frame shows black walls), stays whole;
- anything else: one goal question restating the instruction (no checks).

Each reading becomes a reward spec: goal and process questions phrased so that
"Yes" means satisfied, a held-out verifier, and checks from the spec's typed
vocabulary. Nothing here knows the hidden solution.

A mini-world task (its id, which the teacher is shown, is `mini/<family>/<seed>`)
is asked its questions in the phrasings of `evals.mini.questions`, the ones the
mini scorer is trained on: the canonical (first, never held-out) paraphrase of
each checker criterion, in the role that module gives it. Other tasks (VBVR,
free text) get the questions written here.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from evals.mini.questions import questions_for
from evals.tasks import TaskIdError, parse_task_id
from evals.tasks.palette import COLORS

SCENE_COLORS = ("white", "black")  # background and walls, never "the object"
_COLOR_WORD = re.compile(r"\b(" + "|".join(COLORS) + r")\b", re.IGNORECASE)
_RECOLOR = re.compile(r"\b(turn|recolou?r|paint|change the colou?r|make (them|it))\b", re.I)
_PAIRS = re.compile(r"\b(targets?|corner marks|own colou?r|matching)\b", re.I)
_REACH = re.compile(r"\b(move|guide|slide|navigate|reach|get to|bring)\b", re.I)
_WALLS = re.compile(r"\b(maze|walls?|corridors?)\b", re.I)


@dataclass(frozen=True)
class Reading:
    """What the instruction asks, in the offline teacher's terms."""

    kind: Literal["reach", "pairs", "recolor", "generic"]
    instruction: str
    colors: tuple[str, ...] = ()  # object colours in order of mention
    avoid_black: bool = False
    walls: bool = False
    targets: dict[str, tuple[float, float]] = field(default_factory=dict)  # colour -> (x, y)
    present: tuple[str, ...] = ()  # object colours visible in the first frame
    counts: dict[str, int] = field(default_factory=dict)  # separate blobs per colour there
    mini_family: str | None = None  # the mini-world family its task id names, else None

    def describe(self) -> str:
        """One sentence of what the teacher understood (its answer to 'what do you see?')."""
        seen = ", ".join(self.present) or "no coloured objects"
        if self.kind == "reach":
            obstacle = " around the black walls" if self.walls else " around black obstacles"
            return (
                f"The {self.colors[0]} square must travel to the {self.colors[1]} square"
                f"{obstacle if self.avoid_black else ''} and stay in one piece. "
                f"In the first frame I see: {seen}."
            )
        if self.kind == "pairs":
            where = "; ".join(
                f"{c} target at x={x:.2f}, y={y:.2f}" for c, (x, y) in self.targets.items()
            )
            return (
                f"Two squares ({' and '.join(self.colors)}) go onto their own targets, one at "
                f"a time. {where or 'I could not find the targets'}. First frame: {seen}."
            )
        if self.kind == "recolor":
            return (
                f"Every {self.colors[0]} square must become {self.colors[1]}; the other squares"
                f" must not change. In the first frame I see: {seen}."
            )
        return (
            f"I could not match a task pattern; I will ask about the instruction directly. "
            f"First frame: {seen}."
        )


def palette_labels(frame: np.ndarray) -> np.ndarray:
    """(H, W) index into `COLORS` of each pixel's nearest palette colour."""
    palette = np.array(list(COLORS.values()), dtype=np.int32)
    diff = frame.astype(np.int32)[:, :, None, :] - palette[None, None]
    return (diff * diff).sum(-1).argmin(-1)


def components(mask: np.ndarray) -> list[np.ndarray]:
    """Pixel coordinates (N, 2) of each 4-connected component of a boolean mask."""
    seen = np.zeros_like(mask, dtype=bool)
    found = []
    height, width = mask.shape
    for y0, x0 in zip(*np.nonzero(mask), strict=True):
        if seen[y0, x0]:
            continue
        queue, pixels = deque([(y0, x0)]), []
        seen[y0, x0] = True
        while queue:
            y, x = queue.popleft()
            pixels.append((y, x))
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < height and 0 <= nx < width and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    queue.append((ny, nx))
        found.append(np.array(pixels))
    return found


def _marks_centre(labels: np.ndarray, color: str) -> tuple[float, float] | None:
    """Relative (x, y) centre of a colour's marks: every blob of it but the largest (the square)."""
    index = list(COLORS).index(color)
    blobs = sorted(components(labels == index), key=len, reverse=True)
    if len(blobs) < 2:
        return None
    marks = np.concatenate(blobs[1:])
    height, width = labels.shape
    y, x = marks.mean(axis=0)
    return float((x + 0.5) / width), float((y + 0.5) / height)


def mini_family(task_id: str | None) -> str | None:
    """The family of a mini-world task id (`mini/<family>/<seed>`); None for any other id."""
    if task_id is None:
        return None
    try:
        return parse_task_id(task_id)[0]
    except TaskIdError:
        return None  # not a mini-world task: VBVR, a drawn task, free text


def read_task(
    instruction: str, first_frame: np.ndarray | None, task_id: str | None = None
) -> Reading:
    """Read the instruction (and the first frame, if any, where geometry is needed).

    `task_id` is the id the teacher is shown; a mini-world id selects the mini
    scorer's question phrasings (see the module docstring).
    """
    mentioned = list(dict.fromkeys(m.lower() for m in _COLOR_WORD.findall(instruction)))
    objects = tuple(c for c in mentioned if c not in SCENE_COLORS)
    # Without a first frame nothing is seen: no colours present, no targets, no walls.
    labels = palette_labels(first_frame) if first_frame is not None else np.full((1, 1), -1)
    present = tuple(
        name for i, name in enumerate(COLORS) if name not in SCENE_COLORS and (labels == i).any()
    )
    counts = {name: len(components(labels == list(COLORS).index(name))) for name in present}
    base = {
        "instruction": instruction,
        "colors": objects,
        "present": present,
        "counts": counts,
        "mini_family": mini_family(task_id),
    }
    if _RECOLOR.search(instruction) and len(objects) >= 2:
        return Reading(kind="recolor", **base)
    if _PAIRS.search(instruction) and len(objects) >= 2:
        targets = {c: t for c in objects[:2] if (t := _marks_centre(labels, c)) is not None}
        return Reading(kind="pairs", targets=targets, **base)
    if _REACH.search(instruction) and len(objects) >= 2:
        walls = bool(_WALLS.search(instruction))
        # A maze's walls are obstacles even when the text only says "corridors":
        # the first frame shows them in black.
        black_seen = bool((labels == list(COLORS).index("black")).any())
        return Reading(
            kind="reach",
            avoid_black="black" in mentioned or (walls and black_seen),
            walls=walls,
            **base,
        )
    return Reading(kind="generic", **base)


def _rgb(color: str) -> list[int]:
    return list(COLORS[color])


# Largest move of an agent between frames, as a fraction of the frame: a fifth of
# it, above the pace of any route across a small grid in a short clip.
MAX_STEP = 0.2

# Colour tolerance (RGB distance over sqrt(3)) of a `stays_solid` check: a shade
# half-way between two palette colours must match neither.
SOLID_TOLERANCE = 0.12


def _mask(color: str) -> dict[str, Any]:
    return {"type": "color", "color": _rgb(color)}


def _region(color: str) -> dict[str, Any]:
    return {"type": "first_frame_color", "color": _rgb(color)}


def spec_for(reading: Reading, with_checks: bool = True) -> dict[str, Any]:
    """The reward spec (as tool arguments) for a reading; `with_checks=False`: questions only."""
    builders = {"reach": _reach, "pairs": _pairs, "recolor": _recolor, "generic": _generic}
    spec = builders[reading.kind](reading)
    if reading.mini_family is not None:
        spec.update(mini_queries(reading.instruction, reading.mini_family))
    if not with_checks:
        spec.pop("checks", None)
        if spec.get("goal") is None:
            spec["goal"] = _generic(reading)["goal"]
    return spec


def mini_queries(instruction: str, family: str) -> dict[str, Any]:
    """Goal, process and verifier questions in `evals.mini.questions`' trained phrasings.

    One question per checker criterion — its canonical paraphrase, never a
    held-out one (those measure the scorer) — in the role and frame window that
    module gives it: the goal on the last frames, the rules on all frames, the
    scene question as the held-out verifier.
    """
    parts: dict[str, Any] = {"goal": None, "process": [], "verifiers": []}
    asked: set[str] = set()
    for question in questions_for(instruction, family):
        if question.held_out or question.criterion in asked:
            continue  # the first train paraphrase of each criterion is its canonical one
        asked.add(question.criterion)
        query = {"text": question.text, "window": question.window}
        if question.role == "goal":
            parts["goal"] = query
        else:
            parts["process" if question.role == "process" else "verifiers"].append(query)
    return parts


def _reach(r: Reading) -> dict[str, Any]:
    agent, goal = r.colors[0], r.colors[1]
    blockers = "walls" if r.walls else "obstacles"
    process = []
    checks: list[dict[str, Any]] = [
        {
            "kind": "reach_by_end",
            "name": f"{agent} reaches {goal}",
            "role": "goal",
            "object": _mask(agent),
            "target": _region(goal),
        }
    ]
    if r.avoid_black:
        process.append(
            f"Does the {agent} square stay clear of the black {blockers} during the whole video?"
        )
        checks.append(
            {
                "kind": "avoid_overlap",
                "name": f"{agent} avoids black",
                "a": _mask(agent),
                "b": _region("black"),
                "margin": 0.0,
            }
        )
    process.append(f"Does the {agent} square stay one single square throughout the video?")
    checks.append(
        {"kind": "stays_one_blob", "name": f"{agent} stays whole", "object": _mask(agent)}
    )
    # Without it, an optimizer can keep the square whole by making it jump instead.
    checks.append(
        {
            "kind": "moves_smoothly",
            "name": f"{agent} never jumps",
            "object": _mask(agent),
            "max_step": MAX_STEP,
        }
    )
    return {
        "rationale": f"The {agent} square must end on the {goal} square"
        + (f" without touching the black {blockers}" if r.avoid_black else "")
        + "; checks pin the geometry the questions may misjudge.",
        "goal": {
            "text": f"By the end of the video, is the {agent} square on the {goal} square?",
            "window": {"kind": "last_n", "n": 2},
        },
        "process": [{"text": t} for t in process],
        "verifiers": [{"text": f"Does the {agent} square move smoothly, without jumping?"}],
        "checks": checks,
    }


def _pairs(r: Reading) -> dict[str, Any]:
    a, b = r.colors[0], r.colors[1]
    # A colour's pixels are its square plus its marks; their centre sits on the
    # marks' centre only when the square does, hence the tight tolerance.
    checks: list[dict[str, Any]] = [
        {
            "kind": "reach_by_end",
            "name": f"{color} on its target",
            "role": "goal",
            "object": _mask(color),
            "target": {"type": "point", "x": round(x, 4), "y": round(y, 4)},
            "tolerance": 0.03,
        }
        for color, (x, y) in r.targets.items()
    ]
    # The marks stay put, so they cancel in "has it left, has it arrived" and are
    # too small to count as a second blob of the colour.
    checks.append(
        {
            "kind": "one_moves_at_a_time",
            "name": "one square at a time",
            "objects": [_mask(color) for color in r.targets],
        }
    )
    checks += [
        {"kind": "stays_one_blob", "name": f"{color} stays whole", "object": _mask(color)}
        for color in r.targets
    ]
    return {
        "rationale": "Each square must end on the marks of its own colour, one moving at a "
        "time; target centres were read off the first frame.",
        "goal": {
            "text": f"At the end, is the {a} square on the {a} target and the {b} square on the "
            f"{b} target?",
            "window": {"kind": "last"},
        },
        "process": [
            {"text": "Does only one square move at a time?"},
            {"text": "Do both squares keep their size and color throughout the video?"},
        ],
        "verifiers": [{"text": "Does each square end inside the corner marks of its own color?"}],
        "checks": checks,
    }


def _recolor(r: Reading) -> dict[str, Any]:
    src, new = r.colors[0], r.colors[1]
    checks: list[dict[str, Any]] = [
        {
            "kind": "object_count",
            "name": f"no {src} left",
            "role": "goal",
            "object": _mask(src),
            "count": 0,
            "window": {"kind": "last"},
        }
    ]
    # Every source square turns into one more square of the new colour.
    expected = r.counts.get(src, 0) + r.counts.get(new, 0)
    if expected:
        checks.append(
            {
                "kind": "object_count",
                "name": f"{expected} {new} squares",
                "role": "goal",
                "object": _mask(new),
                "count": min(expected, 32),
                "window": {"kind": "last"},
            }
        )
    # The checker wants every square wholly one colour in every frame, the frame of
    # its change included; a tight tolerance keeps in-between shades out of both.
    tight = {"tolerance": SOLID_TOLERANCE}
    checks.append(
        {
            "kind": "stays_solid",
            "name": f"{src} squares stay solid",
            "objects": {**_region(src), **tight},
            "colors": [{**_mask(src), **tight}, {**_mask(new), **tight}],
        }
    )
    checks += [
        {
            "kind": "region_unchanged",
            "name": f"{other} squares unchanged",
            "region": _region(other),
        }
        for other in r.present
        if other not in (src, new)
    ]
    return {
        "rationale": f"Every {src} square becomes {new}; all other squares stay as they are.",
        "goal": {
            "text": f"At the end of the video, are all the squares that were {src} now {new}?",
            "window": {"kind": "last"},
        },
        "process": [
            {"text": "Do all the squares stay in place with their size unchanged?"},
            {"text": f"Do the squares that were not {src} keep their colors?"},
        ],
        "verifiers": [{"text": f"Is there no {src} square left at the end of the video?"}],
        "checks": checks,
    }


def _generic(r: Reading) -> dict[str, Any]:
    task = r.instruction.strip().rstrip(".")
    text = f"By the end of the video, has this been done: {task}?"
    return {
        "rationale": "No known task pattern: ask about the instruction itself.",
        "goal": {"text": text[:480], "window": {"kind": "last_n", "n": 2}},
        "process": [{"text": "Do the objects stay whole, without vanishing or splitting?"}],
    }
