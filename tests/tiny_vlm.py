"""Tiny real Qwen-VL scorers for tests, built once per session (no downloads)."""

from __future__ import annotations

import functools

import torch

from reasoner.vlm_builders import build_tiny_qwen_vl
from reasoner.vqa import VQAScorer, VQAScorerConfig

FAMILIES = ("qwen2_5_vl", "qwen3_vl")
# Side of a frame that needs no resize: patch_size * merge_size.
NATIVE_SIDE = {"qwen2_5_vl": 28, "qwen3_vl": 32}
QUESTIONS = (
    "By the end of the video, is the red ball inside the blue square?",
    "Does the red ball stay in one piece?",
    "Does the ball avoid the green wall?",
    "Is the background unchanged?",
)


@functools.cache
def tiny_model(family: str):
    """(model, tokenizer) of the family, float32, frozen by the scorer."""
    return build_tiny_qwen_vl(family, QUESTIONS, seed=0)


@functools.cache
def tiny_scorer(family: str, max_queries_per_pass: int = 8) -> VQAScorer:
    model, tokenizer = tiny_model(family)
    side = NATIVE_SIDE[family]
    config = VQAScorerConfig(max_pixels=4 * side * side, max_queries_per_pass=max_queries_per_pass)
    return VQAScorer(model, tokenizer, config)


def random_frames(num_frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(num_frames, 3, height, width, generator=generator)
