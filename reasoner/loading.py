"""Resolve a `ReasonerConfig` against the model's architecture, then build the models.

`resolve` reads only configs (a preset, or the config.json files of a model
folder / id) and builds the transformer and VAE on the meta device, so every
check that needs the architecture (sizes vs. compression and patch size, LoRA
targets, decoder choice and file, device) fails in seconds with a
`ConfigError`, before any weight is allocated. `build_models` does the heavy
part.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from torch import nn

from reasoner.architectures import PRESETS, ArchitecturePreset, build_offline_t5_tokenizer
from reasoner.config import ReasonerConfig
from reasoner.errors import ConfigError

TORCH_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class LatentGeometry:
    """How pixels map to the transformer's latent grid."""

    channels: int
    """Latent channels (the VAE's z_dim; 3 for a pixel-space model)."""
    temporal: int
    """Video frames per latent frame after the first (4 for Wan's VAEs, 1 in pixel space)."""
    spatial: int
    """Pixels per latent pixel along height and width (8 or 16; 1 in pixel space)."""
    patch: tuple[int, int, int]
    """Transformer patch size (t, h, w) over the latent grid."""

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, ...]:
        """(1, C, F', H', W') for a video of that size."""
        return (
            1,
            self.channels,
            (num_frames - 1) // self.temporal + 1,
            height // self.spatial,
            width // self.spatial,
        )


@dataclass(frozen=True)
class ResolvedModel:
    """The architecture a config points to, checked against the config."""

    preset: ArchitecturePreset | None
    """The random-init preset, or None for weights loaded from `source`."""
    transformer_config: dict[str, Any]
    vae_config: dict[str, Any] | None
    """None for a pixel-space model."""
    geometry: LatentGeometry


@dataclass
class Models:
    """The loaded (frozen) model objects."""

    transformer: WanTransformer3DModel
    vae: AutoencoderKLWan | None
    text_encoder: nn.Module
    tokenizer: Any


def _looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or Path(source).expanduser().exists()


def _read_configs(source: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The transformer and VAE config dicts of a model folder or hub id (no weights)."""
    if _looks_like_path(source):
        root = Path(source).expanduser()
        if not (root / "transformer").is_dir():
            raise ConfigError(
                f"video_model.source {source} is not a diffusers Wan folder (no transformer/ "
                f"subfolder); known presets: {', '.join(sorted(PRESETS))}"
            )
    elif "/" not in source:
        raise ConfigError(
            f"video_model.source '{source}' is neither a preset ({', '.join(sorted(PRESETS))}) "
            "nor a model id like 'Wan-AI/Wan2.2-TI2V-5B-Diffusers' nor an existing folder"
        )
    try:
        transformer = dict(WanTransformer3DModel.load_config(source, subfolder="transformer"))
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"could not read transformer/config.json of video_model.source '{source}': {error}. "
            "Check the id or path; without network access the model must be in the HF cache."
        ) from None
    vae: dict[str, Any] | None = None
    if not _looks_like_path(source) or (Path(source).expanduser() / "vae").is_dir():
        try:
            vae = dict(AutoencoderKLWan.load_config(source, subfolder="vae"))
        except (OSError, ValueError) as error:
            raise ConfigError(
                f"could not read vae/config.json of video_model.source '{source}': {error}"
            ) from None
    return transformer, vae


def _on_meta(cls: type, config: dict[str, Any]) -> Any:
    # Construction on the meta device allocates nothing: it gives the full
    # config (defaults filled in) and the module names, for free.
    with torch.device("meta"):
        return cls.from_config(config)


def _check_lora_targets(transformer: nn.Module, targets: list[str]) -> None:
    linear_names = [n for n, m in transformer.named_modules() if isinstance(m, nn.Linear)]
    for target in targets:
        hits = [n for n in linear_names if n == target or n.endswith("." + target)]
        if not hits:
            examples = sorted(
                {n.split(".", 2)[-1] for n in linear_names if n.startswith("blocks.0.")}
            )
            raise ConfigError(
                f"lora.target_modules entry '{target}' matches no linear layer of the "
                f"transformer; layers of a block are: {', '.join(examples)}"
            )


def check_device(
    device: str, setting: str = "video_model.device", remedy: str = "set video_model.device: cpu"
) -> torch.device:
    """`device` as a torch device, if this machine has it; `setting` names where it was given."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        raise ConfigError(
            f"{setting} '{device}' is not a torch device; use 'cpu' or 'cuda'"
        ) from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"{setting} is '{device}' but no CUDA GPU is visible; {remedy}")
    return parsed


