"""The kit for a lent GPU machine (scripts/device/): the wheels it carries must meet
what this repository requires, or a GPU session fails on an import, after its start."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from evals.mini.train_vgm import VgmTrainConfig, default_config

ROOT = Path(__file__).resolve().parents[1]


def pinned_wheels() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "scripts/device/wheels.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def test_carried_wheels_meet_the_project_requirements() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pins = pinned_wheels()
    assert {"diffusers", "transformers", "peft", "pydantic", "pydantic-core"} <= set(pins)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    checked = 0
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in pins:
            assert requirement.specifier.contains(pins[name]), (
                f"scripts/device/wheels.txt pins {name}=={pins[name]}, but pyproject.toml "
                f"asks {spec}: update the pin (and fetch the wheels again)"
            )
            checked += 1
    assert checked >= 4


def test_the_device_scripts_name_files_that_exist() -> None:
    train = (ROOT / "scripts/device/train-vgm.sh").read_text()
    recipe = re.search(r'RECIPE="\$\{1:-([^}]+)\}"', train)
    assert recipe and (ROOT / recipe.group(1)).is_file()
    assert "source scripts/device/env.sh" in train
    bench = (ROOT / "scripts/device/bench-real.sh").read_text()
    configs = re.findall(r"configs/reasoner/[\w.-]+\.yaml", bench)
    assert configs and all((ROOT / c).is_file() for c in configs)
    assert "/.whl/" in (ROOT / ".gitignore").read_text().splitlines()


def test_the_gpu_recipe_is_the_shipped_one_with_larger_batches() -> None:
    """configs/train/vgm-gpu.yaml changes only how many videos a step takes and how many
    steps: the same learning rates, noise levels, architecture and sampler (not tuned)."""
    scaled = {"batch_size", "flow_steps", "distill_pairs", "distill_steps"}
    overrides = yaml.safe_load((ROOT / "configs/train/vgm-gpu.yaml").read_text())
    assert set(overrides) <= scaled
    shipped = default_config()
    gpu = VgmTrainConfig.model_validate({**shipped.model_dump(), **overrides})
    assert gpu.batch_size * gpu.flow_steps >= 5 * shipped.batch_size * shipped.flow_steps

    # Stage 2 goes over its pairs as often as the shipped recipe does.
    def passes(cfg: VgmTrainConfig) -> float:
        return cfg.distill_steps * cfg.batch_size / cfg.distill_pairs

    assert passes(gpu) == passes(shipped)
    assert gpu.model_dump(exclude=scaled) == shipped.model_dump(exclude=scaled)
