"""Mini-world families: generators, rule checkers and rule-breaking variants."""

from __future__ import annotations

import ast
import hashlib
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evals.tasks import (
    FAMILIES,
    SPLITS,
    NoCheckerError,
    Task,
    TaskIdError,
    check,
    get_task,
    iter_split,
    layout_split,
    perturb,
    split_of_seed,
)
from evals.tasks.palette import COLOR_NAMES, COLORS, OBJECT_COLORS
from evals.video_io import read_video, write_video
from reasoner.errors import ConfigError

NAMES = list(FAMILIES)
SEEDS = (0, 1, 2, 3, 4, 5, SPLITS["val"][0], SPLITS["test"][0])


def tasks_of(family: str) -> list[Task]:
    return [get_task(f"mini/{family}/{seed}") for seed in SEEDS]


# -- the solution and the rule-breaking variants ------------------------------------------


@pytest.mark.parametrize("family", NAMES)
def test_solution_scores_one_and_passes(family: str) -> None:
    for task in tasks_of(family):
        result = check(task, task.solution)
        assert result.passed, (task.task_id, result.reason)
        assert result.score == 1.0
        assert set(result.criteria.values()) == {1.0}
        assert result.reason == "all criteria met"


@pytest.mark.parametrize("family", NAMES)
def test_frozen_first_frame_fails_only_the_goal(family: str) -> None:
    for task in tasks_of(family):
        video = perturb(task, "frozen", 0)
        assert (video == task.first_frame).all() and len(video) == task.num_frames
        result = check(task, video)
        assert not result.passed
        assert result.criteria == {
            "reached_goal": 0.0,
            "followed_rule": 1.0,
            "object_intact": 1.0,
            "scene_preserved": 1.0,
        }
        # 0.3 + 0.2 + 0.1 by the documented weights
        assert result.score == pytest.approx(0.6, abs=1e-9)


@pytest.mark.parametrize("family", NAMES)
def test_reaching_the_goal_by_breaking_the_rule_fails_the_rule(family: str) -> None:
    for seed, task in enumerate(tasks_of(family)):
        result = check(task, perturb(task, "rule_break", seed))
        assert result.criteria["reached_goal"] == 1.0, (task.task_id, result.reason)
        assert result.criteria["followed_rule"] == 0.0, task.task_id
        assert not result.passed
        assert "followed_rule" in result.reason


@pytest.mark.parametrize(
    ("family", "alias"),
    [
        ("navigate", "through_obstacle"),
        ("maze", "through_wall"),
        ("pairs", "both_at_once"),
        ("recolor", "recolor_other"),
    ],
)
def test_family_names_for_rule_breaking_are_aliases(family: str, alias: str) -> None:
    task = get_task(f"mini/{family}/3")
    assert (perturb(task, alias, 7) == perturb(task, "rule_break", 7)).all()


@pytest.mark.parametrize("family", NAMES)
@pytest.mark.parametrize("kind", ["vanish", "split"])
def test_vanishing_or_splitting_object_fails_intactness(family: str, kind: str) -> None:
    for seed, task in enumerate(tasks_of(family)):
        result = check(task, perturb(task, kind, seed))
        assert result.criteria["object_intact"] < 1.0, (task.task_id, kind)
        assert not result.passed


@pytest.mark.parametrize("family", NAMES)
@pytest.mark.parametrize("kind", ["wrong_target", "stop_short"])
def test_wrong_target_or_stopping_short_misses_the_goal(family: str, kind: str) -> None:
    for seed, task in enumerate(tasks_of(family)):
        result = check(task, perturb(task, kind, seed))
        assert result.criteria["reached_goal"] < 1.0, (task.task_id, kind)
        assert not result.passed


@pytest.mark.parametrize("family", ["navigate", "maze"])
def test_teleporting_breaks_the_rule(family: str) -> None:
    for task in tasks_of(family):
        result = check(task, perturb(task, "teleport", 0))
        assert result.criteria["followed_rule"] == 0.0 and not result.passed


