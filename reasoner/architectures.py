"""Random-init architecture presets of the real model classes, and an offline tokenizer.

No weights can be downloaded on development machines, so tests, the benchmark
and the mini world build diffusers' `WanTransformer3DModel` / `AutoencoderKLWan`
and transformers' `UMT5EncoderModel` from configs with random weights. The
'wan2.1-1.3b' and 'wan2.2-ti2v-5b' presets use the published widths, channels
and patch sizes (from the models' config.json files), so a shape or dtype bug of
the real path shows up on them; '-1layer' variants cut the transformer to one
block so that path runs on a CPU.

The text encoder of every preset is random and runs once per task, outside the
optimization step: presets keep umt5-xxl's widths (its output width is the
transformer's `text_dim`) but one layer, and a vocabulary the size of the offline
tokenizer below.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any

from transformers import T5Tokenizer

# Published AutoencoderKLWan statistics of the Wan2.2 (48-channel) VAE; the
# Wan2.1 VAE's are diffusers' defaults.
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]  # fmt: skip
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]  # fmt: skip


@dataclass(frozen=True)
class ArchitecturePreset:
    """Constructor arguments of the three model classes of one Wan architecture."""

    name: str
    description: str
    transformer: dict[str, Any]
    """`WanTransformer3DModel(**transformer)`."""
    vae: dict[str, Any] | None
    """`AutoencoderKLWan(**vae)`; None for a pixel-space model (latents are pixels)."""
    text_encoder: dict[str, Any] = field(default_factory=dict)
    """`UMT5Config(**text_encoder, vocab_size=len(tokenizer))`."""


def _tiny_stats(channels: int) -> dict[str, list[float]]:
    # Non-trivial but fixed statistics, so tests exercise the (de)normalisation.
    return {
        "latents_mean": [round(0.05 * (i % 5) - 0.1, 4) for i in range(channels)],
        "latents_std": [round(0.5 + 0.25 * (i % 3), 4) for i in range(channels)],
    }


_TINY_TRANSFORMER = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 12,
    "text_dim": 16,
    "freq_dim": 32,
    "ffn_dim": 32,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "rope_max_seq_len": 32,
}
_TINY_TEXT = {
    "d_model": 16,
    "d_ff": 32,
    "num_heads": 2,
    "d_kv": 8,
    "num_layers": 1,
    "relative_attention_num_buckets": 8,
    "relative_attention_max_distance": 16,
    "feed_forward_proj": "gated-gelu",
}
# umt5-xxl widths (Wan's text encoder), one layer: see the module docstring.
_UMT5_XXL_ONE_LAYER = {
    "d_model": 4096,
    "d_ff": 10240,
    "num_heads": 64,
    "d_kv": 64,
    "num_layers": 1,
    "relative_attention_num_buckets": 32,
    "relative_attention_max_distance": 128,
    "feed_forward_proj": "gated-gelu",
}
# Tiny VAEs keep base_dim >= 8: at 3 channels the decoder saturates to sign()
# and gradients vanish.
_TINY_VAE21 = {
    "base_dim": 8,
    "z_dim": 4,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "temperal_downsample": [False, True, True],
    **_tiny_stats(4),
}
_TINY_VAE22 = {
    "base_dim": 8,
    "decoder_base_dim": 8,
    "z_dim": 8,
    "dim_mult": [1, 1, 1, 1],
    "num_res_blocks": 1,
    "temperal_downsample": [False, True, True],
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    "is_residual": True,
    **_tiny_stats(8),
}
_WAN21_13B_TRANSFORMER = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
_WAN21_VAE: dict[str, Any] = {}  # diffusers' AutoencoderKLWan defaults are the Wan2.1 VAE
_WAN22_5B_TRANSFORMER = {
    **_WAN21_13B_TRANSFORMER,
    "num_attention_heads": 24,
    "in_channels": 48,
    "out_channels": 48,
    "ffn_dim": 14336,
}
_WAN22_VAE = {
    "base_dim": 160,
    "decoder_base_dim": 256,
    "z_dim": 48,
    "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_scales": [],
    "temperal_downsample": [False, True, True],
    "in_channels": 12,
    "out_channels": 12,
    "patch_size": 2,
    "scale_factor_spatial": 16,
    "scale_factor_temporal": 4,
    "is_residual": True,
    "latents_mean": WAN22_LATENTS_MEAN,
    "latents_std": WAN22_LATENTS_STD,
}


def _one_layer(preset: ArchitecturePreset) -> ArchitecturePreset:
    return ArchitecturePreset(
        name=f"{preset.name}-1layer",
        description=f"{preset.description}, transformer cut to 1 block (runs on CPU)",
        transformer={**preset.transformer, "num_layers": 1},
        vae=preset.vae,
        text_encoder=preset.text_encoder,
    )


_BASE_PRESETS = [
    ArchitecturePreset(
        name="tiny",
        description="tiny Wan2.1-style latent model (4-channel VAE, 8x/4x compression)",
        transformer={**_TINY_TRANSFORMER, "in_channels": 4, "out_channels": 4},
        vae=_TINY_VAE21,
        text_encoder=_TINY_TEXT,
    ),
    ArchitecturePreset(
        name="tiny-ti2v",
        description="tiny Wan2.2-TI2V-style latent model (residual VAE, patch 2, 16x spatial)",
        transformer={**_TINY_TRANSFORMER, "in_channels": 8, "out_channels": 8},
        vae=_TINY_VAE22,
        text_encoder=_TINY_TEXT,
    ),
    ArchitecturePreset(
        name="tiny-pixel",
        description="tiny pixel-space Wan transformer (no VAE: latents are RGB in [-1, 1])",
        transformer={**_TINY_TRANSFORMER, "in_channels": 3, "out_channels": 3},
        vae=None,
        text_encoder=_TINY_TEXT,
    ),
    ArchitecturePreset(
        name="wan2.1-1.3b",
        description="Wan2.1-T2V-1.3B architecture (random weights)",
        transformer=_WAN21_13B_TRANSFORMER,
        vae=_WAN21_VAE,
        text_encoder=_UMT5_XXL_ONE_LAYER,
    ),
    ArchitecturePreset(
        name="wan2.2-ti2v-5b",
        description="Wan2.2-TI2V-5B architecture (random weights)",
        transformer=_WAN22_5B_TRANSFORMER,
        vae=_WAN22_VAE,
        text_encoder=_UMT5_XXL_ONE_LAYER,
    ),
]

PRESETS: dict[str, ArchitecturePreset] = {p.name: p for p in _BASE_PRESETS} | {
    p.name: p for p in (_one_layer(b) for b in _BASE_PRESETS if not b.name.startswith("tiny"))
}


# Words that get their own token; everything else falls back to characters.
_COMMON_WORDS = (  # noqa: SIM905 - a word list reads better as text
    "a an the of to in on at by for from with into onto over under above below "
    "left right up down top bottom center middle start end first last final "
    "and or not no yes is are be does do it its this that each every all "
    "move moves moving push pushes reach reaches stop stops go goes turn fall "
    "roll slide jump hit avoid follow path maze wall walls obstacle goal target "
    "ball balls box boxes square squares circle circles block blocks dot line "
    "red green blue yellow orange purple black white gray pink cyan "
    "small large big one two three four five video frame frames object objects"
).split()


def build_offline_t5_tokenizer(model_max_length: int = 512) -> T5Tokenizer:
    """A deterministic Unigram T5 tokenizer built in memory (no download).

    Ids follow T5: <pad>=0, </s>=1, <unk>=2. Pieces are single characters (with
    and without the word-start marker) plus a few common words; a longer piece
    has a higher score, so the Unigram model prefers whole words when it can.
    """
    marker = "\u2581"
    chars = string.ascii_letters + string.digits + string.punctuation
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab.append((marker, -4.0))
    vocab += [(c, -5.0) for c in chars]
    vocab += [(marker + c, -4.5) for c in chars]
    vocab += [(marker + w, -3.0) for w in _COMMON_WORDS]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def get_preset(name: str) -> ArchitecturePreset | None:
    """The preset of that name, or None when `name` is a model id / path."""
    return PRESETS.get(name)
