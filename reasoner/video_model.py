"""The video reasoner: a frozen diffusers Wan model, its per-task LoRA and its decoders.

It calls the transformer and the flow-matching maths directly, because
`WanPipeline.__call__` runs under `no_grad`. Three ways to produce latents:

- `predict_latent(grad="first")`: the paper's one-step clean prediction from
  pure noise at t = 1, x0_hat = z1 - v(z1, 1, c), with gradient;
- `grad="last"`: the few-step sampler, only its last step with gradient;
- `grad="all"`: every sampler step with gradient, each transformer call
  checkpointed (recomputed in backward).

The sampler is a deterministic flow-matching Euler update over the sigmas of
diffusers' `FlowMatchEulerDiscreteScheduler` (shifted by `flow_shift`), or over
explicit `sampler_sigmas` (e.g. a distilled model's [1.0, 0.75, 0.5, 0.25]).
Distilled checkpoints trained with DMD sample by re-noising x0_hat at each
step; the Euler update is the deterministic counterpart on the same sigmas.

Text+image-to-video follows Wan2.2-TI2V (`WanImageToVideoPipeline` with
`expand_timesteps=True`): the image's clean latent replaces the first latent
frame at every transformer call, its tokens carry timestep 0 and every other
token the current one; the output keeps that clean first frame. Pixel-space
models (no VAE) take the same path with the image itself as the first frame.
Without an image a wan_ti2v model runs text-to-video, as `WanPipeline` with
`expand_timesteps=True` does: every token at the current timestep.
"""

from __future__ import annotations

import html
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch.utils.checkpoint import checkpoint

from reasoner.config import ReasonerConfig
from reasoner.decoders import FrameDecoder, FullVaeDecoder, PixelDecoder, build_taehv
from reasoner.flow import (
    NUM_TRAIN_TIMESTEPS,
    clean_prediction,
    euler_step,
    make_scheduler,
    sampler_sigmas,
)
from reasoner.loading import TORCH_DTYPES, LatentGeometry, Models, build_models, resolve
from reasoner.lora import LoraAdapter

GradMode = Literal["first", "last", "all"]


@dataclass
class Conditioning:
    """What the transformer is conditioned on for one task (computed once, no grad)."""

    prompt_embeds: torch.Tensor
    """(1, max_sequence_length, text_dim) text-encoder states, zero past the prompt's end."""
    negative_prompt_embeds: torch.Tensor | None = None
    """Same for the negative prompt; set only when guidance_scale > 1."""
    image_latent: torch.Tensor | None = None
    """(1, C, 1, h, w) float32 clean latent of the first frame (wan_ti2v only)."""


