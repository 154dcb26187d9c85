"""Qwen-VL vision preprocessing in torch, so gradients reach the pixels.

The Hugging Face processors convert frames through PIL/numpy (and their fast
versions need torchvision, which does not install here), which cuts the graph.
This module does the same steps with torch ops on ``(F, 3, H, W)`` frames in
``[0, 1]``:

1. resize to the processor's size rule (each side a multiple of
   ``patch_size * merge_size``, area within ``[min_pixels, max_pixels]``; the
   rule itself is imported from transformers) with an anti-aliased bicubic
   filter, the kernel PIL uses;
2. normalise with the model's mean and std;
3. patchify into the flat ``(tokens, C * T * P * P)`` layout with the
   ``grid_thw`` the vision encoder expects.

``tests/test_vqa_preprocess.py`` checks parity with ``Qwen2VLImageProcessorPil``
(the PIL/numpy processor class that runs without torchvision) and with the
video processor's own patch layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from transformers import PretrainedConfig
from transformers.image_utils import (
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize

from reasoner.errors import ConfigError

# The normalisation each family was trained with (their processors' defaults).
_FAMILY_MEAN_STD = {
    "qwen2_5_vl": (tuple(OPENAI_CLIP_MEAN), tuple(OPENAI_CLIP_STD)),
    "qwen3_vl": (tuple(IMAGENET_STANDARD_MEAN), tuple(IMAGENET_STANDARD_STD)),
}


class VisionPreprocessConfig(BaseModel):
    """How frames become vision-encoder input. Patch sizes must match the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    patch_size: int = Field(ge=1, description="Spatial patch size of the vision encoder.")
    temporal_patch_size: int = Field(ge=1, description="Frames per temporal patch.")
    merge_size: int = Field(ge=1, description="Patches merged per side into one LLM token.")
    image_mean: tuple[float, float, float] = Field(description="Per-channel mean, [0,1] scale.")
    image_std: tuple[float, float, float] = Field(description="Per-channel std, [0,1] scale.")
    min_pixels: int = Field(ge=1, description="Smallest area (pixels) a frame is resized to.")
    max_pixels: int = Field(ge=1, description="Largest area (pixels) a frame is resized to.")

    @property
    def factor(self) -> int:
        """Each resized side is a multiple of this."""
        return self.patch_size * self.merge_size

    @classmethod
    def for_model(
        cls,
        config: PretrainedConfig,
        *,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        image_mean: tuple[float, float, float] | None = None,
        image_std: tuple[float, float, float] | None = None,
    ) -> VisionPreprocessConfig:
        """Patch sizes from a Qwen-VL model config; mean/std from its family.

        Default area bounds: at least one LLM token per frame, at most 256
        (e.g. 448x448 for Qwen3-VL): enough for the scorer, cheap to backprop.
        """
        family = config.model_type
        if family not in _FAMILY_MEAN_STD:
            raise ConfigError(
                f"model_type={family!r} is not supported; use a Qwen2.5-VL or Qwen3-VL model."
            )
        vision = config.vision_config
        mean, std = _FAMILY_MEAN_STD[family]
        factor = vision.patch_size * vision.spatial_merge_size
        min_pixels = min_pixels if min_pixels is not None else factor * factor
        max_pixels = max_pixels if max_pixels is not None else 256 * factor * factor
        if min_pixels > max_pixels:
            raise ConfigError(
                f"min_pixels={min_pixels} > max_pixels={max_pixels}; swap or widen them."
            )
        return cls(
            patch_size=vision.patch_size,
            temporal_patch_size=vision.temporal_patch_size,
            merge_size=vision.spatial_merge_size,
            image_mean=image_mean or mean,
            image_std=image_std or std,
            min_pixels=min_pixels,
            max_pixels=max_pixels,
        )


@dataclass(frozen=True)
class VisionInput:
    """Flattened patches and their grid, ready for the vision encoder."""

    pixel_values: torch.Tensor  # (T * gh * gw, C * temporal_patch * P * P)
    grid_thw: torch.Tensor  # (num_visuals, 3) long: temporal, height, width patch counts


