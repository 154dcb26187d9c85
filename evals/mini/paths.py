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

MINI_SCORER_DIR = PACKAGE_DIR / "weights" / "scorer"
"""The shipped mini scorer: a transformers Qwen3-VL folder (config, safetensors, tokenizer)."""

MINI_SCORER_SOURCE = "evals/mini/weights/scorer"
"""How `configs/agent/mini.yaml` names the scorer: relative to the repository root."""

SHIPPED_SOURCES: dict[str, Path] = {
    MINI_VGM_SOURCE: MINI_VGM_DIR,
    MINI_SCORER_SOURCE: MINI_SCORER_DIR,
}
"""Repo-relative model sources of the configs, and the folders they name."""


def shipped_folder(source: str | None) -> Path | None:
    """The folder a shipped mini model's source names (any working directory); else None."""
    return SHIPPED_SOURCES.get(source) if source is not None else None


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


def portable_name(source: str) -> str:
    """A model source as a report should record it: repo-relative when inside the checkout.

    Reports are committed, so they must not carry a path of the machine that wrote them.
    """
    path = Path(source)
    if not path.is_absolute():
        return source
    try:
        return path.resolve().relative_to(REPO_ROOT).as_posix()
    except ValueError:
        return path.name  # outside the checkout: the folder's name only