@pytest.mark.parametrize("family", ["navigate", "maze"])
def test_vanish_score_equals_hand_computed_value(family: str) -> None:
    task = get_task(f"mini/{family}/2")
    video = perturb(task, "vanish", 11)
    agent = np.array(COLORS[task.hidden["agent_color"]], dtype=np.uint8)
    visible = int(sum((frame == agent).all(-1).any() for frame in video))
    assert 0 < visible < task.num_frames
    result = check(task, video)
    # Goal missed, rule kept, intact while visible, scene kept.
    expected = 0.4 * 0 + 0.3 * 1 + 0.2 * visible / task.num_frames + 0.1 * 1
    assert result.score == pytest.approx(expected, abs=1e-6)
    assert result.criteria["object_intact"] == pytest.approx(visible / task.num_frames)


def test_pairs_one_at_a_time_is_judged_over_the_whole_video() -> None:
    # At 33 frames two slow squares take whole-pixel steps on alternating frames;
    # moving both at once must still break the rule.
    task = get_task("mini/pairs/3", num_frames=33)
    assert check(task, task.solution).passed
    assert check(task, perturb(task, "rule_break", 0)).criteria["followed_rule"] == 0.0


@pytest.mark.parametrize("family", NAMES)
def test_scoring_is_deterministic(family: str) -> None:
    task = get_task(f"mini/{family}/5")
    for kind in ("split", "rule_break"):
        video = perturb(task, kind, 3)
        assert (perturb(task, kind, 3) == video).all()
        assert check(task, video) == check(task, video.copy())


@pytest.mark.parametrize("family", NAMES)
def test_unknown_perturbation_is_a_clear_error(family: str) -> None:
    with pytest.raises(ValueError, match="choose one of"):
        perturb(get_task(f"mini/{family}/0"), "explode", 0)


@pytest.mark.parametrize("family", NAMES)
def test_solution_still_passes_after_mp4_and_gif(family: str, tmp_path: Path) -> None:
    task = get_task(f"mini/{family}/9")
    for suffix in ("mp4", "gif"):
        video = read_video(write_video(tmp_path / f"v.{suffix}", task.solution))
        assert check(task, video).passed, suffix


@pytest.mark.parametrize("family", NAMES)
@pytest.mark.parametrize(("size", "frames"), [(16, 9), (64, 17), (32, 33)])
def test_other_sizes_and_lengths_render_and_check(family: str, size: int, frames: int) -> None:
    task = get_task(f"mini/{family}/4", size=size, num_frames=frames)
    assert task.solution.shape == (frames, size, size, 3)
    assert check(task, task.solution).passed
    assert not check(task, perturb(task, "rule_break", 0)).passed


# -- bad input --------------------------------------------------------------------------


@pytest.mark.parametrize("family", NAMES)
def test_bad_videos_get_zero_and_the_reason(family: str) -> None:
    task = get_task(f"mini/{family}/1")
    bad = {
        "frames": task.solution[:-1],
        "32x32": np.zeros((task.num_frames, 16, 16, 3), np.uint8),
        "dtype": task.solution.astype(np.float32) / 255,
        "shape": task.solution[..., 0],
        "numpy": task.solution.tolist(),
    }
    for word, video in bad.items():
        result = check(task, video)
        assert result.score == 0.0 and not result.passed
        assert set(result.criteria.values()) == {0.0}
        assert word in result.reason, result.reason


def test_bad_ids_sizes_and_frame_counts_say_what_to_use() -> None:
    for bad in ("mini/nope/1", "navigate/1", "mini/maze/x", "mini/maze/-1"):
        with pytest.raises(TaskIdError, match="navigate"):
            get_task(bad)
    with pytest.raises(ConfigError, match="multiple of 8"):
        get_task("mini/maze/1", size=30)
    with pytest.raises(ConfigError, match="4k\\+1"):
        get_task("mini/maze/1", num_frames=16)


def test_check_refuses_a_task_of_another_family() -> None:
    task = get_task("mini/maze/1")
    with pytest.raises(ValueError, match="belongs to 'maze'"):
        FAMILIES["navigate"].check(task.solution, task)
    foreign = Task("vbvr/x/y/z", "vbvr/x", -1, "do it", task.first_frame.copy(), 17, 32, None)
    with pytest.raises(NoCheckerError, match="no mini-world rule checker"):
        check(foreign, task.solution)


def test_tasks_are_read_only() -> None:
    task = get_task("mini/pairs/1")
    with pytest.raises(ValueError, match="read-only"):
        task.first_frame[0, 0, 0] = 1
    with pytest.raises(ValueError, match="read-only"):
        task.solution[0, 0, 0, 0] = 1


