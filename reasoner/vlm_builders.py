"""Small Qwen-VL models and tokenizers built offline, from configs.

No weights can be downloaded on our machines, yet the VQA scorer must run on the
*real* transformers classes (``Qwen2_5_VLForConditionalGeneration``,
``Qwen3VLForConditionalGeneration``). This module builds them from a config:
tiny ones for tests and for the mini-world scorer a later script trains, and
"real-shape" ones (real widths and patch sizes, one layer) that expose shape or
dtype bugs of the full-size path on a CPU.

The tokenizer is a byte-level BPE trained in-process on the texts the model will
see, wrapped in ``Qwen2Tokenizer`` so it has Qwen's pre-tokenizer and special
tokens and round-trips through ``save_pretrained`` / ``AutoTokenizer``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import (
    PreTrainedModel,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

from reasoner.errors import ConfigError

Family = Literal["qwen2_5_vl", "qwen3_vl"]

# Qwen's chat and vision special tokens, in the order Qwen's own vocabulary has them
# (ids differ here: a small vocabulary puts them first).
QWEN_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Words every scorer prompt contains; trained into the vocabulary so that the
# answers are single tokens, as they are in Qwen's real vocabulary.
_ALWAYS_IN_CORPUS: tuple[str, ...] = (
    "Yes",
    "No",
    "system",
    "user",
    "assistant",
    "You are a helpful assistant.",
    "seconds",
)


def build_offline_tokenizer(texts: Iterable[str], vocab_size: int = 512) -> Qwen2Tokenizer:
    """Train a byte-level BPE on ``texts`` and wrap it as a ``Qwen2Tokenizer``.

    Any string can be encoded (byte-level alphabet); words of ``texts`` become
    few tokens. "Yes" and "No" are always single tokens.
    """
    if vocab_size < 256 + len(QWEN_SPECIAL_TOKENS):
        raise ConfigError(
            f"vocab_size={vocab_size} is too small: a byte-level BPE needs 256 byte tokens plus "
            f"{len(QWEN_SPECIAL_TOKENS)} special tokens; use vocab_size >= 300."
        )
    bpe = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    # The same normalizer and pre-tokenizer Qwen2Tokenizer installs, so the merges
    # learnt here are the merges it will apply.
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(QWEN_SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # The answers stand alone (no leading space) right after "assistant\n";
    # repeating them makes their merges win against rarer pairs.
    corpus = [*texts, *(_ALWAYS_IN_CORPUS * 8)]
    bpe.train_from_iterator(corpus, trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in state["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        extra_special_tokens=list(QWEN_SPECIAL_TOKENS[1:]),
    )
    for answer in ("Yes", "No"):
        if len(tokenizer(answer).input_ids) != 1:  # pragma: no cover - guarded by the corpus
            raise ConfigError(f"vocab_size={vocab_size} is too small to make {answer!r} one token.")
    return tokenizer


class TinyQwenVLConfig(BaseModel):
    """Sizes of a Qwen-VL model built from a config (defaults: a tiny test model)."""

    model_config = ConfigDict(extra="forbid")

    family: Family = Field(description="Architecture: 'qwen2_5_vl' or 'qwen3_vl'.")
    text_hidden_size: int = Field(32, ge=8, description="Width of the language model.")
    text_layers: int = Field(2, ge=1, description="Decoder layers of the language model.")
    text_heads: int = Field(4, ge=1, description="Attention heads of the language model.")
    text_kv_heads: int = Field(2, ge=1, description="Key/value heads (grouped-query attention).")
    text_head_dim: int | None = Field(
        None, ge=4, description="Head width; default text_hidden_size // text_heads."
    )
    text_intermediate_size: int = Field(64, ge=8, description="MLP width of the language model.")
    vision_hidden_size: int = Field(32, ge=8, description="Width of the vision encoder.")
    vision_depth: int = Field(2, ge=1, description="Blocks of the vision encoder.")
    vision_heads: int = Field(2, ge=1, description="Attention heads of the vision encoder.")
    vision_intermediate_size: int = Field(64, ge=8, description="MLP width of the vision encoder.")
    patch_size: int | None = Field(
        None, ge=2, description="Spatial patch size; default the family's real one (14 or 16)."
    )
    temporal_patch_size: int = Field(2, ge=1, description="Frames per temporal patch.")
    spatial_merge_size: int = Field(2, ge=1, description="Patches merged per side into a token.")
    num_position_embeddings: int = Field(
        16, ge=4, description="Qwen3-VL learnt vision position grid (a square number)."
    )
    rope_theta: float = Field(10000.0, gt=0, description="Base of the text rotary embedding.")
    tie_word_embeddings: bool = Field(False, description="Share input and output embeddings.")

    @model_validator(mode="after")
    def _check_shapes(self) -> TinyQwenVLConfig:
        if self.text_head_dim is None and self.text_hidden_size % self.text_heads:
            raise ValueError(
                "text_hidden_size must be divisible by text_heads (or set text_head_dim)"
            )
        if self.text_heads % self.text_kv_heads:
            raise ValueError("text_heads must be a multiple of text_kv_heads")
        if self.vision_hidden_size % self.vision_heads:
            raise ValueError("vision_hidden_size must be divisible by vision_heads")
        side = round(self.num_position_embeddings**0.5)
        if side * side != self.num_position_embeddings:
            raise ValueError("num_position_embeddings must be a square number (e.g. 16, 64, 2304)")
        return self

    @property
    def head_dim(self) -> int:
        return self.text_head_dim or self.text_hidden_size // self.text_heads

    @property
    def resolved_patch_size(self) -> int:
        return self.patch_size or {"qwen2_5_vl": 14, "qwen3_vl": 16}[self.family]


def real_shape_config(family: Family) -> TinyQwenVLConfig:
    """Real widths and patch sizes with one layer each (vocabulary stays small).

    qwen3_vl: Qwen3-VL-4B-Instruct. qwen2_5_vl: Qwen2.5-VL-3B-Instruct.
    """
    if family == "qwen3_vl":
        return TinyQwenVLConfig(
            family=family,
            text_hidden_size=2560,
            text_layers=1,
            text_heads=32,
            text_kv_heads=8,
            text_head_dim=128,
            text_intermediate_size=9728,
            vision_hidden_size=1024,
            vision_depth=1,
            vision_heads=16,
            vision_intermediate_size=4096,
            num_position_embeddings=2304,
            rope_theta=5_000_000.0,
            tie_word_embeddings=True,
        )
    return TinyQwenVLConfig(
        family=family,
        text_hidden_size=2048,
        text_layers=1,
        text_heads=16,
        text_kv_heads=2,
        text_intermediate_size=11008,
        vision_hidden_size=1280,
        vision_depth=1,
        vision_heads=16,
        vision_intermediate_size=3420,
        rope_theta=1_000_000.0,
        tie_word_embeddings=True,
    )


def _mrope_section(head_dim: int) -> list[int]:
    # Multimodal RoPE splits half the head width into (time, height, width)
    # frequency bands; the real models give ~3/8 to each spatial axis.
    half = head_dim // 2
    spatial = max(1, 3 * half // 8)
    return [half - 2 * spatial, spatial, spatial]


def qwen_vl_config(
    cfg: TinyQwenVLConfig, tokenizer: Qwen2Tokenizer
) -> Qwen2_5_VLConfig | Qwen3VLConfig:
    """The transformers config for ``cfg``, with special-token ids taken from ``tokenizer``."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL_TOKENS}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": cfg.text_hidden_size,
        "intermediate_size": cfg.text_intermediate_size,
        "num_hidden_layers": cfg.text_layers,
        "num_attention_heads": cfg.text_heads,
        "num_key_value_heads": cfg.text_kv_heads,
        "max_position_embeddings": 8192,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "rope_parameters": {
            "rope_type": "default",
            "rope_theta": cfg.rope_theta,
            "mrope_section": _mrope_section(cfg.head_dim),
        },
    }
    vision = {
        "depth": cfg.vision_depth,
        "hidden_size": cfg.vision_hidden_size,
        "intermediate_size": cfg.vision_intermediate_size,
        "num_heads": cfg.vision_heads,
        "out_hidden_size": cfg.text_hidden_size,
        "patch_size": cfg.resolved_patch_size,
        "temporal_patch_size": cfg.temporal_patch_size,
        "spatial_merge_size": cfg.spatial_merge_size,
    }
    token_ids = {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "tie_word_embeddings": cfg.tie_word_embeddings,
    }
    if cfg.family == "qwen3_vl":
        text["head_dim"] = cfg.head_dim
        text["rope_parameters"]["mrope_interleaved"] = True
        vision["num_position_embeddings"] = cfg.num_position_embeddings
        # DeepStack injects features of early vision blocks into early text layers.
        vision["deepstack_visual_indexes"] = [0]
        return Qwen3VLConfig(text_config=text, vision_config=vision, **token_ids)
    # Window attention everywhere except the last block, as the real model mixes both.
    vision["window_size"] = 4 * cfg.resolved_patch_size * cfg.spatial_merge_size
    vision["fullatt_block_indexes"] = [cfg.vision_depth - 1]
    vision["tokens_per_second"] = 2
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **token_ids)


