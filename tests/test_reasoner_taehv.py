"""The TAEHV-architecture surrogate decoder: layout of the released files, shapes, loading."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from tiny_wan import one_torch_thread

from reasoner.errors import ConfigError
from reasoner.taehv import TAEHVDecoder, load_taehv_decoder_weights

TINY = (16, 8, 8, 8)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def _released_layout(latent_channels: int, patch: int) -> dict[str, tuple[int, ...]]:
    """Tensor names and shapes of a TAEHV decoder file (taew2_1: C=16, p=1; taew2_2: C=48, p=2)."""
    shapes: dict[str, tuple[int, ...]] = {
        "decoder.1.weight": (256, latent_channels, 3, 3),
        "decoder.1.bias": (256,),
    }

    def memory_blocks(first: int, width: int) -> None:
        for index in range(first, first + 3):
            shapes[f"decoder.{index}.conv.0.weight"] = (width, 2 * width, 3, 3)
            for conv in (0, 2, 4):
                shapes[f"decoder.{index}.conv.{conv}.bias"] = (width,)
            for conv in (2, 4):
                shapes[f"decoder.{index}.conv.{conv}.weight"] = (width, width, 3, 3)

    memory_blocks(3, 256)
    shapes["decoder.7.conv.weight"] = (256, 256, 1, 1)  # temporal grow, stride 1
    shapes["decoder.8.weight"] = (128, 256, 3, 3)
    memory_blocks(9, 128)
    shapes["decoder.13.conv.weight"] = (256, 128, 1, 1)  # stride 2
    shapes["decoder.14.weight"] = (64, 128, 3, 3)
    memory_blocks(15, 64)
    shapes["decoder.19.conv.weight"] = (128, 64, 1, 1)  # stride 2
    shapes["decoder.20.weight"] = (64, 64, 3, 3)
    shapes["decoder.22.weight"] = (3 * patch * patch, 64, 3, 3)
    shapes["decoder.22.bias"] = (3 * patch * patch,)
    return shapes


@pytest.mark.parametrize(("channels", "patch"), [(16, 1), (48, 2)])
def test_default_decoder_has_the_released_files_tensor_names_and_shapes(channels, patch) -> None:
    with torch.device("meta"):
        decoder = TAEHVDecoder(latent_channels=channels, patch_size=patch)
    ours = {k: tuple(v.shape) for k, v in decoder.state_dict().items()}
    assert ours == _released_layout(channels, patch)


@pytest.mark.parametrize(("patch", "size"), [(1, 32), (2, 64)])
def test_decodes_wan_frame_counts_and_sizes_differentiably(patch, size) -> None:
    decoder = TAEHVDecoder(latent_channels=4, patch_size=patch, widths=TINY)
    latents = torch.randn(1, 3, 4, 4, 4, requires_grad=True)  # 3 latent frames
    video = decoder(latents)
    assert video.shape == (1, 9, 3, size, size)  # 4 * 3 - 3 frames
    assert video.min() >= 0 and video.max() <= 1
    video.mean().backward()
    assert latents.grad.abs().sum() > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_untrained_decoder_is_not_degenerate(seed: int) -> None:
    # An untrained surrogate (tiny presets, bench) must pass gradients: frames off the
    # clamp boundaries and a latent gradient far above the ~1e-6 of PyTorch's default init.
    torch.manual_seed(seed)
    decoder = TAEHVDecoder(latent_channels=4, widths=TINY)
    latents = torch.randn(1, 3, 4, 4, 4, requires_grad=True)
    video = decoder(latents)
    saturated = ((video <= 0) | (video >= 1)).float().mean()
    assert saturated < 0.2
    assert video.std() > 0.01
    video.mean().backward()
    assert latents.grad.abs().mean() > 1e-5


def test_frame_t_depends_only_on_the_past() -> None:
    decoder = TAEHVDecoder(latent_channels=4, widths=TINY)
    latents = torch.randn(1, 3, 4, 4, 4)
    changed = latents.clone()
    changed[:, 2] += 1.0
    with torch.no_grad():
        a, b = decoder(latents), decoder(changed)
    # latent frame 2 becomes output frames 5..8; frames 0..4 cannot see it
    assert torch.equal(a[:, :5], b[:, :5])
    assert not torch.equal(a[:, 5:], b[:, 5:])


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_weight_files_load_decoder_keys_and_skip_the_encoder(tmp_path, suffix) -> None:
    source = TAEHVDecoder(latent_channels=4, widths=TINY)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    state["encoder.0.weight"] = torch.zeros(8, 3, 3, 3)
    path = tmp_path / f"taew_tiny{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, str(path))

    target = TAEHVDecoder(latent_channels=4, widths=TINY)
    load_taehv_decoder_weights(target, path)
    latents = torch.randn(1, 2, 4, 4, 4)
    with torch.no_grad():
        assert torch.equal(target(latents), source(latents))


def test_stride_two_grow_weights_are_cut_to_the_last_frame_for_a_stride_one_stage(tmp_path) -> None:
    trained = TAEHVDecoder(latent_channels=4, widths=TINY, time_upscale=(True, True, True))
    path = tmp_path / "taehv.pth"
    torch.save(trained.state_dict(), path)
    cheap = TAEHVDecoder(latent_channels=4, widths=TINY, time_upscale=(False, True, True))
    load_taehv_decoder_weights(cheap, path)
    full = trained.state_dict()["decoder.7.conv.weight"]
    assert torch.equal(cheap.state_dict()["decoder.7.conv.weight"], full[16:])


def test_wrong_files_fail_with_what_to_change(tmp_path) -> None:
    decoder = TAEHVDecoder(latent_channels=16, widths=TINY)
    with pytest.raises(ConfigError, match="does not exist"):
        load_taehv_decoder_weights(decoder, tmp_path / "missing.pth")
    other = tmp_path / "taew2_2.pth"
    torch.save(TAEHVDecoder(latent_channels=48, patch_size=2, widths=TINY).state_dict(), other)
    with pytest.raises(ConfigError, match="taew2_1 for 16 channels"):
        load_taehv_decoder_weights(decoder, other)
    not_taehv = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, not_taehv)
    with pytest.raises(ConfigError, match="no 'decoder"):
        load_taehv_decoder_weights(decoder, not_taehv)
    wide = tmp_path / "wide.pth"
    torch.save(TAEHVDecoder(latent_channels=16).state_dict(), wide)
    with pytest.raises(ConfigError, match="taehv_widths"):
        load_taehv_decoder_weights(decoder, wide)
