"""The real architectures, transformer cut to one block, run one optimization step on CPU.

Real widths, latent channels, VAEs and patch sizes at a small frame size: a
shape or dtype bug of the Wan2.1-1.3B / Wan2.2-TI2V-5B path fails here, not on
the first GPU run. The 5B variant needs ~5 GB of RAM and ~40 s (most of it the
random init of its 0.7B-parameter VAE), hence `slow`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tiny_wan import one_torch_thread

from reasoner.config import load_reasoner_config
from reasoner.frames import sample_frames
from reasoner.video_model import VideoReasoner

CONFIGS = Path(__file__).parents[1] / "configs" / "reasoner"

# (inner dim, ffn dim, latent channels, VAE spatial x, latent shape at 5x32x32)
EXPECTED = {
    "wan2.1-1.3b-1layer": (1536, 8960, 16, 8, (1, 16, 2, 4, 4)),
    "wan2.2-ti2v-5b-1layer": (3072, 14336, 48, 16, (1, 48, 2, 2, 2)),
}


@pytest.mark.parametrize(
    "name",
    ["wan2.1-1.3b-1layer", pytest.param("wan2.2-ti2v-5b-1layer", marks=pytest.mark.slow)],
)
def test_one_optimization_step_of_the_real_architecture(name: str) -> None:
    cfg = load_reasoner_config(CONFIGS / f"{name}.yaml")
    reasoner = VideoReasoner.from_config(cfg)  # default threads: random init is RNG-bound
    inner, ffn, channels, spatial, latent_shape = EXPECTED[name]
    block = reasoner.transformer.blocks[0]
    assert len(reasoner.transformer.blocks) == 1
    assert block.attn1.to_q.base_layer.weight.shape == (inner, inner)
    assert block.ffn.net[2].weight.shape == (inner, ffn)
    assert reasoner.transformer.config.text_dim == 4096
    assert reasoner.geometry.channels == channels and reasoner.geometry.spatial == spatial
    assert reasoner.latent_shape == latent_shape

    for _ in one_torch_thread():  # compute: one thread is fastest on a shared 2-core box
        image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
        cond = reasoner.encode("the ball reaches the goal", image if reasoner.is_ti2v else None)
        noise = reasoner.initial_noise(torch.Generator().manual_seed(0))
        base_q = block.attn1.to_q.base_layer.weight.detach().clone()
        lora_before = reasoner.lora.state_dict()
        optimizer = torch.optim.AdamW(reasoner.lora.trainable_parameters(), lr=1e-3)

        latent = reasoner.predict_latent(noise, cond, grad="first")
        assert latent.shape == latent_shape and latent.dtype == torch.float32
        frames = reasoner.decode(latent)
        assert frames.shape == (5, 3, 32, 32)
        loss = (sample_frames(frames, 3) - 0.5).square().mean()
        loss.backward()
        assert math.isfinite(loss.item())
        grads = [p.grad for p in reasoner.lora.trainable_parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        optimizer.step()

        assert torch.equal(block.attn1.to_q.base_layer.weight, base_q)
        after = reasoner.lora.state_dict()
        assert any(not torch.equal(after[k], lora_before[k]) for k in after)

        video = reasoner.sample(noise, cond)  # full sampler + the real VAE decoder
        assert video.shape == (5, 3, 32, 32)
        assert torch.isfinite(video).all() and video.min() >= 0 and video.max() <= 1
