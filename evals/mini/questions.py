"""The yes/no questions a teacher writes for a mini-world task, and their true answers.

A teacher reads only the instruction (and the first frame). For each family this
module holds the questions such a teacher would ask, one group per rule the
family's checker measures:

==================  ==========  =============================================
checker criterion   role        what the question asks
==================  ==========  =============================================
``reached_goal``    goal        does the end state match the instruction?
``followed_rule``   process     was the family's rule kept all along?
``object_intact``   process     do the objects stay whole, of the same size?
``scene_preserved`` verifier    does the rest of the scene stay unchanged?
==================  ==========  =============================================

Every group has several paraphrases, all phrased so that "Yes" means satisfied.
Some paraphrases are *held out*: the mini scorer never trains on them, and its
accuracy is measured on them (see ``evals/mini/train_scorer.py``).

The templates are filled only with words found in the instruction (colour
words from the palette and the family's own nouns), never with hidden data, so
the offline teacher can call :func:`questions_for` exactly as a VLM teacher
would write its queries. The answer a question *should* get on a given video is
:func:`answer_from_criteria`: "Yes" exactly when the checker's criterion is
fully met.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from evals.tasks.palette import BACKGROUND, OBJECT_COLORS, WALL

Role = Literal["goal", "process", "verifier"]
Criterion = Literal["reached_goal", "followed_rule", "object_intact", "scene_preserved"]

CRITERION_ROLES: dict[Criterion, Role] = {
    "reached_goal": "goal",
    "followed_rule": "process",
    "object_intact": "process",
    "scene_preserved": "verifier",
}
"""The role a teacher gives the questions about each checker criterion."""

GOAL_WINDOW: dict[str, object] = {"kind": "last_n", "n": 4}
"""Suggested frame window for goal questions (the end state); others look at all frames.

