"""A tiny video decoder with the TAEHV architecture, written for this project.

TAEHV (madebyollin/taehv) is a small convolutional autoencoder for video
latents: per-frame 2D convolutions, "memory" blocks that also see the previous
time step, nearest-neighbour spatial upsampling and 1x1 temporal "grow" layers
that turn one latent frame into several. Its released weight files (taew2_1 for
Wan2.1's 16-channel latents, taew2_2 for Wan2.2's 48-channel ones) decode the
diffusion model's latents directly: no latent mean/std is applied.

Only the decoder is built. Its layers sit in one `nn.Sequential` named
`decoder` whose indices and parameter names match the released state dicts, so
`load_taehv_decoder_weights` reads those files as they are (the `encoder.*`
keys are skipped). All of it is differentiable: the optimization loop
backpropagates through it.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reasoner.errors import ConfigError


def _conv3x3(channels_in: int, channels_out: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(channels_in, channels_out, kernel_size=3, padding=1, bias=bias)


class SoftClamp(nn.Module):
    """Squash latents smoothly into (-3, 3) before the first convolution."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3.0 * torch.tanh(x / 3.0)


class MemoryBlock(nn.Module):
    """Residual conv block whose input is the current frame and the previous one."""

    def __init__(self, channels_in: int, channels_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            _conv3x3(2 * channels_in, channels_out),
            nn.ReLU(),
            _conv3x3(channels_out, channels_out),
            nn.ReLU(),
            _conv3x3(channels_out, channels_out),
        )
        self.skip = (
            nn.Conv2d(channels_in, channels_out, kernel_size=1, bias=False)
            if channels_in != channels_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, past: torch.Tensor) -> torch.Tensor:
        # x, past: (N*T, C, H, W); `past` is x shifted one step back in time.
        return F.relu(self.conv(torch.cat([x, past], dim=1)) + self.skip(x))


class TemporalGrow(nn.Module):
    """1x1 conv that emits `stride` frames per input frame (stride 1: a learned projection)."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(channels, channels * stride, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N*T, C, H, W) -> (N*T*stride, C, H, W): each frame's `stride` channel
        # groups become consecutive output frames.
        frames, channels, height, width = x.shape
        return self.conv(x).reshape(frames * self.stride, channels, height, width)


class TAEHVDecoder(nn.Module):
    """Latent video (N, T, C, h, w) -> RGB video (N, T', 3, H, W) in [0, 1].

    T' = T * t_up - (t_up - 1) with t_up = 2 ** (number of temporal upsampling
    stages): Wan's causal VAE maps 1 + 4k frames to 1 + k latents, and the
    first t_up - 1 decoded frames have no counterpart, so they are dropped.
    H = h * 8 * patch_size (three x2 stages, then a pixel shuffle).
    """

    def __init__(
        self,
        latent_channels: int,
        patch_size: int = 1,
        widths: tuple[int, int, int, int] = (256, 128, 64, 64),
        time_upscale: tuple[bool, bool, bool] = (False, True, True),
    ) -> None:
        super().__init__()
        self.latent_channels = latent_channels
        self.patch_size = patch_size
        self.time_upscale_factor = 2 ** sum(time_upscale)
        w0, w1, w2, w3 = widths
        layers: list[nn.Module] = [SoftClamp(), _conv3x3(latent_channels, w0), nn.ReLU()]
        stages = ((w0, w1), (w1, w2), (w2, w3))
        for (width_in, width_out), grows in zip(stages, time_upscale, strict=True):
            layers += [MemoryBlock(width_in, width_in) for _ in range(3)]
            layers += [
                nn.Upsample(scale_factor=2),
                TemporalGrow(width_in, 2 if grows else 1),
                _conv3x3(width_in, width_out, bias=False),
            ]
        layers += [nn.ReLU(), _conv3x3(w3, 3 * patch_size**2)]
        self.decoder = nn.Sequential(*layers)
        self._init_untrained_weights()

    @torch.no_grad()
    def _init_untrained_weights(self) -> None:
        """Give a decoder that no weight file will overwrite a usable random init.

        PyTorch's default conv init shrinks the signal at each of the ~20 layers, so
        an untrained decoder outputs a near-constant image sitting on the 0 clamp:
        most pixels are exactly 0 and the gradient to the latents is ~1e-6 (tests,
        the bench and random-init presets would then optimize nothing). He init
        keeps the signal's scale through the ReLUs; damping the residual branches
        and the output layer, and centring the output at mid-grey, keeps the frames
        inside (0, 1) where the clamp passes gradients. Trained files replace all of it.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, MemoryBlock):
                module.conv[-1].weight.mul_(0.2)
        output = self.decoder[-1]
        output.weight.mul_(0.05)
        output.bias.fill_(0.5)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        if latents.ndim != 5 or latents.shape[2] != self.latent_channels:
            raise ValueError(
                f"expected latents (N, T, {self.latent_channels}, h, w), got {tuple(latents.shape)}"
            )
        batch = latents.shape[0]
        x = latents.flatten(0, 1)  # (N*T, C, h, w), all time steps in parallel
        for layer in self.decoder:
            x = layer(x, _previous_frame(x, batch)) if isinstance(layer, MemoryBlock) else layer(x)
        if self.patch_size > 1:
            x = F.pixel_shuffle(x, self.patch_size)
        x = x.clamp(0.0, 1.0)
        video = x.reshape(batch, -1, *x.shape[1:])
        return video[:, self.time_upscale_factor - 1 :]


def _previous_frame(x: torch.Tensor, batch: int) -> torch.Tensor:
    """(N*T, C, H, W) -> the same with every frame replaced by its predecessor (zeros at t=0)."""
    video = x.reshape(batch, -1, *x.shape[1:])
    return F.pad(video, (0, 0, 0, 0, 0, 0, 1, 0))[:, :-1].reshape(x.shape)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a .safetensors file or a .pth state dict (tensors only, no pickled code)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"decoder.surrogate_path {path} does not exist; download taew2_1/taew2_2 from "
            "madebyollin/taehv and point to it, or set decoder.surrogate: full"
        )
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ConfigError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def load_taehv_decoder_weights(decoder: TAEHVDecoder, path: str | Path) -> None:
    """Copy the `decoder.*` tensors of a TAEHV weight file into `decoder`."""
    state = {k: v for k, v in read_state_dict(path).items() if k.startswith("decoder.")}
    if not state:
        raise ConfigError(f"{path} has no 'decoder.*' tensors; is it a TAEHV weight file?")
    expected = decoder.state_dict()
    first = state.get("decoder.1.weight")
    if first is not None and first.shape[1] != decoder.latent_channels:
        raise ConfigError(
            f"{path} decodes {first.shape[1]}-channel latents but the video model has "
            f"{decoder.latent_channels}; use taew2_1 for 16 channels (Wan2.1) or taew2_2 for "
            "48 channels (Wan2.2-TI2V-5B)"
        )
    for index, layer in enumerate(decoder.decoder):
        key = f"decoder.{index}.conv.weight"
        if isinstance(layer, TemporalGrow) and key in state:
            # A file trained with temporal upsampling in a stage we run without
            # keeps the last time step's output channels (that frame survives).
            state[key] = state[key][-expected[key].shape[0] :]
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in state if k in expected and state[k].shape != expected[k].shape)
    if missing or unexpected or mismatched:
        raise ConfigError(
            f"{path} does not match the TAEHV decoder built from decoder.taehv_widths / "
            f"taehv_time_upscale: missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"wrong shape {mismatched[:4]}"
        )
    decoder.load_state_dict(state)