# -- generation ---------------------------------------------------------------------------


@pytest.mark.parametrize("family", NAMES)
def test_generation_is_deterministic_by_seed(family: str) -> None:
    gen = FAMILIES[family].generate  # bypasses get_task's cache
    a, b, c = gen(42), gen(42), gen(43)
    assert a.instruction == b.instruction and a.hidden == b.hidden
    assert (a.first_frame == b.first_frame).all() and (a.solution == b.solution).all()
    assert a.hidden != c.hidden


@pytest.mark.parametrize("family", NAMES)
def test_at_least_ten_thousand_distinct_instances(family: str) -> None:
    # Birthday bound: if a family had at most N = 10,000 distinct first frames, n
    # independent draws would all differ with probability at most
    # prod(1 - i/N) <= exp(-n(n-1)/2N) (the uniform distribution maximises it).
    n, N = 600, 10_000
    frames = {
        hashlib.sha1(get_task(f"mini/{family}/{s}").first_frame.tobytes()).digest()
        for s in range(n)
    }
    assert len(frames) == n
    assert math.exp(-n * (n - 1) / (2 * N)) < 1e-7


@pytest.mark.parametrize("family", NAMES)
def test_instructions_name_palette_colours_and_the_rule(family: str) -> None:
    rule = {  # how each family states its rule
        "navigate": r"\bblack\b",
        "maze": r"\bblack\b|white corridors",
        "pairs": r"\bone\b",
        "recolor": r"\bother\b|\bnot\b",
    }[family]
    shapes = set()
    for seed in range(60):
        task = get_task(f"mini/{family}/{seed}")
        text = task.instruction
        hidden_colours = {v for k, v in task.hidden.items() if k.endswith("color")}
        hidden_colours |= {o["color"] for o in task.hidden.get("objects", [])}
        for colour in hidden_colours:
            assert re.search(rf"\b{colour}\b", text), (task.task_id, colour, text)
        named = {w for w in re.findall(r"[a-z]+", text.lower()) if w in COLOR_NAMES}
        assert named <= set(OBJECT_COLORS) | {"black", "white"}
        assert re.search(rule, text), text
        shapes.add(re.sub("|".join(OBJECT_COLORS), "C", text))
    assert len(shapes) >= 4  # several phrasings per family


def test_splits_are_disjoint_by_seed_and_by_layout() -> None:
    ranges = list(SPLITS.values())
    for i, a in enumerate(ranges):
        for b in ranges[i + 1 :]:
            assert a.stop <= b.start or b.stop <= a.start
    for split, seeds in SPLITS.items():
        for seed in [*seeds[:15], seeds[-1]]:
            assert split_of_seed(seed) == split
            for name, family in FAMILIES.items():
                task = get_task(f"mini/{name}/{seed}")
                assert layout_split(family.layout_of(task.hidden)) == split


def test_iter_split_takes_limit_tasks_per_family() -> None:
    tasks = list(iter_split("test", families=["maze", "recolor"], limit=3))
    assert [t.task_id for t in tasks[:2]] == ["mini/maze/2000000", "mini/recolor/2000000"]
    assert len(tasks) == 6 and all(t.seed in SPLITS["test"] for t in tasks)
    with pytest.raises(TaskIdError, match="train, val, test"):
        next(iter_split("dev"))


def test_checkers_share_no_code_with_the_reward_checks_or_the_renderers() -> None:
    # A checker may use the palette, the grid geometry, its own pixel helpers and
    # the result types; never the spec compiler's checks nor a family's renderer.
    allowed = {"evals.tasks.palette", "evals.tasks.geometry", "evals.checkers.pixels"}
    folder = Path(__file__).parents[1] / "evals" / "checkers"
    for source in folder.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                ours = name.split(".")[0] in {"evals", "reasoner", "agent", "tools"}
                assert not ours or name in allowed, f"{source.name} imports {name}"


@pytest.mark.parametrize(
    "module",
    [
        "evals.checkers.pixels",
        "evals.checkers.navigation",
        "evals.checkers.pairs",
        "evals.checkers.recolor",
    ],
)
def test_a_checker_can_be_imported_first(module: str) -> None:
    # The checkers take the palette from evals.tasks, whose families call the checkers.
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)
