"""Bad configuration fails before any heavy work, with an error that says what to change."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from diffusers import WanTransformer3DModel
from tiny_wan import tiny_config

import reasoner.video_model as video_model_module
from reasoner.architectures import PRESETS
from reasoner.config import ReasonerConfig, load_reasoner_config, reasoner_config_from_dict
from reasoner.errors import ConfigError
from reasoner.loading import resolve
from reasoner.video_model import VideoReasoner

CONFIGS = sorted((Path(__file__).parents[1] / "configs" / "reasoner").glob("*.yaml"))


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Make any model build fail loudly: errors must come from the cheap checks."""

    def explode(*args, **kwargs):
        raise AssertionError("heavy work started before the configuration was rejected")

    monkeypatch.setattr(video_model_module, "build_models", explode)
    monkeypatch.setattr(video_model_module, "build_taehv", explode)


def _data(**video_model) -> dict:
    return {"video_model": {"kind": "wan_t2v", "source": "tiny", **video_model}}


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_unknown_model_kind_names_the_field_and_the_choices(tmp_path) -> None:
    path = _write(tmp_path, _data(kind="wan_i2v"))
    with pytest.raises(ConfigError, match=r"video_model\.kind: .*'wan_t2v' or 'wan_ti2v'"):
        load_reasoner_config(path)


def test_num_frames_must_be_4k_plus_1() -> None:
    with pytest.raises(ConfigError, match=r"num_frames: must be 4k\+1.*use 9 or 13"):
        reasoner_config_from_dict(_data(num_frames=10))


def test_sizes_must_be_multiples_of_16() -> None:
    with pytest.raises(
        ConfigError, match=r"video_model\.height: must be a multiple of 16.*32 or 48"
    ):
        reasoner_config_from_dict(_data(height=40))


def test_unknown_fields_are_rejected_with_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"video_model\.num_frame: unknown field"):
        reasoner_config_from_dict(_data(num_frame=9))


def test_sampler_sigmas_must_start_at_one_and_match_the_step_count() -> None:
    with pytest.raises(ConfigError, match=r"must start at 1\.0"):
        reasoner_config_from_dict(_data(sampler_sigmas=[0.9, 0.5]))
    with pytest.raises(ConfigError, match="num_inference_steps is 4; make them agree"):
        reasoner_config_from_dict(_data(sampler_sigmas=[1.0, 0.5]))
    with pytest.raises(ConfigError, match="strictly descending"):
        reasoner_config_from_dict(_data(num_inference_steps=3, sampler_sigmas=[1.0, 0.5, 0.7]))


def test_missing_config_file() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_reasoner_config("no/such/file.yaml")


@pytest.mark.usefixtures("no_heavy_work")
@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            tiny_config(lora={"target_modules": ["attn1.to_q", "attn3.to_q"]}),
            r"'attn3.to_q' matches no linear layer.*attn1.to_k",
        ),
        (
            tiny_config(decoder={"surrogate_path": "missing/taew2_1.pth"}),
            r"surrogate_path missing/taew2_1.pth does not exist",
        ),
        (tiny_config(source="tiny-pixel"), "pixel-space model.*surrogate: identity"),
        (tiny_config(surrogate="identity"), "'identity' is for pixel-space models"),
        (tiny_config(source="tiny3"), r"'tiny3' is neither a preset \(tiny, tiny-pixel"),
        (tiny_config(source="./nowhere/model"), "not a diffusers Wan folder"),
        (
            tiny_config(source="wan2.2-ti2v-5b-1layer", kind="wan_ti2v", height=48),
            r"height must be a multiple of 32 .*VAE x16, patch 2\); use 32 or 64",
        ),
        (
            tiny_config(decoder={"taehv_time_upscale": [False, False, True]}),
            "x2 in time but the VAE packs 4 frames",
        ),
        (tiny_config(height=1024), "exceeds the transformer's rope_max_seq_len"),
        (
            tiny_config(distill_lora="missing/distill.safetensors"),
            "distill_lora missing/distill.safetensors does not exist",
        ),
    ],
)
def test_architecture_checks_fail_before_loading(config: ReasonerConfig, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VideoReasoner.from_config(config)


@pytest.mark.usefixtures("no_heavy_work")
def test_pretrained_model_needs_a_surrogate_file(tmp_path) -> None:
    with torch.device("meta"):
        transformer = WanTransformer3DModel.from_config(PRESETS["tiny-pixel"].transformer)
    transformer.save_config(tmp_path / "transformer")
    with pytest.raises(ConfigError, match="pixel-space model"):
        VideoReasoner.from_config(tiny_config(source=str(tmp_path), surrogate="taehv"))
    # a latent model folder without decoder file
    with torch.device("meta"):
        latent = WanTransformer3DModel.from_config(PRESETS["tiny"].transformer)
    latent.save_config(tmp_path / "latent" / "transformer")
    from diffusers import AutoencoderKLWan

    with torch.device("meta"):
        AutoencoderKLWan.from_config(PRESETS["tiny"].vae).save_config(tmp_path / "latent" / "vae")
    with pytest.raises(ConfigError, match=r"needs trained surrogate weights.*taew2_1"):
        VideoReasoner.from_config(tiny_config(source=str(tmp_path / "latent")))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without GPU")
@pytest.mark.usefixtures("no_heavy_work")
def test_cuda_device_without_gpu() -> None:
    with pytest.raises(ConfigError, match=r"no CUDA GPU is visible; set video_model\.device: cpu"):
        VideoReasoner.from_config(tiny_config(device="cuda"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_shipped_configs_load_and_resolve_against_their_architecture(path: Path) -> None:
    cfg = load_reasoner_config(path)
    if cfg.video_model.source not in PRESETS:
        return  # trained weights (e.g. the mini world's): their owners' tests resolve them
    cfg.video_model.device = "cpu"  # the real-size configs name cuda; resolving needs no GPU
    resolved = resolve(cfg)
    channels = resolved.geometry.channels
    expected = {"wan2.1-1.3b": 16, "wan2.2-ti2v-5b": 48, "tiny": 4, "tiny-ti2v": 8}
    prefix = cfg.video_model.source.removesuffix("-1layer")
    if prefix in expected:
        assert channels == expected[prefix]


def test_real_size_configs_exist_for_both_models() -> None:
    names = {p.stem for p in CONFIGS}
    assert {"tiny", "wan2.1-1.3b", "wan2.2-ti2v-5b"} <= names
    assert {"wan2.1-1.3b-1layer", "wan2.2-ti2v-5b-1layer"} <= names
    five_b = load_reasoner_config(CONFIGS[[p.stem for p in CONFIGS].index("wan2.2-ti2v-5b")])
    assert five_b.video_model.dtype == "bfloat16" and five_b.video_model.gradient_checkpointing
