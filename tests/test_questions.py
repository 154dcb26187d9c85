"""The question templates a teacher writes for mini-world tasks, and their true answers."""

from __future__ import annotations

import re

import numpy as np
import pytest

from evals.mini.questions import (
    CRITERION_ROLES,
    GROUPS,
    InstructionError,
    Question,
    answer_from_criteria,
    detect_family,
    object_colors,
    questions_for,
)
from evals.tasks import FAMILIES, check, get_task, perturb
from evals.tasks.palette import COLOR_NAMES

SEEDS = range(0, 400, 7)


def _colour_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w in COLOR_NAMES}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_is_read_from_the_instruction_alone(family: str) -> None:
    for seed in SEEDS:
        task = get_task(f"mini/{family}/{seed}")
        assert detect_family(task.instruction) == family, task.instruction


@pytest.mark.parametrize("family", list(FAMILIES))
def test_questions_name_only_colours_of_the_instruction(family: str) -> None:
    for seed in SEEDS:
        task = get_task(f"mini/{family}/{seed}")
        allowed = _colour_words(task.instruction) | {"black", "white"}
        questions = questions_for(task.instruction, include_held_out=True)
        for q in questions:
            assert _colour_words(q.text) <= allowed, (q.text, task.instruction)
            assert "{" not in q.text and "}" not in q.text
            assert q.text.endswith("?")
        # The instruction's object colours do appear: the questions are about this task.
        named = set().union(*(_colour_words(q.text) for q in questions))
        assert set(object_colors(task.instruction)) <= named


def test_questions_depend_on_the_instruction_only() -> None:
    """Two tasks with the same instruction get the same questions, whatever their layout."""
    by_instruction: dict[str, list[Question]] = {}
    for seed in range(300):
        task = get_task(f"mini/navigate/{seed}")
        got = questions_for(task.instruction, "navigate")
        if task.instruction in by_instruction:
            assert got == by_instruction[task.instruction]
            return
        by_instruction[task.instruction] = got
    pytest.fail("no two navigate tasks in 300 seeds share an instruction")


@pytest.mark.parametrize("family", list(GROUPS))
def test_every_criterion_has_train_and_held_out_paraphrases(family: str) -> None:
    groups = GROUPS[family]
    assert {g.criterion for g in groups} == set(CRITERION_ROLES)
    for group in groups:
        assert len(group.train) >= 2 and len(group.held_out) >= 1
        assert not set(group.train) & set(group.held_out)
    task = get_task(f"mini/{family}/3")
    plain = questions_for(task.instruction)
    full = questions_for(task.instruction, include_held_out=True)
    assert not any(q.held_out for q in plain)
    assert sum(q.held_out for q in full) == sum(len(g.held_out) for g in groups)
    roles = {q.role for q in plain}
    assert roles == {"goal", "process", "verifier"}
    goal = next(q for q in plain if q.role == "goal")
    assert goal.window == {"kind": "last_n", "n": 4}
    assert all(q.window == {"kind": "all"} for q in plain if q.role != "goal")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_answers_follow_the_checker(family: str) -> None:
    task = get_task(f"mini/{family}/11")
    questions = questions_for(task.instruction)
    solved = check(task, np.asarray(task.solution)).criteria
    assert all(answer_from_criteria(q, solved) for q in questions)
    broken = check(task, perturb(task, "rule_break", 0)).criteria
    for q in questions:
        assert answer_from_criteria(q, broken) == (broken[q.criterion] >= 1.0)
    assert not any(
        answer_from_criteria(q, broken) for q in questions if q.criterion == "followed_rule"
    )
    frozen = check(task, perturb(task, "frozen", 0)).criteria
    assert not any(answer_from_criteria(q, frozen) for q in questions if q.role == "goal")


def test_unreadable_instructions_get_a_clear_error() -> None:
    vbvr = "Complete this sliding puzzle by moving the numbered tiles into order."
    with pytest.raises(InstructionError, match="Pass family="):
        questions_for(vbvr)
    with pytest.raises(InstructionError, match="exactly two object colours"):
        questions_for("Move the red square to the goal without touching any black block.")
    with pytest.raises(InstructionError, match="unknown family"):
        questions_for("Move the red square onto the blue square.", family="sokoban")
    rule = next(
        q
        for q in questions_for(get_task("mini/maze/1").instruction)
        if q.criterion == "followed_rule"
    )
    with pytest.raises(KeyError, match="followed_rule"):
        answer_from_criteria(rule, {})