def clean_prompt(text: str) -> str:
    """Wan's prompt cleaning (HTML entities, whitespace), without the optional ftfy pass."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


class VideoReasoner:
    """A frozen Wan video model with a trainable per-task LoRA and differentiable decoders."""

    def __init__(
        self,
        config: ReasonerConfig,
        models: Models,
        geometry: LatentGeometry,
        surrogate: FrameDecoder,
    ) -> None:
        self.config = config
        self.transformer = models.transformer
        self.vae = models.vae
        self.text_encoder = models.text_encoder
        self.tokenizer = models.tokenizer
        self.geometry = geometry
        self.scheduler = make_scheduler(config.video_model.flow_shift)
        self.device = torch.device(config.video_model.device)
        self.dtype = TORCH_DTYPES[config.video_model.dtype]
        self.full_decoder: FrameDecoder = (
            PixelDecoder()
            if self.vae is None
            else FullVaeDecoder(self.vae, checkpointed=config.decoder.checkpoint_full_decoder)
        )
        self.surrogate = surrogate
        self.lora = LoraAdapter(self.transformer, seed=config.seed)

    @classmethod
    def from_config(cls, cfg: ReasonerConfig, attach_lora: bool = True) -> VideoReasoner:
        """Check `cfg` (cheap, raises ConfigError), build the models, attach a fresh LoRA."""
        resolved = resolve(cfg)
        device = torch.device(cfg.video_model.device)
        dtype = TORCH_DTYPES[cfg.video_model.dtype]
        # The small surrogate first: a bad decoder file fails before the big load.
        taehv = (
            build_taehv(cfg.decoder, resolved.geometry, device, dtype, cfg.video_model.preset_seed)
            if cfg.decoder.surrogate == "taehv"
            else None
        )
        models = build_models(cfg, resolved)
        surrogate: FrameDecoder
        if taehv is not None:
            surrogate = taehv
        elif cfg.decoder.surrogate == "identity":
            surrogate = PixelDecoder()
        else:
            assert models.vae is not None  # resolve() rejected 'full' without a VAE
            surrogate = FullVaeDecoder(models.vae, cfg.decoder.checkpoint_full_decoder)
        reasoner = cls(cfg, models, resolved.geometry, surrogate)
        if attach_lora:
            reasoner.lora.attach(cfg.lora)
        return reasoner

    # -- shapes --------------------------------------------------------------

    @property
    def latent_shape(self) -> tuple[int, ...]:
        vm = self.config.video_model
        return self.geometry.latent_shape(vm.num_frames, vm.height, vm.width)

    @property
    def is_ti2v(self) -> bool:
        return self.config.video_model.kind == "wan_ti2v"

    # -- conditioning --------------------------------------------------------

    @torch.no_grad()
    def encode_text(self, prompt: str) -> torch.Tensor:
        """(1, L, text_dim) UMT5 states, as WanPipeline computes them (padding zeroed)."""
        length = self.config.video_model.max_sequence_length
        tokens = self.tokenizer(
            [clean_prompt(prompt)],
            padding="max_length",
            max_length=length,
            truncation=True,
            add_special_tokens=True,
            return_attention_mask=True,
            return_tensors="pt",
        )
        ids, mask = tokens.input_ids.to(self.device), tokens.attention_mask.to(self.device)
        states = self.text_encoder(ids, mask).last_hidden_state
        # Positions past the prompt are zeros, not the encoder's padding states.
        states = states * mask.unsqueeze(-1).to(states.dtype)
        return states.to(self.dtype)

    @torch.no_grad()
    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) in [0, 1] -> (1, C, 1, h, w) float32 clean first-frame latent."""
        vm = self.config.video_model
        expected = (3, vm.height, vm.width)
        if tuple(image.shape) != expected:
            raise ValueError(
                f"image must be a (3, H, W) tensor of size {expected} in [0, 1], got "
                f"{tuple(image.shape)}; resize it to the configured height and width first"
            )
        pixels = (image.to(self.device, torch.float32) * 2.0 - 1.0)[None, :, None]
        if self.vae is None:
            return pixels
        assert isinstance(self.full_decoder, FullVaeDecoder)
        return self.full_decoder.encode(pixels)

    def encode(self, prompt: str, image: torch.Tensor | None = None) -> Conditioning:
        """Condition on an instruction and, for wan_ti2v, optionally the first frame.

        A wan_ti2v model without an image generates from the text alone, as
        Wan2.2-TI2V does in text-to-video mode (every token at the same timestep).
        """
        if not self.is_ti2v and image is not None:
            raise ValueError(
                "a wan_t2v model takes no image; set video_model.kind: wan_ti2v to condition on one"
            )
        vm = self.config.video_model
        negative = self.encode_text(vm.negative_prompt) if vm.guidance_scale > 1.0 else None
        return Conditioning(
            prompt_embeds=self.encode_text(prompt),
            negative_prompt_embeds=negative,
            image_latent=None if image is None else self.encode_image(image),
        )

    def initial_noise(self, generator: torch.Generator) -> torch.Tensor:
        """Pure noise z1 of the latent shape, float32, drawn from `generator`.

        Drawn on the generator's device and then moved, so a CPU generator gives
        the same noise whatever device the model runs on.
        """
        noise = torch.randn(self.latent_shape, generator=generator, device=generator.device)
        return noise.to(self.device)

    # -- the transformer as a velocity field ---------------------------------

    def _timesteps(self, sigma: float, latents: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        t = torch.tensor([sigma * NUM_TRAIN_TIMESTEPS], dtype=torch.float32, device=self.device)
        if cond.image_latent is None:  # text to video: every token at t
            return t
        # Per-token timesteps (expand_timesteps): tokens of the first latent
        # frame are clean (0), the rest at t. Tokens are ordered (f, h, w).
        _, _, frames, height, width = latents.shape
        _, patch_h, patch_w = self.geometry.patch
        per_frame = (height // patch_h) * (width // patch_w)
        steps = torch.full((frames * per_frame,), float(t), device=self.device)
        steps[:per_frame] = 0.0
        return steps.unsqueeze(0)

    def _with_condition(self, latents: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        # Equal to WanImageToVideoPipeline's (1 - mask) * condition + mask * latents.
        if cond.image_latent is None:
            return latents
        return torch.cat([cond.image_latent.to(latents.dtype), latents[:, :, 1:]], dim=2)

    def velocity(self, latents: torch.Tensor, sigma: float, cond: Conditioning) -> torch.Tensor:
        """v(z_sigma, sigma, c) in float32, with classifier-free guidance when configured."""
        model_input = self._with_condition(latents, cond).to(self.dtype)
        timestep = self._timesteps(sigma, latents, cond)

        def run(embeds: torch.Tensor) -> torch.Tensor:
            return self.transformer(
                hidden_states=model_input,
                timestep=timestep,
                encoder_hidden_states=embeds,
                return_dict=False,
            )[0].float()

        v = run(cond.prompt_embeds)
        scale = self.config.video_model.guidance_scale
        if scale > 1.0:
            assert cond.negative_prompt_embeds is not None
            v_uncond = run(cond.negative_prompt_embeds)
            v = v_uncond + scale * (v - v_uncond)
        return v

    def sigmas(self) -> torch.Tensor:
        """The sampler's shifted sigmas for this rollout, ending at 0."""
        vm = self.config.video_model
        return sampler_sigmas(self.scheduler, vm.num_inference_steps, vm.sampler_sigmas)

    # -- producing latents and frames ----------------------------------------

    def predict_latent(
        self, noise: torch.Tensor, cond: Conditioning, grad: GradMode = "first"
    ) -> torch.Tensor:
        """Clean latent (1, C, F', h, w), float32, differentiable w.r.t. the LoRA."""
        if grad == "first":
            x0 = clean_prediction(noise, self.velocity(noise, 1.0, cond), 1.0)
            return self._with_condition(x0, cond)
        if grad not in ("last", "all"):
            raise ValueError(f"grad must be 'first', 'last' or 'all', got {grad!r}")
        sigmas = self.sigmas().tolist()
        latents = noise
        steps = len(sigmas) - 1
        for i in range(steps):
            sigma, sigma_next = sigmas[i], sigmas[i + 1]
            tracked = grad == "all" or i == steps - 1
            with nullcontext() if tracked else torch.no_grad():
                if grad == "all" and torch.is_grad_enabled():
                    v = checkpoint(self.velocity, latents, sigma, cond, use_reentrant=False)
                else:
                    v = self.velocity(latents, sigma, cond)
                latents = euler_step(latents, v, sigma, sigma_next)
        return self._with_condition(latents, cond)

    def decode(
        self, latent: torch.Tensor, which: Literal["surrogate", "full"] = "surrogate"
    ) -> torch.Tensor:
        """Latent (1, C, F', h, w) -> frames (F, 3, H, W) in [0, 1], differentiable."""
        if which == "surrogate":
            return self.surrogate(latent)
        if which == "full":
            return self.full_decoder(latent)
        raise ValueError(f"which must be 'surrogate' or 'full', got {which!r}")

    @torch.no_grad()
    def sample(self, noise: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """The final video: the full few-step sampler and the full decoder, no grad."""
        return self.decode(self.predict_latent(noise, cond, grad="last"), which="full")

    # -- saving --------------------------------------------------------------

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the base model as a diffusers folder that `video_model.source` can load.

        Subfolders transformer/, text_encoder/, tokenizer/ and (latent models)
        vae/. The LoRA must be removed first: saving it into the base weights
        would silently change the model.
        """
        if self.lora.attached:
            raise RuntimeError(
                "remove the LoRA (reasoner.lora.remove()) before saving the base model"
            )
        path = Path(path)
        self.transformer.save_pretrained(path / "transformer")
        self.text_encoder.save_pretrained(path / "text_encoder")
        self.tokenizer.save_pretrained(path / "tokenizer")
        if self.vae is not None:
            self.vae.save_pretrained(path / "vae")
        return path
