"""Latent video -> frames (F, 3, H, W) in [0, 1], differentiably.

Three decoders share one call signature, `decoder(latents) -> frames`, with
latents in diffusers' layout (1, C, F', h, w):

- `FullVaeDecoder`: the model's `AutoencoderKLWan` (exact; heavy in the graph,
  so it is wrapped in activation checkpointing there).
- `TaehvDecoder`: the tiny TAEHV-architecture surrogate (reasoner.taehv).
- `PixelDecoder`: a pixel-space model's latents are RGB in [-1, 1] already.
"""

from __future__ import annotations

from typing import Protocol

import torch
from diffusers import AutoencoderKLWan
from torch.utils.checkpoint import checkpoint

from reasoner.config import DecoderConfig
from reasoner.loading import LatentGeometry
from reasoner.taehv import TAEHVDecoder, load_taehv_decoder_weights


class FrameDecoder(Protocol):
    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, C, F', h, w) latents -> (F, 3, H, W) float32 frames in [0, 1]."""
        ...


def _to_frames(video: torch.Tensor) -> torch.Tensor:
    """(1, 3, F, H, W) in [-1, 1] -> (F, 3, H, W) float32 in [0, 1]."""
    return ((video[0].float() + 1.0) / 2.0).clamp(0.0, 1.0).permute(1, 0, 2, 3)


class PixelDecoder:
    """Identity for pixel-space models: latents are pixels in [-1, 1]."""

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        return _to_frames(latents)


class FullVaeDecoder:
    """The model's own VAE, with Wan's latent (de)normalisation."""

    def __init__(self, vae: AutoencoderKLWan, checkpointed: bool = True) -> None:
        self.vae = vae
        self.checkpointed = checkpointed
        shape = (1, vae.config.z_dim, 1, 1, 1)
        self.mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32).view(shape)
        self.std = torch.tensor(vae.config.latents_std, dtype=torch.float32).view(shape)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        # Diffusion latents are (z - mean) / std of the VAE's raw latents.
        raw = latents.float() * self.std.to(latents.device) + self.mean.to(latents.device)
        return self.vae.decode(raw.to(self.vae.dtype), return_dict=False)[0]

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        if self.checkpointed and torch.is_grad_enabled() and latents.requires_grad:
            # The causal VAE decodes frame by frame and keeps every activation
            # for backward; recompute them instead.
            video = checkpoint(self._decode, latents, use_reentrant=False)
        else:
            video = self._decode(latents)
        return _to_frames(video)

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """(1, 3, F, H, W) in [-1, 1] -> normalised latents (1, C, F', h, w), float32.

        Uses the posterior mode, as WanImageToVideoPipeline does for its condition.
        """
        raw = self.vae.encode(video.to(self.vae.dtype)).latent_dist.mode().float()
        return (raw - self.mean.to(raw.device)) / self.std.to(raw.device)


class TaehvDecoder:
    """The TAEHV surrogate: decodes diffusion latents as they are (no mean/std)."""

    def __init__(self, module: TAEHVDecoder) -> None:
        self.module = module

    def __call__(self, latents: torch.Tensor) -> torch.Tensor:
        dtype = next(self.module.parameters()).dtype
        # NCTHW (diffusers) -> NTCHW (TAEHV)
        video = self.module(latents.to(dtype).permute(0, 2, 1, 3, 4))
        return video[0].float()


def build_taehv(
    cfg: DecoderConfig,
    geometry: LatentGeometry,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
) -> TaehvDecoder:
    """A TAEHV surrogate for these latents, from `cfg.surrogate_path` or seeded random init."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.manual_seed(seed)
        module = TAEHVDecoder(
            latent_channels=geometry.channels,
            patch_size=geometry.spatial // 8,
            widths=cfg.taehv_widths,
            time_upscale=cfg.taehv_time_upscale,
        )
    if cfg.surrogate_path is not None:
        load_taehv_decoder_weights(module, cfg.surrogate_path)
    module = module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return TaehvDecoder(module)
