"""The VQA scorer on tiny random-init Qwen2.5-VL and Qwen3-VL models (real transformers classes)."""

from __future__ import annotations

import pytest
import torch
from tiny_vlm import FAMILIES, NATIVE_SIDE, QUESTIONS, random_frames, tiny_model, tiny_scorer

from reasoner.errors import ConfigError
from reasoner.vlm_builders import build_tiny_qwen_vl, real_shape_config
from reasoner.vqa import PROMPT_FORMATS, VQAScorer, VQAScorerConfig, _frame_times


def reference_nll(scorer: VQAScorer, frames: torch.Tensor, question: str, answer: str) -> float:
    """-log P(answer | frames, question) through the model's plain forward: one unpadded
    sequence, pixels in, full logits out (no shared features, no batching)."""
    from reasoner.vlm_preprocess import preprocess_video

    vision = preprocess_video(frames, scorer.preprocess)
    grid = vision.grid_thw[0]
    per_group = int(grid[1] * grid[2]) // scorer.preprocess.merge_size**2
    times = _frame_times(frames.shape[0], 0, 2, scorer.config.fps)
    text = PROMPT_FORMATS[scorer.family](
        question + scorer.config.question_suffix, grid, per_group, times, None
    )
    prompt = scorer.tokenizer(text, add_special_tokens=False).input_ids
    target = scorer.tokenizer(answer, add_special_tokens=False).input_ids
    ids = torch.tensor([prompt + target])
    extra = {}
    if scorer.family == "qwen2_5_vl":
        extra["second_per_grid_ts"] = torch.tensor([2 / scorer.config.fps])
    with torch.no_grad():
        logits = scorer.model(
            input_ids=ids,
            pixel_values_videos=vision.pixel_values,
            video_grid_thw=vision.grid_thw,
            mm_token_type_ids=(ids == scorer.model.config.video_token_id).long() * 2,
            **extra,
        ).logits[0]
    logprobs = torch.log_softmax(logits, dim=-1)
    start = len(prompt)
    return -sum(float(logprobs[start - 1 + k, tok]) for k, tok in enumerate(target))


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_every_pixel_of_every_frame(family: str) -> None:
    scorer = tiny_scorer(family)
    # 5 frames (odd: the last is repeated into the final temporal patch), resized up.
    frames = random_frames(5, 20, 36).requires_grad_(True)
    scores = scorer.score(frames, list(QUESTIONS[:2]))
    sum(s.nll for s in scores).backward()
    assert frames.grad is not None
    assert (frames.grad != 0).all()
    assert not any(p.requires_grad for p in scorer.model.parameters())


@pytest.mark.parametrize("family", FAMILIES)
def test_batched_scores_equal_one_by_one_and_the_plain_forward(family: str) -> None:
    side = NATIVE_SIDE[family]
    frames = random_frames(4, side, 2 * side, seed=3)
    batched = tiny_scorer(family, max_queries_per_pass=8).score(frames, list(QUESTIONS))
    chunked = tiny_scorer(family, max_queries_per_pass=3).score(frames, list(QUESTIONS))
    singles = [tiny_scorer(family).score(frames, [q])[0] for q in QUESTIONS]
    for b, c, s in zip(batched, chunked, singles, strict=True):
        assert float(b.nll) == pytest.approx(float(s.nll), abs=1e-5)
        assert float(c.nll) == pytest.approx(float(s.nll), abs=1e-5)
    for q, b in zip(QUESTIONS, batched, strict=True):
        assert float(b.nll) == pytest.approx(
            reference_nll(tiny_scorer(family), frames, q, "Yes"), abs=1e-4
        )
        assert b.p_yes == pytest.approx(float(torch.exp(-b.nll)), rel=1e-6)
    # Different questions give different numbers: the batch did not mix them up.
    assert len({round(float(b.nll), 6) for b in batched}) == len(QUESTIONS)


@pytest.mark.parametrize("family", FAMILIES)
def test_yes_no_normalisation(family: str) -> None:
    scorer = tiny_scorer(family)
    frames = random_frames(3, 24, 24, seed=5)
    raw = scorer.score(frames, list(QUESTIONS[:2]))
    norm = scorer.score(frames, list(QUESTIONS[:2]), normalize_yes_no=True)
    for r, n in zip(raw, norm, strict=True):
        p_yes = float(torch.exp(-r.nll))
        assert r.p_no is not None and n.normalized and not r.normalized
        assert n.p_yes == pytest.approx(p_yes / (p_yes + r.p_no), rel=1e-5)
        assert float(n.nll) == pytest.approx(-torch.log(torch.tensor(n.p_yes)).item(), rel=1e-5)