_MODEL_CLASSES = {
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
    "qwen3_vl": Qwen3VLForConditionalGeneration,
}


def build_tiny_qwen_vl(
    family: Family,
    texts: Iterable[str] = (),
    *,
    config: TinyQwenVLConfig | None = None,
    vocab_size: int = 512,
    seed: int = 0,
    tokenizer: Qwen2Tokenizer | None = None,
) -> tuple[PreTrainedModel, Qwen2Tokenizer]:
    """A random-init Qwen-VL model of the real transformers class, and its tokenizer.

    ``texts`` are the words the model will read (questions, instructions); they
    shape the BPE vocabulary. Pass ``tokenizer`` to reuse one. Weights are drawn
    under ``seed`` without disturbing the caller's global RNG state. Returns the
    model in float32 eval mode.
    """
    config = config or TinyQwenVLConfig(family=family)
    if config.family != family:
        raise ConfigError(
            f"config.family={config.family!r} but family={family!r}; make them equal."
        )
    tokenizer = tokenizer or build_offline_tokenizer(texts, vocab_size=vocab_size)
    hf_config = qwen_vl_config(config, tokenizer)
    # transformers initialises weights from the global RNG; fork it so a seeded
    # build neither depends on nor changes the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _MODEL_CLASSES[family](hf_config)
    return model.float().eval(), tokenizer
