"""Uniform sampling of K frames from a video, keeping the autograd graph."""

from __future__ import annotations

import torch


def uniform_indices(num_frames: int, k: int) -> list[int]:
    """K frame indices spread evenly over [0, num_frames - 1], first and last included.

    Index i is round(i * (num_frames - 1) / (k - 1)) (halves round up), like
    `numpy.linspace(0, num_frames - 1, k).round()` without float error; k = 1
    gives [0]. With k >= num_frames every frame is returned once.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k >= num_frames:
        return list(range(num_frames))
    if k == 1:
        return [0]
    span, gaps = num_frames - 1, k - 1
    # floor(i * span / gaps + 1/2) in integers
    return [(2 * i * span + gaps) // (2 * gaps) for i in range(k)]


def sample_frames(frames: torch.Tensor, k: int) -> torch.Tensor:
    """frames (F, 3, H, W) -> (min(k, F), 3, H, W) at `uniform_indices`, differentiably."""
    index = torch.tensor(uniform_indices(frames.shape[0], k), device=frames.device)
    return frames.index_select(0, index)
