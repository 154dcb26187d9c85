"""Torch preprocessing matches the models' own processors and passes gradients to every pixel.

Reference: ``Qwen2VLImageProcessorPil``, the PIL/numpy processor class both Qwen2.5-VL and
Qwen3-VL use for images, which runs without torchvision; and the video processor's own
``patchify`` for the video layout (its resize/normalize steps need torchvision).

Stated tolerance: exact (1e-6) when no resize is needed; with a resize, every value within
1.5 grey levels (1.5 / 255 / std in normalised units) — PIL rounds each of its two
separable resize passes to uint8, torch keeps floats.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2VLImageProcessorPil
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)
from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

from reasoner.errors import ConfigError
from reasoner.vlm_preprocess import (
    VisionPreprocessConfig,
    preprocess_images,
    preprocess_video,
    resize_and_normalize,
)

FAMILY_SETTINGS = {
    "qwen2_5_vl": (14, tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD)),
    "qwen3_vl": (16, tuple(IMAGENET_STANDARD_MEAN), tuple(IMAGENET_STANDARD_STD)),
}


def configs(family: str, max_tokens: int = 16):
    patch, mean, std = FAMILY_SETTINGS[family]
    factor = 2 * patch
    ours = VisionPreprocessConfig(
        patch_size=patch,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=mean,
        image_std=std,
        min_pixels=factor * factor,
        max_pixels=max_tokens * factor * factor,
    )
    theirs = Qwen2VLImageProcessorPil(
        patch_size=patch,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=mean,
        image_std=std,
        size={"shortest_edge": factor * factor, "longest_edge": max_tokens * factor * factor},
    )
    return ours, theirs


def smooth_frames(n: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 (n, 3, H, W) frames with gradients and a disc, like rendered scenes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = []
    for _ in range(n):
        cx, cy, r = rng.uniform(0.2, 0.8) * width, rng.uniform(0.2, 0.8) * height, height / 4
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r) * 200 + 20
        frames.append(np.stack([xx / width * 255, yy / height * 255, disc]).astype(np.uint8))
    return np.stack(frames)


@pytest.mark.parametrize("family", sorted(FAMILY_SETTINGS))
@pytest.mark.parametrize("size", [(1.0, 2.0), (24 / 28, 40 / 28), (90 / 28, 50 / 28), (5, 7)])
def test_image_path_matches_the_pil_processor(family: str, size: tuple[float, float]) -> None:
    ours, theirs = configs(family)
    height, width = round(size[0] * ours.factor), round(size[1] * ours.factor)
    frames = smooth_frames(3, height, width)
    expected = theirs(images=list(frames), return_tensors="pt")
    got = preprocess_images(torch.from_numpy(frames).float() / 255, ours)
    assert torch.equal(got.grid_thw, expected["image_grid_thw"])
    diff = (got.pixel_values - expected["pixel_values"]).abs().max().item()
    native = (
        height % ours.factor == 0
        and width % ours.factor == 0
        and height * width <= 16 * ours.factor**2
    )
    tolerance = 1e-6 if native else 1.5 / 255 / min(ours.image_std)
    assert diff <= tolerance, (diff, tolerance)


@pytest.mark.parametrize("family", sorted(FAMILY_SETTINGS))
@pytest.mark.parametrize("num_frames", [4, 5])
def test_video_layout_matches_the_video_processor(family: str, num_frames: int) -> None:
    ours, theirs = configs(family)
    frames = smooth_frames(num_frames, 2 * ours.factor, ours.factor, seed=1)
    # The processor's own normalisation, then the video processor's own patchify
    # (its torch code runs without torchvision; odd counts repeat the last frame).
    normed = np.stack(
        [
            theirs.normalize(theirs.rescale(f, 1 / 255), ours.image_mean, ours.image_std)
            for f in frames
        ]
    )
    patches, grid_t, grid_h, grid_w = Qwen3VLVideoProcessor().patchify(
        torch.from_numpy(normed).float().unsqueeze(0),
        patch_size=ours.patch_size,
        merge_size=ours.merge_size,
        temporal_patch_size=ours.temporal_patch_size,
    )
    got = preprocess_video(torch.from_numpy(frames).float() / 255, ours)
    assert got.grid_thw.tolist() == [[grid_t, grid_h, grid_w]]
    assert torch.allclose(got.pixel_values, patches[0], atol=1e-6)


def test_a_video_of_repeated_frames_is_the_images_themselves() -> None:
    ours, _ = configs("qwen3_vl")
    frames = torch.rand(3, 3, 40, 72, generator=torch.Generator().manual_seed(0))
    doubled = frames.repeat_interleave(2, dim=0)
    assert torch.equal(
        preprocess_video(doubled, ours).pixel_values, preprocess_images(frames, ours).pixel_values
    )


@pytest.mark.parametrize("shape", [(3, 20, 20), (3, 90, 60)])  # upsampled, downsampled
def test_gradient_reaches_every_input_pixel(shape: tuple[int, int, int]) -> None:
    ours, _ = configs("qwen2_5_vl")
    frames = torch.rand(2, *shape, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    weights = torch.randn(
        preprocess_video(frames, ours).pixel_values.shape,
        generator=torch.Generator().manual_seed(1),
    )
    (preprocess_video(frames, ours).pixel_values * weights).sum().backward()
    assert frames.grad is not None and (frames.grad != 0).all()


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (torch.zeros(3, 28, 28), "shape"),
        (torch.zeros(2, 4, 28, 28), "shape"),
        (torch.zeros(2, 3, 28, 28, dtype=torch.uint8), "divide by 255"),
        (torch.zeros(0, 3, 28, 28), "empty"),
    ],
)
def test_bad_frames_get_a_clear_error(frames: torch.Tensor, message: str) -> None:
    ours, _ = configs("qwen2_5_vl")
    with pytest.raises(ConfigError, match=message):
        resize_and_normalize(frames, ours)
