"""The mini scorer's examples: checker labels, determinism, balance, absent colours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evals.mini.questions import object_colors
from evals.mini.scorer_data import (
    PROBES,
    SYNTHETIC_KINDS,
    ScorerDataConfig,
    absent_colors,
    balance,
    colors_present,
    distinct_perturbations,
    examples_for_tasks,
    palette_targets,
    split_tasks,
    synthetic_video,
    to_frames,
    train_tasks,
    yes_rates,
)
from evals.tasks import FAMILIES, check, get_task, perturb
from evals.tasks.palette import OBJECT_COLORS, rgb
from evals.tasks.splits import split_of_seed

CFG = ScorerDataConfig()


def _examples(seed: tuple[int, ...] = (0,), held_out: bool = False):
    tasks = train_tasks(CFG, [7], step=3, count=8)
    return examples_for_tasks(tasks, CFG, seed, videos_per_task=3, held_out=held_out)


def test_examples_are_a_pure_function_of_the_seed() -> None:
    a, b, c = _examples((0,)), _examples((0,)), _examples((1,))
    assert [e.rows for e in a] == [e.rows for e in b]
    assert all(np.array_equal(x.video, y.video) for x, y in zip(a, b, strict=True))
    assert [e.rows for e in a] != [e.rows for e in c]


def test_labels_are_the_checkers_verdicts() -> None:
    examples = _examples()
    assert {e.family for e in examples} == set(FAMILIES)
    for ex in examples:
        task = get_task(ex.task_id, num_frames=CFG.num_frames)
        criteria = check(task, ex.video).criteria
        assert criteria == ex.criteria
        for row in ex.rows:
            if row.role == "probe":  # answered from pixels (test below)
                continue
            if row.absent_color:
                assert row.answer is False
            else:
                assert row.answer == (criteria[row.criterion] >= 1.0), (ex.source, row)
            assert not row.held_out
            n = len(row.window)
            assert row.window == tuple(range(task.num_frames - n, task.num_frames))
            if row.role != "goal":
                assert n == task.num_frames


def test_absent_colour_questions_name_a_colour_missing_from_every_frame() -> None:
    cfg = CFG.model_copy(update={"absent_color_share": 1.0})
    tasks = train_tasks(cfg, [1], step=0, count=8)
    examples = examples_for_tasks(tasks, cfg, (0,), videos_per_task=2, held_out=False)
    swapped = [(ex, r) for ex in examples for r in ex.rows if r.absent_color]
    assert len(swapped) >= len(examples) // 2
    for ex, row in swapped:
        task = get_task(ex.task_id, num_frames=CFG.num_frames)
        named = set(object_colors(row.text))
        new = named - set(object_colors(task.instruction))
        assert len(new) == 1 and new <= set(absent_colors(ex.video))
        assert row.role == "goal" and row.answer is False


def test_colours_are_present_from_four_pixels_on() -> None:
    video = np.full((2, 16, 16, 3), 255, dtype=np.uint8)  # white
    video[0, 0:2, 0:2] = rgb("red")  # 4 px: present
    video[1, 5, 5:8] = rgb("blue")  # 3 px: not yet
    assert colors_present(video) == {"red"}
    assert colors_present(video[1:]) == set()


def test_probe_questions_are_pairs_that_differ_only_in_the_colour() -> None:
    examples = _examples()
    pairs = 0
    for ex in examples:
        probes = [r for r in ex.rows if r.role == "probe"]
        assert probes and len(probes) <= CFG.probe_questions
        for row in probes:
            template, frames = PROBES[row.criterion]
            (color,) = [c for c in OBJECT_COLORS if template.format(color=c) == row.text]
            assert row.answer == (color in colors_present(ex.video[frames]))
            assert row.window == tuple(range(ex.video.shape[0]))
        for yes, no in zip(probes[::2], probes[1::2], strict=False):
            if yes.criterion == no.criterion and yes.answer and not no.answer:
                pairs += 1
    # Nearly every video shows some but not all colours: (almost) every probe is half a pair.
    assert pairs >= 0.9 * sum(len([r for r in e.rows if r.role == "probe"]) for e in examples) / 2
    held_out = _examples(held_out=True)
    assert not any(r.role == "probe" for e in held_out for r in e.rows)


def test_balance_evens_out_yes_and_no() -> None:
    examples = examples_for_tasks(
        train_tasks(CFG, [2], step=0, count=40), CFG, (0,), videos_per_task=4, held_out=False
    )
    rates = yes_rates(examples)
    assert max(rates.values()) > 0.7  # unbalanced before
    balanced = balance(examples, rates, np.random.default_rng(0))
    answers = [r.answer for e in balanced for r in e.rows]
    assert abs(np.mean(answers) - 0.5) < 0.08


def test_held_out_examples_use_held_out_splits_and_paraphrases() -> None:
    tasks = split_tasks(CFG, "test", per_family=2)
    assert {split_of_seed(t.seed) for t in tasks} == {"test"}
    examples = examples_for_tasks(tasks, CFG, (3,), videos_per_task=2, held_out=True)
    assert all(r.held_out for e in examples for r in e.rows)


@pytest.mark.parametrize("kind", SYNTHETIC_KINDS)
def test_synthetic_videos_are_valid_videos_of_the_task(kind: str) -> None:
    task = get_task("mini/pairs/5")
    variants = {"solution": np.asarray(task.solution)}
    variants |= {k: perturb(task, k, 0) for k in distinct_perturbations("pairs")}
    video = synthetic_video(kind, task, variants, np.random.default_rng(0))
    assert video.dtype == np.uint8 and video.shape == task.solution.shape
    assert check(task, video).reason  # the checker scores it (never raises)
    with pytest.raises(ValueError, match="unknown synthetic kind"):
        synthetic_video("melt", task, variants, np.random.default_rng(0))


def test_nuisance_jitter_is_seeded_and_small() -> None:
    video = np.asarray(get_task("mini/recolor/2").solution)
    clean = to_frames(video)
    assert clean.shape == (video.shape[0], 3, video.shape[1], video.shape[2])
    a = to_frames(video, CFG.nuisance, torch.Generator().manual_seed(0))
    b = to_frames(video, CFG.nuisance, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, clean)
    assert float((a - clean).abs().mean()) < 0.1
    with pytest.raises(ValueError, match="seeded"):
        to_frames(video, CFG.nuisance)


def test_bad_data_configs_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"unknown families.*use some of navigate"):
        ScorerDataConfig(families=["sokoban"])
    with pytest.raises(ValueError, match="at least one"):
        ScorerDataConfig(families=[])
    with pytest.raises(ValueError, match="source_weights"):
        ScorerDataConfig(source_weights={"solution": 0.0})
    with pytest.raises(ValueError, match="source_weights"):
        ScorerDataConfig(source_weights={"internet": 1.0})


def test_palette_targets_say_which_colour_each_patch_of_each_token_holds() -> None:
    """Hand-built frames: 3 frames of 16 px, patch 4, merge 2, temporal patch 2."""
    frames = torch.ones(3, 3, 16, 16)  # white
    frames[0, :, 0:4, 4:8] = torch.tensor([220, 40, 40]).view(3, 1, 1) / 255  # red patch
    frames[2, :, 8:10, 12:16] = 0.0  # half a patch black, in the padded group
    frames[1, :, 12:16, 0:4] = 0.5  # grey: far from every palette colour
    target = palette_targets(frames, patch_size=4, merge_size=2, temporal_patch_size=2)
    # 2 temporal groups (frame 2 repeated) x 2x2 blocks; per token 2 frames x 2x2 patches.
    assert target.shape == (8, 8, 9)
    torch.testing.assert_close(target.sum(-1), torch.ones(8, 8))
    white, red, black, unknown = 0, 2, 1, 8
    # Token (group 0, block 0,0), frame 0, patch (row 0, col 1) is all red.
    assert target[0, 0 * 4 + 0 * 2 + 1, red] == 1.0
    assert target[0, 1 * 4 + 0 * 2 + 1, white] == 1.0  # same patch in frame 1: white
    # Group 0, block (1, 0), frame 1, patch (1, 0): grey = no palette colour.
    assert target[2, 1 * 4 + 1 * 2 + 0, unknown] == 1.0
    # Group 1, block (1, 1), both frames (the second is the repeated last frame), patch (0, 1).
    for frame in (0, 1):
        row = target[4 + 3, frame * 4 + 0 * 2 + 1]
        assert row[black] == 0.5 and row[white] == 0.5


def test_video_model_samples_become_checker_labelled_examples() -> None:
    from evals.mini.scorer_data import vgm_sampler
    from reasoner.config import load_reasoner_config
    from reasoner.video_model import VideoReasoner

    cfg = load_reasoner_config(Path(__file__).parents[1] / "configs/reasoner/tiny-pixel.yaml")
    data = cfg.model_dump()
    data["video_model"] |= {"height": 16, "width": 16, "num_frames": 5}
    reasoner = VideoReasoner.from_config(type(cfg).model_validate(data))
    sampler = vgm_sampler(reasoner, drift_std=0.05)
    task = get_task("mini/maze/8", size=16, num_frames=5)
    first = sampler(task, 3)
    assert [name for name, _ in first] == ["one_step", "sample", "drift"]
    for _, video in first:
        assert video.dtype == np.uint8 and video.shape == task.solution.shape
        np.testing.assert_array_equal(video[0], task.first_frame)  # the clean condition
    assert not np.array_equal(first[0][1], first[2][1])  # the drifted LoRA changed the video
    assert all(
        float(p.abs().sum()) == 0 for n, p in reasoner.lora.state_dict().items() if ".lora_B." in n
    )  # and was reset afterwards
    again = sampler(task, 3)
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(first, again, strict=True))

    data = ScorerDataConfig(source_weights={"vgm": 1.0})
    examples = examples_for_tasks(
        [task], data, (0,), videos_per_task=3, held_out=False, sampler=sampler
    )
    assert {e.source for e in examples} <= {"vgm:one_step", "vgm:sample", "vgm:drift"}
    for ex in examples:
        assert ex.criteria == check(task, ex.video).criteria
