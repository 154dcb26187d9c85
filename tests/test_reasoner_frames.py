"""Uniform K-frame sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from reasoner.frames import sample_frames, uniform_indices


@given(num_frames=st.integers(1, 200), k=st.integers(1, 220))
def test_uniform_indices_are_sorted_distinct_in_range_and_span_the_video(num_frames, k) -> None:
    idx = uniform_indices(num_frames, k)
    assert len(idx) == min(k, num_frames)
    assert all(a < b for a, b in itertools.pairwise(idx))
    assert idx[0] == 0 and 0 <= idx[-1] <= num_frames - 1
    if len(idx) > 1:
        assert idx[-1] == num_frames - 1


@given(num_frames=st.integers(2, 200), k=st.integers(2, 200))
def test_uniform_indices_are_linspace_rounded_half_up(num_frames, k) -> None:
    if k > num_frames:
        return
    exact = np.linspace(0, num_frames - 1, k)
    assert uniform_indices(num_frames, k) == [int(np.floor(x + 0.5 + 1e-9)) for x in exact]


def test_known_values() -> None:
    assert uniform_indices(81, 24)[:4] == [0, 3, 7, 10]
    assert uniform_indices(17, 5) == [0, 4, 8, 12, 16]
    assert uniform_indices(9, 1) == [0]
    assert uniform_indices(4, 10) == [0, 1, 2, 3]


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="k must be"):
        uniform_indices(9, 0)
    with pytest.raises(ValueError, match="num_frames"):
        uniform_indices(0, 3)


def test_sample_frames_keeps_the_graph() -> None:
    frames = torch.rand(17, 3, 8, 8, requires_grad=True)
    picked = sample_frames(frames * 2.0, 5)
    assert picked.shape == (5, 3, 8, 8)
    torch.testing.assert_close(picked, frames.detach()[[0, 4, 8, 12, 16]] * 2.0)
    picked.sum().backward()
    hit = frames.grad.flatten(1).sum(1)
    assert torch.all(hit[[0, 4, 8, 12, 16]] == 2.0 * 3 * 8 * 8)
    assert torch.all(hit[[1, 2, 3, 5, 15]] == 0)
