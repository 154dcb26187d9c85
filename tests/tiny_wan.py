"""Shared builders for the reasoner tests: tiny real Wan components from presets.

The models themselves come from `reasoner.architectures` (random-init real
classes); this module only picks test-sized configs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from reasoner.config import ReasonerConfig, reasoner_config_from_dict

TINY_TAEHV_WIDTHS = [16, 8, 8, 8]

# (source, kind, surrogate) of the three tiny model families.
TINY_T2V = ("tiny", "wan_t2v", "taehv")
TINY_TI2V = ("tiny-ti2v", "wan_ti2v", "taehv")
TINY_PIXEL = ("tiny-pixel", "wan_ti2v", "identity")


def tiny_config(
    source: str = "tiny",
    kind: str = "wan_t2v",
    surrogate: str = "taehv",
    lora: dict[str, Any] | None = None,
    decoder: dict[str, Any] | None = None,
    **video_model: Any,
) -> ReasonerConfig:
    """A 9-frame 32x32 config of a tiny preset with a 16-token text context."""
    data: dict[str, Any] = {
        "video_model": {
            "kind": kind,
            "source": source,
            "height": 32,
            "width": 32,
            "num_frames": 9,
            "num_inference_steps": 3,
            "max_sequence_length": 16,
            **video_model,
        },
        "decoder": {"surrogate": surrogate, **(decoder or {})},
        "lora": {"rank": 4, "alpha": 8.0, **(lora or {})},
    }
    if surrogate == "taehv":
        data["decoder"].setdefault("taehv_widths", TINY_TAEHV_WIDTHS)
    return reasoner_config_from_dict(data)


def seeded_image(seed: int = 0, size: int = 32) -> torch.Tensor:
    """A seeded random first frame (3, size, size) in [0, 1]."""
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


def one_torch_thread() -> Iterator[None]:
    """Run with one intra-op thread, then restore.

    Tiny models are all overhead: on a shared 2-core machine the OpenMP
    hand-off between two threads costs ~1000x the work of a 4x4 convolution.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
