"""Where the mini VGM's shipped files live, resolved from this package (not the working dir)."""

from __future__ import annotations

from pathlib import Path

from reasoner.config import ReasonerConfig, load_reasoner_config

PACKAGE_DIR = Path(__file__).resolve().parent
MINI_VGM_DIR = PACKAGE_DIR / "weights" / "vgm"
"""The shipped mini VGM: a diffusers folder (transformer/, text_encoder/, tokenizer/)."""

REPO_ROOT = PACKAGE_DIR.parents[1]
REPO_CONFIG = REPO_ROOT / "configs" / "reasoner" / "mini.yaml"
"""The reasoner config that serves the mini VGM."""

MINI_VGM_SOURCE = "evals/mini/weights/vgm"
"""How `configs/reasoner/mini.yaml` names the model: relative to the repository root."""


def resolve_mini_source(cfg: ReasonerConfig) -> ReasonerConfig:
    """`cfg` with a source of `MINI_VGM_SOURCE` made absolute, whatever the working directory."""
    if cfg.video_model.source != MINI_VGM_SOURCE:
        return cfg
    data = cfg.model_dump()
    data["video_model"]["source"] = str(MINI_VGM_DIR)
    return ReasonerConfig.model_validate(data)


def mini_reasoner_config(path: Path = REPO_CONFIG) -> ReasonerConfig:
    """`configs/reasoner/mini.yaml`, its model path resolved against this package."""
    return resolve_mini_source(load_reasoner_config(path))