def resolve(cfg: ReasonerConfig) -> ResolvedModel:
    """Check `cfg` against the architecture it names, without loading weights."""
    vm, dec = cfg.video_model, cfg.decoder
    preset = PRESETS.get(vm.source)
    if preset is not None:
        transformer_cfg, vae_cfg = dict(preset.transformer), preset.vae
    else:
        transformer_cfg, vae_cfg = _read_configs(vm.source)
    check_device(vm.device)

    transformer = _on_meta(WanTransformer3DModel, transformer_cfg)
    tcfg = transformer.config
    patch = tuple(tcfg.patch_size)
    if vae_cfg is None:
        geometry = LatentGeometry(channels=3, temporal=1, spatial=1, patch=patch)
    else:
        vcfg = _on_meta(AutoencoderKLWan, vae_cfg).config
        geometry = LatentGeometry(
            channels=vcfg.z_dim,
            temporal=vcfg.scale_factor_temporal,
            spatial=vcfg.scale_factor_spatial,
            patch=patch,
        )

    if tcfg.in_channels != geometry.channels:
        raise ConfigError(
            f"the transformer takes {tcfg.in_channels} input channels but latents have "
            f"{geometry.channels}: only models whose condition replaces the first latent frame "
            "(Wan2.1-T2V, Wan2.2-TI2V) are supported, not channel-concatenating I2V models"
        )
    if vm.kind == "wan_ti2v" and patch[0] != 1:
        raise ConfigError(
            f"wan_ti2v needs a temporal patch size of 1 (the first latent frame is the image "
            f"condition), this transformer has {patch[0]}"
        )
    for name, size, patch_size in (("height", vm.height, patch[1]), ("width", vm.width, patch[2])):
        multiple = geometry.spatial * patch_size
        if size % multiple:
            lower = max(size - size % multiple, multiple)
            raise ConfigError(
                f"video_model.{name} must be a multiple of {multiple} for this model (VAE "
                f"x{geometry.spatial}, patch {patch_size}); use {lower} or {lower + multiple}"
            )
    if (vm.num_frames - 1) % geometry.temporal:
        raise ConfigError(
            f"video_model.num_frames - 1 must be a multiple of {geometry.temporal} for this VAE"
        )
    _, _, frames, height, width = geometry.latent_shape(vm.num_frames, vm.height, vm.width)
    grid = (frames // patch[0], height // patch[1], width // patch[2])
    if max(grid) > tcfg.rope_max_seq_len:
        raise ConfigError(
            f"the token grid {grid} exceeds the transformer's rope_max_seq_len "
            f"{tcfg.rope_max_seq_len}; lower num_frames / height / width"
        )

    if vae_cfg is None and dec.surrogate != "identity":
        raise ConfigError("this is a pixel-space model (no VAE): set decoder.surrogate: identity")
    if vae_cfg is not None and dec.surrogate == "identity":
        raise ConfigError(
            "decoder.surrogate 'identity' is for pixel-space models; this model has a VAE: use "
            "'taehv' or 'full'"
        )
    if dec.surrogate == "taehv":
        _check_taehv(cfg, geometry, is_preset=preset is not None)

    _check_lora_targets(transformer, cfg.lora.target_modules)
    distill = vm.distill_lora
    # A weight-file name or a path is local; anything else is a hub id.
    is_local = distill is not None and (
        distill.endswith((".safetensors", ".pth", ".bin")) or _looks_like_path(distill)
    )
    if is_local and not Path(distill).expanduser().exists():
        raise ConfigError(
            f"video_model.distill_lora {distill} does not exist; point it to the distillation "
            "LoRA (.safetensors or folder) or remove the field"
        )
    return ResolvedModel(
        preset=preset,
        transformer_config=dict(tcfg),
        vae_config=None if vae_cfg is None else dict(vae_cfg),
        geometry=geometry,
    )


def _check_taehv(cfg: ReasonerConfig, geometry: LatentGeometry, is_preset: bool) -> None:
    dec = cfg.decoder
    upscale = 2 ** sum(dec.taehv_time_upscale)
    if geometry.temporal != upscale:
        raise ConfigError(
            f"decoder.taehv_time_upscale gives x{upscale} in time but the VAE packs "
            f"{geometry.temporal} frames per latent; use {int(math.log2(geometry.temporal))} "
            "True stages"
        )
    if geometry.spatial % 8:
        raise ConfigError(
            f"the TAEHV decoder upsamples x8 then pixel-shuffles; the VAE's x{geometry.spatial} "
            "is not a multiple of 8"
        )
    if dec.surrogate_path is None:
        if not is_preset:
            raise ConfigError(
                "a pretrained video model needs trained surrogate weights: set "
                "decoder.surrogate_path to a TAEHV file (taew2_1 for Wan2.1, taew2_2 for "
                "Wan2.2-TI2V-5B, from madebyollin/taehv) or use decoder.surrogate: full"
            )
    elif not Path(dec.surrogate_path).expanduser().is_file():
        raise ConfigError(
            f"decoder.surrogate_path {dec.surrogate_path} does not exist; point it to a TAEHV "
            "weight file (.pth / .safetensors) or use decoder.surrogate: full"
        )


def _seeded_init(device: torch.device) -> Any:
    # Module constructors draw their random init from the global RNG; fork it
    # so a preset's weights depend on preset_seed (and the device type: a GPU's
    # generator draws other numbers than the CPU's) and the caller's RNG state is
    # left untouched.
    devices = [device] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices, device_type=device.type)