def test_multi_token_answers_are_summed_over_their_tokens() -> None:
    model, tokenizer = tiny_model("qwen3_vl")
    config = VQAScorerConfig(
        answer_yes="Yes, it does", answer_no="No, never", max_pixels=4 * 32 * 32
    )
    scorer = VQAScorer(model, tokenizer, config)
    assert len(scorer._yes_ids) > 1 and len(scorer._no_ids) > 1
    frames = random_frames(2, 32, 32, seed=2)
    (score,) = scorer.score(frames, [QUESTIONS[0]], normalize_yes_no=True)
    nll_yes = reference_nll(scorer, frames, QUESTIONS[0], "Yes, it does")
    nll_no = reference_nll(scorer, frames, QUESTIONS[0], "No, never")
    p_yes, p_no = torch.exp(torch.tensor(-nll_yes)), torch.exp(torch.tensor(-nll_no))
    assert score.p_no == pytest.approx(float(p_no), rel=1e-3)
    assert score.p_yes == pytest.approx(float(p_yes / (p_yes + p_no)), rel=1e-3)


def test_the_vision_encoder_runs_once_per_frame_set() -> None:
    scorer = tiny_scorer("qwen3_vl", max_queries_per_pass=2)
    calls = {"vision": 0, "text": 0}

    def count(name: str):
        def hook(*_: object) -> None:
            calls[name] += 1

        return hook

    handles = [
        scorer.model.model.visual.register_forward_hook(count("vision")),
        scorer.model.model.language_model.register_forward_hook(count("text")),
    ]
    try:
        scorer.score(random_frames(4, 32, 32), list(QUESTIONS))
    finally:
        for h in handles:
            h.remove()
    assert calls == {"vision": 1, "text": 2}  # 4 questions, 2 per language-model pass


def test_qwen3_prompt_has_one_timestamped_span_per_temporal_patch() -> None:
    # 5 frames at 2 fps, temporal patch 2: frames (0,1), (2,3), (4,4) -> 0.25 s, 1.25 s, 2.0 s
    assert _frame_times(5, 0, 2, 2.0) == [0.25, 1.25, 2.0]
    assert _frame_times(2, 6, 2, 2.0) == [3.25]
    prompt = PROMPT_FORMATS["qwen3_vl"]("Q?", torch.tensor([3, 2, 2]), 1, [0.25, 1.25, 2.0], None)
    assert prompt.count("<|vision_start|><|video_pad|><|vision_end|>") == 3
    assert "<1.2 seconds>" in prompt and prompt.endswith("<|im_start|>assistant\n")


def test_save_and_reload_give_the_same_scores(tmp_path) -> None:
    model, tokenizer = build_tiny_qwen_vl("qwen2_5_vl", ["Is the cube green?"], seed=1)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = VQAScorerConfig(max_pixels=4 * 28 * 28)
    frames = random_frames(2, 28, 28, seed=4)
    before = VQAScorer(model, tokenizer, config).score(frames, ["Is the cube green?"])[0]
    loaded = VQAScorer.from_pretrained(str(tmp_path), config=config)
    after = loaded.score(frames, ["Is the cube green?"])[0]
    assert float(after.nll) == pytest.approx(float(before.nll), abs=1e-6)
    assert loaded.tokenizer("Yes").input_ids == tokenizer("Yes").input_ids


def test_seeded_builds_are_reproducible_and_leave_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, _ = build_tiny_qwen_vl("qwen3_vl", ["Yes"], seed=7)
    assert torch.equal(torch.rand(1), expected_next)
    b, _ = build_tiny_qwen_vl("qwen3_vl", ["Yes"], seed=7)
    c, _ = build_tiny_qwen_vl("qwen3_vl", ["Yes"], seed=8)
    pa, pb, pc = (dict(m.named_parameters()) for m in (a, b, c))
    assert all(torch.equal(pa[k], pb[k]) for k in pa)
    assert not all(torch.equal(pa[k], pc[k]) for k in pa)


def test_bad_input_is_rejected_clearly() -> None:
    scorer = tiny_scorer("qwen2_5_vl")
    with pytest.raises(ConfigError, match="list of strings"):
        scorer.score(random_frames(2, 28, 28), "Is it red?")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="shape"):
        scorer.score(torch.zeros(28, 28, 3), ["Is it red?"])
    assert scorer.score(random_frames(2, 28, 28), []) == []


@pytest.mark.slow
def test_real_qwen3_vl_4b_shapes_score_and_backprop() -> None:
    """Real Qwen3-VL-4B widths and patch sizes, one layer each: one scored step on CPU."""
    model, tokenizer = build_tiny_qwen_vl(
        "qwen3_vl", QUESTIONS, config=real_shape_config("qwen3_vl"), seed=0
    )
    assert model.config.text_config.hidden_size == 2560
    assert model.config.vision_config.out_hidden_size == 2560
    scorer = VQAScorer(model, tokenizer, VQAScorerConfig(max_pixels=64 * 64))
    frames = random_frames(2, 64, 64).requires_grad_(True)
    (score,) = scorer.score(frames, [QUESTIONS[0]])
    score.nll.backward()
    assert torch.isfinite(score.nll) and frames.grad is not None and (frames.grad != 0).any()
