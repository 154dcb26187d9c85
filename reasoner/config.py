"""Typed configuration of the reasoner core: video model, decoders, LoRA.

Every field says what it does; invalid values are rejected here (pydantic) or,
for checks that need the model's architecture (sizes vs. patch sizes, LoRA
targets, decoder files), by `reasoner.loading.resolve` before any weights load.
YAML files are an override layer over these defaults (`load_reasoner_config`).
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reasoner.errors import ConfigError

DType = Literal["float32", "bfloat16"]

# LoRA targets inside diffusers' `WanTransformer3DModel` blocks (peft matches by suffix).
ATTENTION_TARGETS: tuple[str, ...] = tuple(
    f"{attn}.{proj}" for attn in ("attn1", "attn2") for proj in ("to_q", "to_k", "to_v", "to_out.0")
)
FFN_TARGETS: tuple[str, ...] = ("ffn.net.0.proj", "ffn.net.2")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoraConfig(_Strict):
    """A fresh low-rank adapter on the frozen video transformer, one per task."""

    rank: int = Field(16, ge=1, description="LoRA rank r (the paper uses 16).")
    alpha: float = Field(
        16.0, gt=0, description="LoRA alpha; the update is scaled by alpha / rank."
    )
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] = Field(
        default_factory=lambda: list(ATTENTION_TARGETS),
        min_length=1,
        description=(
            "Linear layers of each transformer block that get an adapter, matched by name "
            "suffix (e.g. 'attn1.to_q' matches 'blocks.3.attn1.to_q'). Default: self- and "
            "cross-attention q/k/v/out; add 'ffn.net.0.proj', 'ffn.net.2' for the MLP."
        ),
    )


class VideoModelConfig(_Strict):
    """The video generation model (diffusers Wan) and how it samples."""

    kind: Literal["wan_t2v", "wan_ti2v"] = Field(
        description=(
            "'wan_t2v': text-to-video (WanPipeline, Wan2.1). 'wan_ti2v': text+image-to-video "
            "as Wan2.2-TI2V (WanImageToVideoPipeline, expand_timesteps=True): the first "
            "latent frame is the clean image condition and its tokens carry timestep 0."
        )
    )
    source: str = Field(
        description=(
            "Where the weights come from: a diffusers model id or local folder (subfolders "
            "transformer/, vae/, text_encoder/, tokenizer/), or the name of a random-init "
            "architecture preset from reasoner.architectures (e.g. 'tiny', 'wan2.1-1.3b', "
            "'wan2.2-ti2v-5b', 'wan2.2-ti2v-5b-1layer')."
        )
    )
    height: int = Field(32, ge=16, description="Video height in pixels, a multiple of 16.")
    width: int = Field(32, ge=16, description="Video width in pixels, a multiple of 16.")
    num_frames: int = Field(9, ge=1, description="Frames per video, 4k+1 as Wan requires.")
    num_inference_steps: int = Field(
        4,
        ge=1,
        description=(
            "Steps of the full sampler (a flow-matching Euler update). A step-distilled "
            "model uses few (4); the one-step prediction ignores this."
        ),
    )
    sampler_sigmas: list[float] | None = Field(
        None,
        description=(
            "Explicit, unshifted noise levels of the sampler steps, descending in (0, 1] and "
            "starting at 1.0 (e.g. [1.0, 0.75, 0.5, 0.25] for a 4-step distilled model); the "
            "flow shift is applied on top, as diffusers' set_timesteps(sigmas=...) does. "
            "None: diffusers' default spacing for num_inference_steps."
        ),
    )
    flow_shift: float = Field(
        5.0, gt=0, description="Flow-matching timestep shift (Wan: 5.0 at 720p, 3.0 at 480p)."
    )
    guidance_scale: float = Field(
        1.0,
        ge=1.0,
        description=(
            "Classifier-free guidance scale; 1.0 disables it (distilled models need none). "
            "Above 1, every transformer call is doubled with the negative prompt."
        ),
    )
    negative_prompt: str = Field("", description="Negative prompt used when guidance_scale > 1.")
    max_sequence_length: int = Field(
        512, ge=1, description="Text tokens fed to the encoder (Wan uses 512)."
    )
    dtype: DType = Field(
        "float32", description="Transformer and text encoder dtype (bfloat16 on GPU)."
    )
    vae_dtype: DType = Field("float32", description="dtype of the full VAE.")
    device: str = Field("cpu", description="torch device, e.g. 'cpu', 'cuda', 'cuda:1'.")
    gradient_checkpointing: bool = Field(
        False,
        description=(
            "Recompute each transformer block in the backward pass (diffusers' own "
            "gradient checkpointing): needed for real sizes on one GPU."
        ),
    )
    preset_seed: int = Field(
        0,
        description="Seed of the random weights when source is an architecture preset (the "
        "weights are drawn on `device`, so a GPU gives other weights than the CPU for one seed).",
    )
    distill_lora: str | None = Field(
        None,
        description=(
            "A step-distillation LoRA fused into the base transformer at load (a folder or "
            ".safetensors file, diffusers or original Wan key format, anything "
            "WanPipeline.load_lora_weights reads), making the base a few-step model. The "
            "per-task LoRA is then trained on top of the fused weights."
        ),
    )
    distill_lora_scale: float = Field(1.0, description="Scale of the fused distillation LoRA.")

    @field_validator("height", "width")
    @classmethod
    def _multiple_of_16(cls, value: int) -> int:
        if value % 16:
            raise ValueError(
                f"must be a multiple of 16, got {value}; use {value - value % 16} or "
                f"{value - value % 16 + 16}"
            )
        return value

    @field_validator("num_frames")
    @classmethod
    def _four_k_plus_one(cls, value: int) -> int:
        if (value - 1) % 4:
            lower = value - (value - 1) % 4
            raise ValueError(
                f"must be 4k+1 (Wan's VAE packs 4 frames per latent after the first), got "
                f"{value}; use {lower} or {lower + 4}"
            )
        return value

    @field_validator("sampler_sigmas")
    @classmethod
    def _descending_unit_sigmas(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return value
        if not value or value[0] != 1.0:
            raise ValueError("must start at 1.0 (pure noise), e.g. [1.0, 0.75, 0.5, 0.25]")
        if any(not 0.0 < s <= 1.0 for s in value):
            raise ValueError(f"every sigma must lie in (0, 1], got {value}")
        if any(b >= a for a, b in itertools.pairwise(value)):
            raise ValueError(f"must be strictly descending, got {value}")
        return value

    @model_validator(mode="after")
    def _sigmas_match_steps(self) -> VideoModelConfig:
        if self.sampler_sigmas is not None and len(self.sampler_sigmas) != self.num_inference_steps:
            raise ValueError(
                f"sampler_sigmas has {len(self.sampler_sigmas)} values but num_inference_steps "
                f"is {self.num_inference_steps}; make them agree"
            )
        return self


class DecoderConfig(_Strict):
    """How latents become frames inside the differentiable path."""

    surrogate: Literal["taehv", "full", "identity"] = Field(
        "taehv",
        description=(
            "'taehv': a tiny TAEHV-architecture decoder (loads madebyollin/taehv taew2_1 / "
            "taew2_2 weight files); 'full': the model's AutoencoderKLWan (exact, heavy); "
            "'identity': a pixel-space model whose latents ARE pixels in [-1, 1]."
        ),
    )
    surrogate_path: str | None = Field(
        None,
        description=(
            "TAEHV weight file (.pth or .safetensors). Required for a pretrained video model; "
            "with a random-init preset and no file, the TAEHV decoder is random-init too."
        ),
    )
    taehv_widths: tuple[int, int, int, int] = Field(
        (256, 128, 64, 64),
        description=(
            "Channel widths of the TAEHV decoder stages (the released files use the default)."
        ),
    )
    taehv_time_upscale: tuple[bool, bool, bool] = Field(
        (False, True, True),
        description=(
            "Temporal x2 upsampling per TAEHV decoder stage; two True stages give Wan's 4x "
            "temporal compression."
        ),
    )
    checkpoint_full_decoder: bool = Field(
        True,
        description=(
            "Wrap the full VAE decode in activation checkpointing when it is in the graph "
            "(AutoencoderKLWan has no checkpointing of its own)."
        ),
    )

    @field_validator("taehv_widths")
    @classmethod
    def _positive_widths(cls, value: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        if any(w < 1 for w in value):
            raise ValueError(f"widths must be positive, got {value}")
        return value


class ReasonerConfig(_Strict):
    """Everything needed to build a `VideoReasoner`."""

    video_model: VideoModelConfig = Field(description="The video model and its sampler.")
    decoder: DecoderConfig = Field(
        default_factory=DecoderConfig, description="Surrogate decoder of the differentiable path."
    )
    lora: LoraConfig = Field(
        default_factory=LoraConfig, description="The per-task adapter on the transformer."
    )
    seed: int = Field(
        0, description="Seed of the LoRA initialisation (the same init after every reset)."
    )

    @model_validator(mode="after")
    def _identity_needs_pixel_space(self) -> ReasonerConfig:
        if self.decoder.surrogate == "identity" and self.decoder.surrogate_path is not None:
            raise ValueError(
                "decoder.surrogate_path is only read by the 'taehv' surrogate; remove it or "
                "set decoder.surrogate: taehv"
            )
        return self


def format_validation_error(error: ValidationError, where: str) -> str:
    """One line per problem: the dotted field path and pydantic's reason."""
    lines = [f"invalid configuration in {where}:"]
    for item in error.errors():
        path = ".".join(str(p) for p in item["loc"]) or "(top level)"
        reason = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            reason = "unknown field; check its spelling against reasoner/config.py"
        lines.append(f"  {path}: {reason}")
    return "\n".join(lines)


def reasoner_config_from_dict(data: dict[str, Any], where: str = "config") -> ReasonerConfig:
    """Validate a plain dict, raising `ConfigError` with every problem listed."""
    try:
        return ReasonerConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, where)) from None


def load_reasoner_config(path: str | Path) -> ReasonerConfig:
    """Read a YAML file whose top level is a `ReasonerConfig`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass the path of a YAML file")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping with a 'video_model' section")
    return reasoner_config_from_dict(data, where=str(path))