def _cast_like_from_pretrained(model: Any, dtype: torch.dtype) -> Any:
    """Cast to `dtype` but keep the model's `_keep_in_fp32_modules` in float32.

    This is what diffusers' `from_pretrained(torch_dtype=...)` does (norms,
    time embedding and RoPE stay float32 in a bf16 Wan transformer); a plain
    `.to(dtype)` would cast them too.
    """
    keep = getattr(model, "_keep_in_fp32_modules", None) or []
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point():
            fp32 = any(part in keep for part in name.split("."))
            tensor.data = tensor.data.to(torch.float32 if fp32 else dtype)
    return model.eval().requires_grad_(False)


def _fuse_distill_lora(transformer: WanTransformer3DModel, source: str, scale: float) -> None:
    """Merge a distillation LoRA into the base weights and drop the LoRA layers again."""
    from diffusers import WanPipeline

    # A pipeline object only routes the LoRA loader (key-format conversion
    # included) to the transformer; nothing else of it is used.
    pipe = WanPipeline(
        tokenizer=None, text_encoder=None, vae=None, scheduler=None, transformer=transformer
    )
    path = Path(source).expanduser()
    if path.is_file():
        pipe.load_lora_weights(str(path.parent), weight_name=path.name, adapter_name="distill")
    else:
        pipe.load_lora_weights(source, adapter_name="distill")
    pipe.fuse_lora(components=["transformer"], lora_scale=scale)
    pipe.unload_lora_weights()


def build_models(cfg: ReasonerConfig, resolved: ResolvedModel) -> Models:
    """Load (or, for a preset, randomly initialise) the frozen models on the configured device."""
    vm = cfg.video_model
    device = torch.device(vm.device)
    dtype, vae_dtype = TORCH_DTYPES[vm.dtype], TORCH_DTYPES[vm.vae_dtype]
    if resolved.preset is not None:
        preset = resolved.preset
        tokenizer = build_offline_t5_tokenizer(model_max_length=vm.max_sequence_length)
        from transformers import UMT5Config, UMT5EncoderModel

        # Built directly on the target device: a real-size preset initialises
        # in seconds on a GPU instead of minutes on the CPU.
        with _seeded_init(device), torch.device(device):
            torch.manual_seed(vm.preset_seed)
            transformer = WanTransformer3DModel(**preset.transformer)
            vae = None if preset.vae is None else AutoencoderKLWan(**preset.vae)
            text_config = UMT5Config(
                **preset.text_encoder, vocab_size=len(tokenizer), pad_token_id=0, eos_token_id=1
            )
            text_encoder = UMT5EncoderModel(text_config)
    else:
        from transformers import AutoTokenizer, UMT5EncoderModel

        source = vm.source
        transformer = WanTransformer3DModel.from_pretrained(
            source, subfolder="transformer", torch_dtype=dtype
        )
        vae = None
        if resolved.vae_config is not None:
            vae = AutoencoderKLWan.from_pretrained(source, subfolder="vae", torch_dtype=vae_dtype)
        text_encoder = UMT5EncoderModel.from_pretrained(
            source, subfolder="text_encoder", torch_dtype=dtype
        )
        tokenizer = AutoTokenizer.from_pretrained(source, subfolder="tokenizer")

    if vm.distill_lora is not None:
        _fuse_distill_lora(transformer, vm.distill_lora, vm.distill_lora_scale)
    transformer = _cast_like_from_pretrained(transformer.to(device), dtype)
    text_encoder = text_encoder.to(device=device, dtype=dtype).eval().requires_grad_(False)
    if vae is not None:
        vae = _cast_like_from_pretrained(vae.to(device), vae_dtype)
    if vm.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    return Models(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer)
