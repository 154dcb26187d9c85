"""compile_spec: lam and windows weight exactly as specified; checks, verifiers and errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_checks import GOAL_BOX, goal_scene, line, moving_ball
from tiny_vlm import QUESTIONS, random_frames, tiny_scorer

from reasoner.errors import ConfigError
from reasoner.reward import compile_spec
from reasoner.spec import RewardSpec, SpecError, explain_validation_error

GOAL_CHECK = {
    "kind": "reach_by_end",
    "role": "goal",
    "object": {"color": "red"},
    "target": {
        "type": "box",
        "x0": GOAL_BOX[0],
        "y0": GOAL_BOX[1],
        "x1": GOAL_BOX[2],
        "y1": GOAL_BOX[3],
    },
    "tolerance": 0.06,
}
BLOB_CHECK = {"kind": "stays_one_blob", "object": {"color": "red"}, "weight": 3.0}


def spec(**fields: Any) -> RewardSpec:
    return RewardSpec.model_validate({"version": 1, "rationale": "test", **fields})


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_lam_and_windows_weight_exactly_as_specified(family: str) -> None:
    scorer = tiny_scorer(family)
    s = spec(
        goal={"text": QUESTIONS[0], "window": {"kind": "last_n", "n": 2}},
        process=[
            {"text": QUESTIONS[1]},
            {"text": QUESTIONS[2], "window": {"kind": "first_n", "n": 3}},
        ],
        lam=0.3,
    )
    frames = random_frames(5, 24, 24, seed=11)
    result = compile_spec(s, scorer, num_frames=5)(frames)
    goal, p0, p1 = (result.term(n) for n in ("goal", "process[0]", "process[1]"))
    assert (goal.weight, p0.weight, p1.weight) == pytest.approx((0.3, 0.35, 0.35))
    expected = 0.3 * goal.loss + 0.7 / 2 * (p0.loss + p1.loss)
    assert float(result.total) == pytest.approx(float(expected), rel=1e-6)
    # Each query was scored on its window only (the window's frames, their timestamps).
    with torch.no_grad():
        alone = scorer.score(frames[3:5], [QUESTIONS[0]], first_frame_index=3)[0]
        first3 = scorer.score(frames[:3], [QUESTIONS[2]])[0]
    assert float(goal.loss) == pytest.approx(float(alone.nll), abs=1e-5)
    assert float(p1.loss) == pytest.approx(float(first3.nll), abs=1e-5)
    assert goal.p_yes == pytest.approx(alone.p_yes, rel=1e-5)


def test_gradient_reaches_exactly_the_frames_of_the_window() -> None:
    scorer = tiny_scorer("qwen3_vl")
    s = spec(goal={"text": QUESTIONS[0], "window": {"kind": "last_n", "n": 2}})
    frames = random_frames(5, 32, 32).requires_grad_(True)
    compile_spec(s, scorer, num_frames=5)(frames).total.backward()
    assert frames.grad is not None
    per_frame = frames.grad.abs().sum(dim=(1, 2, 3))
    assert (per_frame[:3] == 0).all()
    assert (frames.grad[3:] != 0).all()  # every pixel of every frame in the window


def test_checks_join_their_role_group_by_weight() -> None:
    scorer = tiny_scorer("qwen2_5_vl")
    s = spec(
        goal={"text": QUESTIONS[0], "window": "last"},
        process=[{"text": QUESTIONS[1]}],
        checks=[{**GOAL_CHECK, "weight": 2.0}, BLOB_CHECK],
        lam=0.6,
    )
    frames = moving_ball(line(0.15, 0.15, 0.35, 0.8), scene=goal_scene)
    result = compile_spec(s, scorer, num_frames=5)(frames)
    weights = {t.name: t.weight for t in result.terms}
    # goal group: query 1 + check 2 -> 1/3, 2/3 of 0.6
    # process group: query 1 + check 3 -> 1/4, 3/4 of 0.4
    assert weights == pytest.approx(
        {
            "goal": 0.6 / 3,
            "process[0]": 0.4 / 4,
            "check[0]:reach_by_end": 0.6 * 2 / 3,
            "check[1]:stays_one_blob": 0.4 * 3 / 4,
        }
    )
    assert float(result.total) == pytest.approx(sum(t.weight * float(t.loss) for t in result.terms))
    reach = result.term("check[0]:reach_by_end")
    assert (
        reach.passed is False and reach.p_yes is None and "from the target" in (reach.detail or "")
    )
    assert result.term("check[1]:stays_one_blob").passed is True
    assert result.as_dict()["terms"][0]["name"] == "goal"


def test_a_checks_only_spec_needs_no_scorer_and_lam_moves_to_the_present_group() -> None:
    s = spec(checks=[GOAL_CHECK, BLOB_CHECK], lam=0.25)
    good = moving_ball(line(0.15, 0.15, 0.8, 0.8), scene=goal_scene)
    bad = moving_ball(line(0.15, 0.15, 0.35, 0.8), scene=goal_scene)
    reward = compile_spec(s, None, num_frames=5)
    assert [t.weight for t in reward(good).terms] == [0.25, 0.75]
    assert reward(good).passed and float(reward(good).total) < 1e-3
    assert not reward(bad).passed and float(reward(bad).total) > 1e-3
    only_goal = compile_spec(spec(checks=[GOAL_CHECK], lam=0.25), None, num_frames=5)
    assert [t.weight for t in only_goal(good).terms] == [1.0]


def test_lam_one_gives_process_terms_zero_weight() -> None:
    s = spec(goal={"text": QUESTIONS[0]}, process=[{"text": QUESTIONS[1]}], lam=1.0)
    result = compile_spec(s, tiny_scorer("qwen3_vl"), num_frames=3)(random_frames(3, 32, 32))
    assert result.term("process[0]").weight == 0.0
    assert float(result.total) == pytest.approx(float(result.term("goal").loss))


def test_include_selects_terms_for_ablations() -> None:
    s = spec(goal={"text": QUESTIONS[0]}, checks=[BLOB_CHECK], verifiers=[{"text": QUESTIONS[3]}])
    frames = moving_ball(line(0.2, 0.2, 0.8, 0.8))
    checks_only = compile_spec(s, None, num_frames=5, include="checks")
    assert [t.name for t in checks_only(frames).terms] == ["check[0]:stays_one_blob"]
    assert checks_only.verify(frames).terms == []
    queries_only = compile_spec(s, tiny_scorer("qwen3_vl"), num_frames=5, include="queries")
    assert [t.name for t in queries_only(frames).terms] == ["goal"]


def test_verifiers_are_scored_without_gradient_and_never_optimised() -> None:
    s = spec(
        goal={"text": QUESTIONS[0]}, verifiers=[{"text": QUESTIONS[3]}, {"text": QUESTIONS[2]}]
    )
    reward = compile_spec(s, tiny_scorer("qwen3_vl"), num_frames=3)
    frames = random_frames(3, 32, 32).requires_grad_(True)
    optimised = reward(frames)
    assert [t.role for t in optimised.terms] == ["goal"]
    verified = reward.verify(frames)
    assert [t.name for t in verified.terms] == ["verifier[0]", "verifier[1]"]
    assert all(t.role == "verifier" and t.weight == 0.0 for t in verified.terms)
    assert not verified.total.requires_grad
    expected = sum(float(t.loss) for t in verified.terms) / 2
    assert float(verified.total) == pytest.approx(expected)


def test_errors_a_teacher_or_caller_can_act_on() -> None:
    s = spec(goal={"text": QUESTIONS[0], "window": {"kind": "last_n", "n": 30}})
    with pytest.raises(SpecError) as info:
        compile_spec(s, tiny_scorer("qwen3_vl"), num_frames=24)
    assert "only 24" in explain_validation_error(info.value)
    with pytest.raises(SpecError, match="no VQA scorer"):
        compile_spec(spec(goal={"text": QUESTIONS[0]}), None, num_frames=5)
    with pytest.raises(SpecError, match="no term"):
        compile_spec(spec(goal={"text": QUESTIONS[0]}), None, num_frames=5, include="checks")
    frames = moving_ball(line(0.2, 0.2, 0.8, 0.8))
    magenta = {"kind": "stays_one_blob", "object": {"color": "magenta", "tolerance": 0.1}}
    with pytest.raises(SpecError, match=r"checks\[0\] \(stays_one_blob\): object: no pixel"):
        compile_spec(spec(checks=[{**magenta, "role": "goal"}]), None, 5, first_frame=frames[0])
    reward = compile_spec(spec(checks=[GOAL_CHECK]), None, num_frames=5)
    with pytest.raises(ConfigError, match="compiled for 5 frames but got 4"):
        reward(frames[:4])