def check_frames(frames: torch.Tensor) -> None:
    """Raise a clear error unless ``frames`` is a float ``(F, 3, H, W)`` tensor."""
    if not isinstance(frames, torch.Tensor):
        raise ConfigError(
            f"frames must be a torch.Tensor (F, 3, H, W), got {type(frames).__name__}"
        )
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ConfigError(
            f"frames must have shape (F, 3, H, W) with values in [0, 1], got {tuple(frames.shape)}"
        )
    if not frames.is_floating_point():
        raise ConfigError(
            f"frames must be float in [0, 1], got dtype {frames.dtype}; divide by 255."
        )
    if frames.shape[0] == 0:
        raise ConfigError("frames is empty: pass at least one frame")


def target_size(height: int, width: int, cfg: VisionPreprocessConfig) -> tuple[int, int]:
    """The processor's resize rule (same function), per frame."""
    return smart_resize(
        height, width, factor=cfg.factor, min_pixels=cfg.min_pixels, max_pixels=cfg.max_pixels
    )


def resize_and_normalize(frames: torch.Tensor, cfg: VisionPreprocessConfig) -> torch.Tensor:
    """Resize ``(F, 3, H, W)`` frames in [0,1] to the processor's size and normalise."""
    check_frames(frames)
    height, width = frames.shape[-2:]
    new_h, new_w = target_size(height, width, cfg)
    if (new_h, new_w) != (height, width):
        # antialias=True uses PIL's bicubic kernel (a=-0.5) with a support scaled for
        # downsampling; the clamp matches the processor, whose PIL image is uint8.
        frames = F.interpolate(
            frames, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True
        ).clamp(0.0, 1.0)
    mean = frames.new_tensor(cfg.image_mean).view(1, 3, 1, 1)
    std = frames.new_tensor(cfg.image_std).view(1, 3, 1, 1)
    return (frames - mean) / std


def patchify(frames: torch.Tensor, cfg: VisionPreprocessConfig) -> VisionInput:
    """Normalised ``(F, 3, h, w)`` frames -> one video's patches, in the processors' layout.

    A frame count that is not a multiple of ``temporal_patch_size`` is padded by
    repeating the last frame, as the video processors do.
    """
    num_frames, channels, height, width = frames.shape
    tp, p, m = cfg.temporal_patch_size, cfg.patch_size, cfg.merge_size
    if pad := -num_frames % tp:
        frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)], dim=0)
        num_frames += pad
    grid_t, grid_h, grid_w = num_frames // tp, height // p, width // p
    if grid_h % m or grid_w % m:
        raise ConfigError(
            f"frame size {height}x{width} is not a multiple of patch_size*merge_size={p * m}; "
            "resize with resize_and_normalize first"
        )
    x = frames.reshape(grid_t, tp, channels, grid_h // m, m, p, grid_w // m, m, p)
    # -> (t, h-block, w-block, h-in-block, w-in-block, C, tp, P, P): merged tokens
    # are contiguous runs of m*m patches, each patch flattened channel-first.
    x = x.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    patches = x.reshape(grid_t * grid_h * grid_w, channels * tp * p * p)
    grid = torch.tensor([[grid_t, grid_h, grid_w]], dtype=torch.long, device=frames.device)
    return VisionInput(pixel_values=patches, grid_thw=grid)


def preprocess_video(frames: torch.Tensor, cfg: VisionPreprocessConfig) -> VisionInput:
    """``(F, 3, H, W)`` frames in [0,1] -> one video for the vision encoder, differentiably."""
    return patchify(resize_and_normalize(frames, cfg), cfg)


def preprocess_images(frames: torch.Tensor, cfg: VisionPreprocessConfig) -> VisionInput:
    """Each frame as a separate still image (the image processor's path).

    A still image fills its temporal patch with copies of itself.
    """
    normed = resize_and_normalize(frames, cfg)
    parts = [
        patchify(f.unsqueeze(0).expand(cfg.temporal_patch_size, -1, -1, -1), cfg) for f in normed
    ]
    return VisionInput(
        pixel_values=torch.cat([v.pixel_values for v in parts]),
        grid_thw=torch.cat([v.grid_thw for v in parts]),
    )
