"""The mini video model: a small pixel-space Wan2.2-TI2V-style transformer, run in batches.

The mini VGM is the real diffusers `WanTransformer3DModel` with a small
`UMT5EncoderModel` (trained with it) and an offline tokenizer, saved as a diffusers
folder (transformer/, text_encoder/, tokenizer/, no vae/) that
`VideoReasoner.from_config` loads like any Wan model. Its latents are pixels:
(B, 3, F, H, W) in [-1, 1], one latent frame per video frame.

Training needs the reasoner's velocity field for a whole batch, each example
at its own noise level; `batched_velocity` is that, written with the same
maths as `VideoReasoner.velocity` (first frame replaced by the clean condition,
its tokens at timestep 0, every other token at sigma * 1000). A test checks
the two agree on the shipped model.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import torch
from diffusers import WanTransformer3DModel
from pydantic import BaseModel, ConfigDict, Field
from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

from reasoner.flow import NUM_TRAIN_TIMESTEPS
from reasoner.video_model import clean_prompt


class VgmArchitecture(BaseModel):
    """Sizes of the mini VGM (transformer and text encoder)."""

    model_config = ConfigDict(extra="forbid")

    num_layers: int = Field(4, ge=1, description="Transformer blocks.")
    num_attention_heads: int = Field(4, ge=1, description="Attention heads per block.")
    attention_head_dim: int = Field(32, ge=8, description="Width of one attention head.")
    ffn_dim: int = Field(512, ge=8, description="Hidden width of each block's MLP.")
    patch_size: tuple[int, int, int] = Field(
        (1, 4, 4),
        description=(
            "(t, h, w) patch over the pixel grid; t must be 1 for the image condition. "
            "(1, 2, 2) is ~7x slower on a CPU."
        ),
    )
    freq_dim: int = Field(64, ge=8, description="Sinusoidal timestep embedding width.")
    rope_max_seq_len: int = Field(32, ge=8, description="Longest token grid side RoPE covers.")
    text_dim: int = Field(64, ge=8, description="Text encoder width (= transformer text_dim).")
    text_layers: int = Field(2, ge=1, description="UMT5 encoder layers.")
    text_heads: int = Field(4, ge=1, description="UMT5 attention heads.")
    text_ff: int = Field(128, ge=8, description="UMT5 feed-forward width.")

    def transformer_kwargs(self) -> dict:
        """Constructor arguments of `WanTransformer3DModel` (pixel space: 3 channels)."""
        return {
            "patch_size": tuple(self.patch_size),
            "num_attention_heads": self.num_attention_heads,
            "attention_head_dim": self.attention_head_dim,
            "in_channels": 3,
            "out_channels": 3,
            "text_dim": self.text_dim,
            "freq_dim": self.freq_dim,
            "ffn_dim": self.ffn_dim,
            "num_layers": self.num_layers,
            "cross_attn_norm": True,
            "qk_norm": "rms_norm_across_heads",
            "eps": 1e-6,
            "rope_max_seq_len": self.rope_max_seq_len,
        }


def build_models(
    arch: VgmArchitecture, tokenizer: T5Tokenizer, seed: int
) -> tuple[WanTransformer3DModel, UMT5EncoderModel]:
    """Seeded random-init transformer and text encoder (the global RNG is left alone)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(**arch.transformer_kwargs())
        text_config = UMT5Config(
            vocab_size=len(tokenizer),
            d_model=arch.text_dim,
            d_kv=max(arch.text_dim // arch.text_heads, 4),
            d_ff=arch.text_ff,
            num_layers=arch.text_layers,
            num_heads=arch.text_heads,
            relative_attention_num_buckets=8,
            relative_attention_max_distance=32,
            feed_forward_proj="gated-gelu",
            pad_token_id=0,
            eos_token_id=1,
            dropout_rate=0.0,  # trained jointly below: no dropout, train() == eval()
        )
        text_encoder = UMT5EncoderModel(text_config)
    text_encoder.eval().requires_grad_(False)  # the trainer unfreezes it (train_text_encoder)
    return transformer, text_encoder


def embed_prompts(
    prompts: list[str],
    tokenizer: T5Tokenizer,
    text_encoder: UMT5EncoderModel,
    max_sequence_length: int,
) -> torch.Tensor:
    """(B, L, text_dim) text states exactly as `VideoReasoner.encode_text` computes them."""
    tokens = tokenizer(
        [clean_prompt(p) for p in prompts],
        padding="max_length",
        max_length=max_sequence_length,
        truncation=True,
        add_special_tokens=True,
        return_attention_mask=True,
        return_tensors="pt",
    )
    device = text_encoder.device
    mask = tokens.attention_mask.to(device)
    states = text_encoder(tokens.input_ids.to(device), mask).last_hidden_state
    return states * mask.unsqueeze(-1).to(states.dtype)


@torch.no_grad()
def encode_prompts(
    prompts: list[str],
    tokenizer: T5Tokenizer,
    text_encoder: UMT5EncoderModel,
    max_sequence_length: int,
) -> torch.Tensor:
    """`embed_prompts` without gradients (inference, distillation targets)."""
    return embed_prompts(prompts, tokenizer, text_encoder, max_sequence_length)


def batched_velocity(
    transformer: WanTransformer3DModel,
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    prompt_embeds: torch.Tensor,
    first_frame: torch.Tensor,
) -> torch.Tensor:
    """v(z, sigma, c) for a batch, each example at its own sigma, in float32.

    latents (B, 3, F, H, W); sigmas (B,); prompt_embeds (B, L, D); first_frame
    (B, 3, 1, H, W) clean pixels in [-1, 1]. The first frame of `latents` is
    replaced by `first_frame` and its tokens get timestep 0, as Wan2.2-TI2V's
    `expand_timesteps` does (tokens are ordered frame, row, column).
    """
    batch, _, frames, height, width = latents.shape
    _, patch_h, patch_w = transformer.config.patch_size
    per_frame = (height // patch_h) * (width // patch_w)
    model_input = torch.cat([first_frame.to(latents.dtype), latents[:, :, 1:]], dim=2)
    timestep = (sigmas.float() * NUM_TRAIN_TIMESTEPS)[:, None].expand(batch, frames * per_frame)
    condition = torch.zeros(batch, per_frame, device=timestep.device)
    timestep = torch.cat([condition, timestep[:, per_frame:]], dim=1)
    return transformer(
        hidden_states=model_input,
        timestep=timestep,
        encoder_hidden_states=prompt_embeds,
        return_dict=False,
    )[0].float()


def with_first_frame(latents: torch.Tensor, first_frame: torch.Tensor) -> torch.Tensor:
    """`latents` with frame 0 replaced by the clean condition (the output keeps it)."""
    return torch.cat([first_frame.to(latents.dtype), latents[:, :, 1:]], dim=2)


@torch.no_grad()
def euler_sample(
    transformer: WanTransformer3DModel,
    noise: torch.Tensor,
    sigmas: list[float],
    prompt_embeds: torch.Tensor,
    first_frame: torch.Tensor,
) -> torch.Tensor:
    """Deterministic flow-matching Euler rollout over `sigmas` (descending, ending at 0).

    The same update as `VideoReasoner.predict_latent`: z += (sigma_next - sigma) * v.
    """
    latents = noise
    for sigma, sigma_next in itertools.pairwise(sigmas):
        level = torch.full((noise.shape[0],), sigma, device=noise.device)
        v = batched_velocity(transformer, latents, level, prompt_embeds, first_frame)
        latents = latents + (sigma_next - sigma) * v
    return with_first_frame(latents, first_frame)


def save_model_folder(
    path: Path,
    transformer: WanTransformer3DModel,
    text_encoder: UMT5EncoderModel,
    tokenizer: T5Tokenizer,
) -> Path:
    """Write the diffusers folder `video_model.source` loads (no vae/: pixel space)."""
    path.mkdir(parents=True, exist_ok=True)
    transformer.save_pretrained(path / "transformer")
    text_encoder.save_pretrained(path / "text_encoder")
    tokenizer.save_pretrained(path / "tokenizer")
    return path
