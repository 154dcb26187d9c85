"""The offline teacher: its reading of mini-world tasks, its specs, and its policy.

The reading uses only the instruction and the first frame; the tests use each
task's hidden ground truth to check that reading (the teacher never sees it),
and score the specs' checks on the tasks' solution and rule-breaking videos
with the real spec compiler.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from agent.offline_reading import read_task, spec_for
from agent.offline_teacher import OfflineTeacher
from agent.teacher_config import OfflinePolicyConfig
from evals.mini.questions import CRITERION_ROLES, questions_for
from evals.tasks import check, get_task, perturb
from reasoner.reward import compile_spec
from reasoner.spec import RewardSpec

FAMILIES = ("navigate", "maze", "pairs", "recolor")
SEEDS = range(6)
K = 9


def frames(video: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(video)).permute(0, 3, 1, 2).float() / 255.0


def check_verdicts(spec: dict[str, Any], task, video: np.ndarray) -> dict[str, bool]:
    reward = compile_spec(
        RewardSpec.model_validate(spec),
        None,
        num_frames=K,
        include="checks",
        first_frame=frames(task.first_frame[None])[0],
    )
    with torch.no_grad():
        result = reward(frames(video))
    return {t.name: bool(t.passed) for t in result.terms}


@pytest.mark.parametrize("family", FAMILIES)
def test_reading_matches_the_hidden_task(family: str) -> None:
    expected_kind = {"navigate": "reach", "maze": "reach", "pairs": "pairs", "recolor": "recolor"}
    for seed in SEEDS:
        task = get_task(f"mini/{family}/{seed}", num_frames=K)
        reading = read_task(task.instruction, task.first_frame)
        hidden = task.hidden
        assert reading.kind == expected_kind[family], task.instruction
        if family in ("navigate", "maze"):
            assert reading.colors[:2] == (hidden["agent_color"], hidden["goal_color"])
            assert reading.avoid_black
        elif family == "recolor":
            assert reading.colors[:2] == (hidden["source_color"], hidden["new_color"])
        else:
            cell = hidden["geometry"]["cell"] / task.size
            for obj in hidden["objects"]:
                x, y = reading.targets[obj["color"]]
                row, col = obj["target"]
                assert x == pytest.approx((col + 0.5) * cell, abs=0.02)
                assert y == pytest.approx((row + 0.5) * cell, abs=0.02)


@pytest.mark.parametrize("family", FAMILIES)
def test_spec_checks_pass_the_solution_and_catch_broken_videos(family: str) -> None:
    broken = {
        "navigate": "rule_break",
        "maze": "rule_break",
        "pairs": "wrong_target",
        "recolor": "wrong_target",
    }[family]
    for seed in SEEDS:
        task = get_task(f"mini/{family}/{seed}", num_frames=K)
        spec = spec_for(read_task(task.instruction, task.first_frame))
        RewardSpec.model_validate(spec)  # a valid spec for the tool
        solved = check_verdicts(spec, task, task.solution)
        assert all(solved.values()), (task.task_id, solved)
        frozen = check_verdicts(spec, task, perturb(task, "frozen", 0))
        assert not all(frozen.values()), task.task_id
        wrong = check_verdicts(spec, task, perturb(task, broken, seed))
        assert not all(wrong.values()), (task.task_id, broken)


@pytest.mark.parametrize(
    ("kind", "check_prefix"),
    [("rule_break", "one square at a time"), ("split", "stays whole"), ("vanish", "stays whole")],
)
def test_pairs_spec_checks_one_at_a_time_and_whole_squares(kind: str, check_prefix: str) -> None:
    """The checks catch the pairs rules the goal check cannot see, as the checker does."""
    for seed in SEEDS:
        task = get_task(f"mini/pairs/{seed}", num_frames=K)
        spec = spec_for(read_task(task.instruction, task.first_frame))
        video = perturb(task, kind, seed)
        assert not check(task, video).passed
        verdicts = check_verdicts(spec, task, video)
        failed = [name for name, ok in verdicts.items() if not ok]
        assert any(check_prefix in name for name in failed), (task.task_id, kind, verdicts)
        assert all(check_verdicts(spec, task, task.solution).values()), task.task_id


def spec_questions(spec: dict[str, Any]) -> dict[str, list[str]]:
    return {
        "goal": [spec["goal"]["text"]],
        "process": [q["text"] for q in spec["process"]],
        "verifier": [q["text"] for q in spec["verifiers"]],
    }


@pytest.mark.parametrize("family", FAMILIES)
def test_mini_tasks_are_asked_in_the_mini_scorers_trained_phrasings(family: str) -> None:
    for seed in (0, 3, 2_000_003):  # train and test split
        task = get_task(f"mini/{family}/{seed}", num_frames=K)
        reading = read_task(task.instruction, task.first_frame, task.task_id)
        assert reading.mini_family == family
        spec = spec_for(reading)
        RewardSpec.model_validate(spec)
        asked = spec_questions(spec)
        every = questions_for(task.instruction, family, include_held_out=True)
        held_out = {q.text for q in every if q.held_out}
        # Exactly the canonical (first) paraphrase of each criterion, in its role.
        expected: dict[str, list[str]] = {"goal": [], "process": [], "verifier": []}
        for criterion, role in CRITERION_ROLES.items():
            canonical = next(q for q in every if q.criterion == criterion)
            assert canonical.paraphrase == 0 and not canonical.held_out
            expected[role].append(canonical.text)
        assert asked == expected, task.task_id
        assert not held_out & {t for texts in asked.values() for t in texts}
        assert spec["goal"]["window"] == {"kind": "last_n", "n": 4}  # the trained end window
        assert all(q["window"] == {"kind": "all"} for q in spec["process"] + spec["verifiers"])
        # The checks are the offline reading's own, whatever the phrasing.
        assert spec["checks"] == spec_for(read_task(task.instruction, task.first_frame))["checks"]
        # The questions-only fallback keeps the trained goal phrasing.
        bare = spec_for(reading, with_checks=False)
        assert "checks" not in bare and bare["goal"]["text"] == expected["goal"][0]


def test_other_tasks_keep_the_offline_teachers_own_questions() -> None:
    task = get_task("mini/navigate/2", num_frames=K)
    mini = spec_questions(spec_for(read_task(task.instruction, task.first_frame, task.task_id)))
    trained = {q.text for q in questions_for(task.instruction, include_held_out=True)}
    # The same instruction under a non-mini id (a VBVR folder, a drawn task, none).
    for task_id in ("vbvr/navigation/obstacle_task/0001", "drawn/0", None, "mini/sokoban/1"):
        reading = read_task(task.instruction, task.first_frame, task_id)
        assert reading.mini_family is None
        own = spec_questions(spec_for(reading))
        agent, goal = reading.colors[:2]
        expected = f"By the end of the video, is the {agent} square on the {goal} square?"
        assert own["goal"] == [expected]
        assert not trained & {t for texts in own.values() for t in texts}
        assert own != mini


def test_questions_only_spec_and_generic_reading() -> None:
    task = get_task("mini/maze/1", num_frames=K)
    spec = spec_for(read_task(task.instruction, task.first_frame), with_checks=False)
    assert "checks" not in spec and spec["goal"]["text"].startswith("By the end")
    generic = read_task("Make the clouds look happier.", task.first_frame)
    assert generic.kind == "generic"
    RewardSpec.model_validate(spec_for(generic))


# -- the policy, on conversations built by hand -----------------------------------


def opening(task) -> list[dict[str, Any]]:
    buffer = io.BytesIO()
    Image.fromarray(task.first_frame).save(buffer, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    text = f"Task {task.task_id}: {task.instruction}\nThe video has 9 frames."
    return [
        {"role": "system", "content": "..."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        },
    ]


class Conversation:
    def __init__(self, task) -> None:
        self.messages = opening(task)
        self.teacher = OfflineTeacher(OfflinePolicyConfig(burst=4, max_revisions=1))
        self.n = 0

    def next_call(self) -> tuple[str, dict[str, Any]]:
        reply = self.teacher.reply(self.messages, [], budget_s=10)
        call = reply.tool_calls[0]
        self.n += 1
        self.messages.append(
            {
                "role": "assistant",
                "content": reply.content,
                "tool_calls": [
                    {
                        "id": f"c{self.n}",
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    }
                ],
            }
        )
        return call.name, json.loads(call.arguments)

    def result(self, data: dict[str, Any]) -> None:
        self.messages.append(
            {"role": "tool", "tool_call_id": f"c{self.n}", "content": json.dumps(data)}
        )


def burst(losses: list[float], left: int, tau: float = 0.22, stop=None) -> dict[str, Any]:
    return {
        "steps_run": len(losses),
        "steps_left": left,
        "tau": tau,
        "stop_reason": stop,
        "losses": losses,
        "latest": {"iterate": 1, "loss": losses[-1]},
    }


def test_policy_write_optimize_verify_accept() -> None:
    task = get_task("mini/navigate/2", num_frames=K)
    chat = Conversation(task)
    name, spec = chat.next_call()
    # It read the task id from the task message: a mini task, asked in trained phrasings.
    assert name == "write_reward_spec"
    assert spec["goal"]["text"] == questions_for(task.instruction, "navigate")[0].text
    chat.result({"accepted": True, "version": 1})
    assert chat.next_call() == ("verify", {"iterate": "current"})  # the base video first
    chat.result({"video": "full-1", "passed": False, "failed": ["check[0]:x"], "loss": 0.9})
    assert chat.next_call() == ("optimize", {"steps": 4})
    chat.result(burst([2.0, 1.5, 1.0, 0.6], left=8))  # still falling fast
    assert chat.next_call() == ("optimize", {"steps": 4})
    chat.result(burst([0.5, 0.3, 0.2, 0.15], left=4))  # under tau
    assert chat.next_call() == ("verify", {"iterate": "best"})
    chat.result({"video": "full-2", "passed": True, "failed": [], "loss": 0.15})
    name, args = chat.next_call()
    assert (name, args["decision"], args["video"]) == ("finish", "accept", "full-2")


def test_policy_accepts_a_base_video_that_passes_without_optimizing() -> None:
    chat = Conversation(get_task("mini/recolor/2", num_frames=K))
    chat.next_call()
    chat.result({"accepted": True, "version": 1})
    assert chat.next_call() == ("verify", {"iterate": "current"})
    chat.result({"video": "full-1", "passed": True, "failed": [], "loss": 0.01})
    name, args = chat.next_call()
    assert (name, args["decision"], args["video"]) == ("finish", "accept", "full-1")


def test_fixed_step_policy_skips_the_base_check() -> None:
    chat = Conversation(get_task("mini/recolor/2", num_frames=K))
    chat.teacher = OfflineTeacher(OfflinePolicyConfig(burst=4, until_budget=True))
    chat.next_call()
    chat.result({"accepted": True, "version": 1})
    assert chat.next_call() == ("optimize", {"steps": 4})


def test_policy_revises_when_converged_but_a_verifier_fails_then_gives_up_at_budget() -> None:
    chat = Conversation(get_task("mini/pairs/1", num_frames=K))
    name, spec = chat.next_call()
    chat.result({"accepted": True, "version": 1})
    assert chat.next_call() == ("verify", {"iterate": "current"})
    base_failed = ["verifier[0]", "check[0]:x", "check[1]:y"]
    chat.result({"video": "full-0", "passed": False, "failed": base_failed, "loss": 0.95})
    assert chat.next_call()[0] == "optimize"
    chat.result(burst([0.9, 0.89, 0.89, 0.885], left=4))  # converged above tau
    assert chat.next_call()[0] == "verify"
    chat.result(
        {"video": "full-1", "passed": False, "failed": ["verifier[0]", "check[0]:x"], "loss": 0.88}
    )
    name, revised = chat.next_call()
    assert name == "revise_reward_spec"
    assert revised["process"][-1] == spec["verifiers"][0]  # the verifier is now optimized
    assert revised["checks"][0]["weight"] == 2.0
    chat.result({"accepted": True, "version": 2})
    assert chat.next_call() == ("optimize", {"steps": 4})
    chat.result(burst([0.8, 0.7, 0.6, 0.5], left=0))
    assert chat.next_call()[0] == "verify"  # no steps left: look at the best
    chat.result({"video": "full-2", "passed": False, "failed": ["check[0]:x"], "loss": 0.5})
    name, args = chat.next_call()
    # It ends with the verified video that fails the fewest terms.
    assert (name, args["decision"], args["video"]) == ("finish", "give_up", "full-2")


def test_giving_up_keeps_the_least_failing_verified_video_even_the_base() -> None:
    chat = Conversation(get_task("mini/navigate/3", num_frames=K))
    chat.next_call()
    chat.result({"accepted": True, "version": 1})
    chat.next_call()  # the base video
    chat.result({"video": "full-1", "passed": False, "failed": ["check[2]:z"], "loss": 0.4})
    chat.next_call()
    chat.result(burst([0.9, 0.7, 0.5, 0.3], left=0, stop="max_steps"))
    assert chat.next_call()[0] == "verify"
    chat.result(
        {"video": "full-2", "passed": False, "failed": ["check[0]:x", "check[2]:z"], "loss": 0.1}
    )
    name, args = chat.next_call()
    assert (name, args["decision"], args["video"]) == ("finish", "give_up", "full-1")


def test_policy_on_a_non_mini_task_writes_its_own_questions() -> None:
    task = get_task("mini/navigate/2", num_frames=K)
    chat = Conversation(task)
    head = chat.messages[1]["content"][0]
    head["text"] = head["text"].replace(f"Task {task.task_id}:", "Task vbvr/nav/obstacles/0007:")
    name, spec = chat.next_call()
    assert name == "write_reward_spec"
    reading = read_task(task.instruction, task.first_frame)
    assert spec == spec_for(reading)  # what the teacher wrote before mini phrasings existed


def test_policy_falls_back_to_questions_then_gives_up_on_rejected_specs() -> None:
    chat = Conversation(get_task("mini/recolor/0", num_frames=K))
    assert "checks" in chat.next_call()[1]
    chat.result({"error": "The reward spec is invalid"})
    name, spec = chat.next_call()
    assert name == "write_reward_spec" and "checks" not in spec
    chat.result({"error": "The reward spec is invalid"})
    name, args = chat.next_call()
    assert (name, args["decision"]) == ("finish", "give_up")
