"""The mini scorer's training path: same numbers as the VQA scorer, and a run that learns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from evals.mini.scorer_data import ScorerDataConfig, palette_targets, to_frames
from evals.mini.train_scorer import (
    ALIGN_MIN_SHARE,
    CARD_NAME,
    CRITERIA,
    BatchedAnswerer,
    ColorAlignHead,
    CriteriaHead,
    Item,
    ScorerTrainConfig,
    answer_loss,
    build_scorer_model,
    corpus,
    items_from_examples,
    lr_at,
    step_losses,
    train,
    train_batch,
)
from evals.tasks import get_task, perturb
from evals.tasks.palette import OBJECT_COLORS, rgb
from reasoner.errors import ConfigError
from reasoner.vlm_builders import TinyQwenVLConfig
from reasoner.vqa import VQAScorer


def _tiny_model(family: str = "qwen3_vl") -> TinyQwenVLConfig:
    return TinyQwenVLConfig(
        family=family,
        text_hidden_size=32,
        text_layers=1,
        text_heads=2,
        text_kv_heads=1,
        text_intermediate_size=48,
        vision_hidden_size=16,
        vision_depth=1,
        vision_heads=2,
        vision_intermediate_size=32,
        patch_size=4,
        num_position_embeddings=64,
    )


def _tiny_config(family: str = "qwen3_vl", **changes: object) -> ScorerTrainConfig:
    fields: dict[str, object] = {
        "model": _tiny_model(family),
        "vocab_size": 512,
        "data": ScorerDataConfig(families=["navigate", "recolor"]),
        "steps": 2,
        "tasks_per_step": 2,
        "videos_per_task": 1,
        "warmup_steps": 1,
        "calibration_tasks": 1,
        "eval_tasks_per_family": 2,
        "eval_videos_per_task": 2,
        "num_threads": 1,
    }
    return ScorerTrainConfig.model_validate(fields | changes)


def _items() -> list[Item]:
    task = get_task("mini/navigate/4")
    video = to_frames(np.asarray(task.solution))
    broken = to_frames(perturb(task, "rule_break", 0))
    return [
        Item(
            video, 0, ("Does the red square end on the blue square?", "Is it whole?"), (True, True)
        ),
        Item(broken[13:], 13, ("Does the square stay off every black obstacle?",), (False,)),
        Item(video[:6], 0, ("Is the square visible and whole in every frame?",) * 3, (True,) * 3),
    ]


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen2_5_vl"])
def test_batched_answers_equal_the_vqa_scorers(family: str) -> None:
    """Training sees exactly what the scorer computes at test time (one batch, shared video)."""
    model, tokenizer = build_scorer_model(_tiny_config(family))
    items = _items()
    with torch.no_grad():
        batched = BatchedAnswerer(model, tokenizer).logits(items)
        scorer = VQAScorer(model, tokenizer)
        reference = [
            (-float(s.nll), float(np.log(s.p_no)))
            for item in items
            for s in scorer.score(
                item.frames, list(item.questions), first_frame_index=item.first_index
            )
        ]
    assert batched.shape == (6, 2)
    torch.testing.assert_close(batched, torch.tensor(reference), atol=1e-5, rtol=1e-5)


def test_answer_loss_reaches_the_vision_encoder_and_the_pixels() -> None:
    model, tokenizer = build_scorer_model(_tiny_config())
    model.train().requires_grad_(True)
    items = _items()
    frames = items[0].frames.clone().requires_grad_(True)
    items[0] = Item(frames, 0, items[0].questions, items[0].answers)
    loss, accuracy = answer_loss(BatchedAnswerer(model, tokenizer), items)
    loss.backward()
    assert loss.ndim == 0 and 0.0 <= accuracy <= 1.0
    assert frames.grad is not None and frames.grad.abs().sum() > 0
    patch = model.model.visual.patch_embed.proj.weight
    assert patch.grad is not None and patch.grad.abs().sum() > 0


def test_colour_alignment_targets_and_learning() -> None:
    """The alignment loss targets the colours a token's pixels show, and a few steps of it
    make a colour's vision tokens closest to that colour word's embedding."""
    model, tokenizer = build_scorer_model(_tiny_config())
    model.train().requires_grad_(True)
    answerer = BatchedAnswerer(model, tokenizer)
    head = ColorAlignHead.for_tokenizer(tokenizer)
    red, blue = (torch.tensor(rgb(c), dtype=torch.float32) / 255 for c in ("red", "blue"))
    frames = torch.ones(2, 3, 32, 32)  # white background, a red block and a blue block
    frames[:, :, :8, :8] = red[:, None, None]
    frames[:, :, 16:24, 16:24] = blue[:, None, None]
    pre = answerer.preprocess
    palette = palette_targets(frames, pre.patch_size, pre.merge_size, pre.temporal_patch_size)
    shown = (palette[:, :, head.palette_index].amax(dim=1) >= ALIGN_MIN_SHARE).float()
    expected = torch.zeros(16, len(OBJECT_COLORS))  # 4 x 4 tokens of 8 px, row-major
    expected[0, OBJECT_COLORS.index("red")] = 1
    expected[10, OBJECT_COLORS.index("blue")] = 1
    assert torch.equal(shown, expected)

    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-2)
    for _ in range(30):
        _, tokens = answerer.forward([Item(frames, 0, ("Is it red?",), (True,))])
        loss = head.loss(tokens, model.get_input_embeddings().weight, palette)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        _, tokens = answerer.forward([Item(frames, 0, ("Is it red?",), (True,))])
        logits = head.logits(tokens, model.get_input_embeddings().weight)
    assert logits[0].argmax() == OBJECT_COLORS.index("red")
    assert logits[10].argmax() == OBJECT_COLORS.index("blue")
    assert logits[0, OBJECT_COLORS.index("red")] > logits[5, OBJECT_COLORS.index("red")]


def test_criteria_head_loss_is_the_bce_of_the_criteria_a_window_shows() -> None:
    head = CriteriaHead(hidden_size=3, families=["navigate", "recolor"], seed=0)
    pooled = [
        torch.tensor([1.0, -2.0, 0.5]),
        torch.tensor([0.0, 1.0, 1.0]),
        torch.zeros(3),
        torch.ones(3),
    ]
    frames = torch.zeros(2, 3, 32, 32)
    items = [
        Item(frames, 0, ("q",), (True,), family="recolor", criteria=(True, False, True, True)),
        Item(frames, 0, ("q",), (True,), family="navigate", criteria=None),
        Item(frames, 0, ("q",), (True,), family="navigate", criteria=(False,) * 4),
        Item(frames, 5, ("q",), (True,), family="navigate", criteria=(True, None, None, None)),
    ]
    weight, bias = head.linear.weight.detach(), head.linear.bias.detach()
    logits = [
        *(weight[4:8] @ pooled[0] + bias[4:8]).tolist(),
        *(weight[0:4] @ pooled[2] + bias[0:4]).tolist(),
        (weight[0] @ pooled[3] + bias[0]).item(),
    ]
    targets = [1, 0, 1, 1, 0, 0, 0, 0, 1]
    sigmoid = [1 / (1 + np.exp(-z)) for z in logits]
    expected = -np.mean(
        [np.log(p) if t else np.log(1 - p) for p, t in zip(sigmoid, targets, strict=True)]
    )
    assert head.loss(pooled, items).item() == pytest.approx(expected, rel=1e-5)
    assert head.loss(pooled[1:2], items[1:2]).item() == 0.0


def test_items_carry_the_criteria_their_window_shows() -> None:
    cfg = _tiny_config(probe_only_steps=0)
    examples = train_batch(cfg, 0, None)
    frames = examples[0].video.shape[0]
    for ex in examples:
        for item in items_from_examples([ex], cfg.data, None):
            met = tuple(ex.criteria[c] >= 1.0 for c in CRITERIA)
            last = item.first_index + item.frames.shape[0] == frames
            assert item.family == ex.family
            if item.frames.shape[0] == frames:
                assert item.criteria == met
            elif last:
                assert item.criteria == (met[0], None, None, None)
            else:
                assert item.criteria is None
    windows = {i.frames.shape[0] for i in items_from_examples(examples, cfg.data, None)}
    assert frames in windows and len(windows) > 1  # both kinds were exercised


def test_the_criteria_loss_is_added_and_reaches_the_vision_encoder() -> None:
    cfg = _tiny_config(probe_only_steps=0)
    model, tokenizer = build_scorer_model(cfg)
    model.train().requires_grad_(True)
    answerer = BatchedAnswerer(model, tokenizer)
    head = CriteriaHead(model.config.vision_config.out_hidden_size, cfg.data.families, 0)
    items = items_from_examples(train_batch(cfg, 0, None), cfg.data, None)
    with torch.no_grad():
        plain = step_losses(answerer, items, None, 0.0)
        both = step_losses(answerer, items, None, 0.0, None, 0.0, head, 2.0)
    assert both.criteria_loss > 0
    assert both.loss.item() == pytest.approx(plain.loss.item() + 2.0 * both.criteria_loss)

    # The criteria loss alone moves the vision encoder.
    _, tokens = answerer.forward(items)
    sizes = [len(palette_targets(i.frames, *_patching(answerer))) for i in items]
    head.loss([t.mean(0) for t in tokens.split(sizes)], items).backward()
    patch = model.model.visual.patch_embed.proj.weight
    assert patch.grad is not None and patch.grad.abs().sum() > 0


def _patching(answerer: BatchedAnswerer) -> tuple[int, int, int]:
    pre = answerer.preprocess
    return pre.patch_size, pre.merge_size, pre.temporal_patch_size


def test_the_curriculum_trains_probe_questions_first() -> None:
    cfg = _tiny_config(probe_only_steps=3)
    early = [r.role for ex in train_batch(cfg, 2, None) for r in ex.rows]
    late = [r.role for ex in train_batch(cfg, 3, None) for r in ex.rows]
    assert set(early) == {"probe"}
    assert {"probe", "goal", "process"} <= set(late)
    with pytest.raises(ValueError, match="probe_questions"):
        _tiny_config(probe_only_steps=3, data=ScorerDataConfig(probe_questions=0))


def test_the_tokenizer_covers_every_question_word_and_one_token_answers() -> None:
    cfg = _tiny_config()
    _, tokenizer = build_scorer_model(cfg)
    assert len(tokenizer("Yes", add_special_tokens=False).input_ids) == 1
    assert len(tokenizer("No", add_special_tokens=False).input_ids) == 1
    assert any("square" in text for text in corpus(cfg))


def test_learning_rate_warms_up_then_decays() -> None:
    cfg = ScorerTrainConfig(steps=100, warmup_steps=10, lr=1e-3, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(1e-4)
    assert lr_at(9, cfg) == pytest.approx(1e-3)
    assert lr_at(99, cfg) == pytest.approx(1e-4, rel=0.05)
    assert lr_at(50, cfg) < lr_at(20, cfg)


def test_two_training_steps_change_the_weights_and_save_a_loadable_scorer(tmp_path: Path) -> None:
    cfg = _tiny_config()
    init, _ = build_scorer_model(cfg)
    card = train(cfg, tmp_path, progress=False)
    trained = load_file(tmp_path / "model.safetensors")
    before = dict(init.state_dict())
    changed = [name for name, w in trained.items() if not torch.equal(w, before[name])]
    assert changed, "training left every weight as it was"
    assert any("visual" in n for n in changed) and any("language_model" in n for n in changed)
    # The folder is a Qwen-VL checkpoint the real scorer path loads.
    scorer = VQAScorer.from_pretrained(str(tmp_path))
    task = get_task("mini/recolor/1")
    (score,) = scorer.score(to_frames(np.asarray(task.solution)), ["Is every square whole?"])
    assert 0.0 < score.p_yes < 1.0
    saved = json.loads((tmp_path / CARD_NAME).read_text())
    assert saved == json.loads(json.dumps(card))
    assert saved["recipe"]["steps"] == 2 and len(saved["history"]) == 1
    assert saved["device"] == "cpu"
    evaluation = saved["evaluation"]
    assert evaluation["rows"] > 0 and 0.0 <= evaluation["accuracy"]["all"] <= 1.0
    assert set(evaluation["accuracy"]) >= {"family/navigate", "family/recolor", "role/goal"}


def test_training_is_reproducible(tmp_path: Path) -> None:
    cfg = _tiny_config(steps=1)
    train(cfg, tmp_path / "a", evaluate_after=False, progress=False)
    train(cfg, tmp_path / "b", evaluate_after=False, progress=False)
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_device_this_machine_lacks_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--device 'gpu' is not a torch device"):
        train(_tiny_config(steps=1), tmp_path / "a", progress=False, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"no CUDA GPU is visible; pass --device cpu"):
            train(_tiny_config(steps=1), tmp_path / "a", progress=False, device="cuda")
    assert not (tmp_path / "a").exists()


def test_bad_recipes_are_rejected() -> None:
    with pytest.raises(ValueError, match="steps"):
        ScorerTrainConfig(steps=0)
    with pytest.raises(ValueError, match="extra"):
        ScorerTrainConfig.model_validate({"stepz": 3})


def test_evaluate_scorer_cli_asks_either_set_of_phrasings(tmp_path: Path) -> None:
    """The teacher's (trained) phrasings carry the colour probes too; the task-question
    accuracy leaves them out and is the row-weighted mean of the task roles."""
    from typer.testing import CliRunner

    from evals.mini import evaluate_scorer

    train(_tiny_config(steps=1), tmp_path / "scorer", evaluate_after=False, progress=False)
    runner = CliRunner()
    results = {}
    for phrasings in ("train", "held_out"):
        out = tmp_path / f"{phrasings}.json"
        args = ["--scorer", str(tmp_path / "scorer"), "--phrasings", phrasings, "--no-vgm"]
        args += ["--tasks-per-family", "1", "--split", "val", "--out", str(out)]
        outcome = runner.invoke(evaluate_scorer.app, args)
        assert outcome.exit_code == 0, outcome.output
        assert "task_questions" in outcome.output
        results[phrasings] = json.loads(out.read_text())
    trained, held_out = results["train"], results["held_out"]
    assert trained["phrasings"] == "train" and trained["split"] == "val"
    assert "role/probe" in trained["accuracy"] and "role/probe" not in held_out["accuracy"]
    for result in results.values():
        acc, rows = result["accuracy"], result["rows_per_group"]
        roles = [k for k in acc if k.startswith("role/") and k != "role/probe"]
        correct = sum(acc[k] * rows[k] for k in roles)
        assert rows["task_questions"] == sum(rows[k] for k in roles)
        assert acc["task_questions"] == pytest.approx(correct / rows["task_questions"], abs=1e-3)
    bad = runner.invoke(evaluate_scorer.app, ["--scorer", str(tmp_path), "--no-vgm"])
    assert bad.exit_code == 2 and "evals.mini.train_scorer" in bad.output
    for option, value in (("--split", "train"), ("--phrasings", "paraphrased")):
        refused = runner.invoke(evaluate_scorer.app, [option, value, "--no-vgm"])
        assert refused.exit_code == 2 and value in refused.output, refused.output


def test_a_time_limited_run_resumes_to_the_weights_and_log_of_one_run(tmp_path: Path) -> None:
    cfg = _tiny_config(steps=3, log_every=2)
    straight = train(cfg, tmp_path / "a", evaluate_after=False, progress=False)
    assert straight is not None

    # A clock that moves one second per reading against a half-second limit: every run
    # stops after its first checkpoint, until the last step ends the recipe.
    ticks = iter(range(10_000))
    results = []
    for _ in range(5):
        card = train(
            cfg,
            tmp_path / "b",
            evaluate_after=False,
            progress=False,
            work_dir=tmp_path / "work",
            checkpoint_every=1,
            time_limit_s=0.5,
            clock=lambda: float(next(ticks)),
        )
        results.append(card)
        if card is not None:
            break
    assert results[:2] == [None, None] and results[2] is not None and len(results) == 3
    a = load_file(tmp_path / "a" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # The log window (steps 1-2) was carried across the stop after step 1.
    assert results[2]["history"] == straight["history"]

    with pytest.raises(ValueError, match="different recipe"):
        train(_tiny_config(steps=4), tmp_path / "c", progress=False, work_dir=tmp_path / "work")
    # Another thread count resumes the same run (a laptop's run going on on a larger machine).
    threads = torch.get_num_threads()
    try:
        more_threads = cfg.model_copy(update={"num_threads": cfg.num_threads + 1})
        again = train(
            more_threads,
            tmp_path / "e",
            evaluate_after=False,
            progress=False,
            work_dir=tmp_path / "work",
        )
    finally:
        torch.set_num_threads(threads)
    assert again is not None and again["history"] == straight["history"]
    e = load_file(tmp_path / "e" / "model.safetensors")
    assert all(torch.equal(a[k], e[k]) for k in a)  # nothing left to train: step 3 of 3
    with pytest.raises(ValueError, match="needs a work_dir"):
        train(cfg, tmp_path / "d", progress=False, time_limit_s=60)