Written as a ``reasoner.spec.FrameWindow`` payload; the mini scorer is trained on
goal questions both over this window and over all frames.
"""


class InstructionError(ValueError):
    """The instruction cannot be read as a mini-world task; the message says why."""


@dataclass(frozen=True)
class QuestionGroup:
    """Paraphrases of one question about one checker criterion.

    ``train`` and ``held_out`` are format strings over the family's slots
    (e.g. ``{agent}``, ``{goal}``); held-out paraphrases are never trained on.
    """

    criterion: Criterion
    train: tuple[str, ...]
    held_out: tuple[str, ...]

    @property
    def role(self) -> Role:
        return CRITERION_ROLES[self.criterion]


@dataclass(frozen=True)
class Question:
    """One filled-in question, ready for a reward spec or the scorer."""

    text: str
    role: Role
    criterion: Criterion
    family: str
    paraphrase: int  # index into the group's train + held_out paraphrases
    held_out: bool

    @property
    def window(self) -> dict[str, object]:
        """Suggested ``FrameWindow`` payload: the last frames for goals, else all frames."""
        return dict(GOAL_WINDOW) if self.role == "goal" else {"kind": "all"}


def _navigation_groups(blocked: str, extra_rule: str) -> tuple[QuestionGroup, ...]:
    # navigate (black obstacles) and maze (black walls) share their questions;
    # only the word for what must not be entered differs.
    return (
        QuestionGroup(
            "reached_goal",
            train=(
                "By the end of the video, does the {agent} square reach the {goal} square?",
                "Does the {agent} square end on the {goal} square?",
                "Is the {agent} square on the {goal} square in the final frame?",
                "Does the {agent} square finish on top of the {goal} square?",
            ),
            held_out=("At the end, has the {agent} square arrived at the {goal} square?",),
        ),
        QuestionGroup(
            "followed_rule",
            train=(
                f"Does the {{agent}} square avoid all black {blocked}s throughout the video?",
                f"Does the {{agent}} square stay off every black {blocked} the whole time?",
                f"Does the {{agent}} square go around the black {blocked}s instead of "
                "through them?",
                f"Does the {{agent}} square move in small steps, without jumping and without "
                f"touching a black {blocked}?",
                extra_rule,
            ),
            held_out=(f"Does the {{agent}} square never touch a black {blocked}?",),
        ),
        QuestionGroup(
            "object_intact",
            train=(
                "Does the {agent} square stay a single object of the same size?",
                "Does the {agent} square stay in one piece throughout the video?",
                "Is the {agent} square visible and whole in every frame?",
            ),
            held_out=("Does the {agent} square remain one solid square the whole time?",),
        ),
        QuestionGroup(
            "scene_preserved",
            train=(
                f"Do the black {blocked}s and the {{goal}} square stay unchanged?",
                "Does the rest of the scene stay the same while the {agent} square moves?",
            ),
            held_out=(
                f"Do the black {blocked}s and the {{goal}} square stay exactly where they are?",
            ),
        ),
    )


GROUPS: dict[str, tuple[QuestionGroup, ...]] = {
    "navigate": _navigation_groups(
        "obstacle", "Does the {agent} square keep clear of the black obstacles on its way?"
    ),
    "maze": _navigation_groups(
        "wall", "Does the {agent} square stay inside the white corridors of the maze?"
    ),
    "pairs": (
        QuestionGroup(
            "reached_goal",
            train=(
                "By the end of the video, is each square on the target of its own color?",
                "Does the {a} square end on the {a} target and the {b} square on the {b} target?",
                "At the end, are the {a} and {b} squares both inside their matching corner marks?",
            ),
            held_out=("Do the {a} and {b} squares both finish on their own targets?",),
        ),
        QuestionGroup(
            "followed_rule",
            train=(
                "Does only one square move at a time?",
                "Does one square finish moving before the other one starts?",
                "Are the {a} and {b} squares never moving at the same moment?",
            ),
            held_out=("Do the squares move one after the other, never together?",),
        ),
        QuestionGroup(
            "object_intact",
            train=(
                "Do the {a} and {b} squares each stay one whole square?",
                "Do both squares stay in one piece and keep their size?",
            ),
            held_out=("Are the {a} square and the {b} square visible and whole in every frame?",),
        ),
        QuestionGroup(
            "scene_preserved",
            train=(
                "Do the corner marks of the targets stay unchanged?",
                "Does the background stay the same apart from the moving squares?",
            ),
            held_out=("Do the {a} and {b} targets stay exactly as they were?",),
        ),
    ),
    "recolor": (
        QuestionGroup(
            "reached_goal",
            train=(
                "By the end of the video, have all the {src} squares turned {new}?",
                "Does every square that started {src} end up {new}?",
                "In the last frame, are all the squares that were {src} now {new}?",
            ),
            held_out=("Has each {src} square been recolored to {new} by the end?",),
        ),
        QuestionGroup(
            "followed_rule",
            train=(
                "Do all squares that are not {src} keep their colors?",
                "Does every square of another color stay unchanged?",
                "Are only the {src} squares recolored, and no other square?",
            ),
            held_out=("Do the squares that were not {src} keep their original colors throughout?",),
        ),
        QuestionGroup(
            "object_intact",
            train=(
                "Do all the squares stay whole and in place?",
                "Does every square stay one solid square, without moving or splitting?",
            ),
            held_out=("Are all the squares visible and whole in every frame?",),
        ),
        QuestionGroup(
            "scene_preserved",
            train=(
                "Does the white background stay unchanged?",
                "Does nothing new appear on the background?",
            ),
            held_out=("Is the background outside the squares left as it was?",),
        ),
    ),
}
"""Per family, one question group per checker criterion."""

SLOTS: dict[str, tuple[str, str]] = {
    "navigate": ("agent", "goal"),
    "maze": ("agent", "goal"),
    "pairs": ("a", "b"),
    "recolor": ("src", "new"),
}
"""Per family, the slot names of the first and second object colour the instruction names."""

# Words that tell the families apart; an instruction is matched by whole words.
_FAMILY_CUES: dict[str, tuple[str, ...]] = {
    "maze": ("maze", "corridors"),
    "pairs": ("target", "targets", "corner marks"),
    "recolor": ("recolor", "turn every", "paint", "change the color", "make them", "make it"),
    "navigate": ("obstacle", "obstacles", "black block", "black blocks", "black squares"),
}


def detect_family(instruction: str) -> str:
    """The mini-world family an instruction belongs to, from its wording alone."""
    text = instruction.lower()
    hits = [
        family
        for family, cues in _FAMILY_CUES.items()
        if any(re.search(rf"\b{re.escape(cue)}\b", text) for cue in cues)
    ]
    if len(hits) != 1:
        found = "no family's cue words" if not hits else f"cue words of {', '.join(hits)}"
        raise InstructionError(
            f"cannot tell the mini-world family of {instruction!r}: it has {found}. "
            f"Pass family= one of {', '.join(GROUPS)}."
        )
    return hits[0]


def object_colors(instruction: str) -> list[str]:
    """Object colour words of the palette, in the order the instruction first names them."""
    words = re.findall(r"[a-z]+", instruction.lower())
    seen: list[str] = []
    for word in words:
        if word in OBJECT_COLORS and word not in seen:
            seen.append(word)
    return seen


def slots_for(instruction: str, family: str) -> dict[str, str]:
    """The slot words (colours) of ``family``'s questions, read from the instruction."""
    if family not in SLOTS:
        raise InstructionError(f"unknown family {family!r}; use one of {', '.join(SLOTS)}")
    colors = object_colors(instruction)
    if len(colors) != 2:
        raise InstructionError(
            f"a {family} instruction names exactly two object colours "
            f"({', '.join(OBJECT_COLORS)}; {WALL} and {BACKGROUND} are scenery), "
            f"found {colors or 'none'} in {instruction!r}"
        )
    first, second = SLOTS[family]
    return {first: colors[0], second: colors[1]}


def questions_for(
    instruction: str,
    family: str | None = None,
    *,
    include_held_out: bool = False,
) -> list[Question]:
    """Every question a teacher would write for this instruction, grouped by criterion.

    ``family`` is detected from the wording when not given. Held-out paraphrases
    (reserved for measuring the scorer) are left out unless ``include_held_out``.
    The first question of each criterion is its canonical phrasing.
    """
    family = family or detect_family(instruction)
    slots = slots_for(instruction, family)
    out = []
    for group in GROUPS[family]:
        texts = [(t, False) for t in group.train]
        if include_held_out:
            texts += [(t, True) for t in group.held_out]
        for index, (template, held_out) in enumerate(texts):
            out.append(
                Question(
                    text=template.format(**slots),
                    role=group.role,
                    criterion=group.criterion,
                    family=family,
                    paraphrase=index,
                    held_out=held_out,
                )
            )
    return out


def answer_from_criteria(question: Question, criteria: Mapping[str, float]) -> bool:
    """The true answer (True = "Yes") of ``question`` for a video the checker scored.

    "Yes" exactly when the question's criterion is fully met (value 1.0), as the
    checker's own pass/fail counts it.
    """
    if question.criterion not in criteria:
        raise KeyError(
            f"the checker reported {sorted(criteria)}, not {question.criterion!r}; "
            "score the video with the family's checker"
        )
    return criteria[question.criterion] >= 1.0
