"""One YAML file per agent setup: teacher, reasoner, scorer, optimizer, budgets.

    teacher:   who answers (`kind: offline` or an OpenAI-compatible endpoint)
    extends:   optional: another agent YAML (relative to this file) whose sections
               this file's are merged over
    reasoner:  the video model (a `reasoner.config.ReasonerConfig` mapping, or the
               path of a reasoner YAML relative to this file)
    scorer:    the VQA model that turns queries into losses (or none: checks only)
    tto:       the test-time optimizer (learning rate, tau, K frames, ...)
    budgets:   teacher turns, LoRA steps, wall clock, tolerated mistakes
    tools:     limits of the tools (burst length, frames per inspection, ...)

Swapping the teacher is `teacher.model` / `teacher.base_url`; the API key is
read from the environment variable `teacher.api_key_env` names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from agent.teacher_config import TeacherConfig
from reasoner.config import ReasonerConfig, format_validation_error, load_reasoner_config
from reasoner.errors import ConfigError
from reasoner.tto import TTOConfig
from reasoner.vqa import VQAScorerConfig

TINY_SCORERS = ("tiny:qwen3_vl", "tiny:qwen2_5_vl")


class ScorerConfig(BaseModel):
    """The frozen VLM that scores yes/no queries (the paper uses the teacher's weights)."""

    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(
        default="tiny:qwen3_vl",
        description=(
            "A Qwen2.5-VL / Qwen3-VL checkpoint (hub id or local folder), "
            "'tiny:qwen3_vl' / 'tiny:qwen2_5_vl' for a random-init model of the real class "
            "(placeholder until trained weights exist), or null for checks only."
        ),
    )
    dtype: Literal["float32", "bfloat16"] = Field(
        default="float32", description="Scorer dtype (bfloat16 on GPU)."
    )
    device: str = Field(default="cpu", description="torch device of the scorer.")
    include: Literal["all", "queries", "checks"] = Field(
        default="all",
        description="Which spec terms are optimized: all, VQA queries only, or checks only.",
    )
    query_pass_p: float = Field(
        default=0.5, gt=0, lt=1, description="A query passes when P(Yes) reaches this."
    )
    normalize_yes_no: bool = Field(
        default=False, description="Loss on P(Yes)/(P(Yes)+P(No)) instead of P(Yes)."
    )
    vqa: VQAScorerConfig = Field(
        default_factory=VQAScorerConfig, description="How questions are asked."
    )

    @model_validator(mode="after")
    def _checks_only_without_model(self) -> ScorerConfig:
        if self.source is None and self.include != "checks":
            raise ConfigError(
                "scorer.source is null (no VQA model) but scorer.include is "
                f"{self.include!r}: set include: checks, or give a scorer source"
            )
        return self


class BudgetConfig(BaseModel):
    """Limits of one run; each one, when hit, ends the run with its own exit name."""

    model_config = ConfigDict(extra="forbid")

    max_turns: int = Field(default=30, ge=1, description="Teacher turns (exit budget_turns).")
    max_lora_steps: int = Field(
        default=40, ge=1, description="LoRA gradient steps in all bursts (exit budget_steps)."
    )
    wall_clock_s: float = Field(
        default=900.0, gt=0, description="Seconds for the loop (exit budget_wall_clock)."
    )
    max_tool_errors: int = Field(
        default=4, ge=1, description="Invalid tool calls in a row before exit tool_errors."
    )
    max_nudges: int = Field(
        default=2, ge=0, description="Replies without a tool call in a row before no_tool_calls."
    )


class SpecOverrides(BaseModel):
    """Spec fields fixed by the setup, replacing what the teacher writes (for ablations)."""

    model_config = ConfigDict(extra="forbid")

    lam: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description=(
            "Weight of the goal terms in every spec the teacher writes or revises (1: goal "
            "only, 0: process only). A spec that then has nothing to optimize (lam 0 and no "
            "process term, lam 1 and no goal term) is rejected with the reason. None: the "
            "teacher's own lam."
        ),
    )


class ToolsConfig(BaseModel):
    """Limits of the tools that are not the teacher's to choose."""

    model_config = ConfigDict(extra="forbid")

    max_burst: int = Field(default=10, ge=1, description="Most LoRA steps per optimize call.")
    preview_frames: int = Field(
        default=3, ge=1, le=16, description="Preview frames shown as images after a burst."
    )
    max_inspect_frames: int = Field(
        default=8, ge=1, le=32, description="Most frames per inspect_frames call."
    )
    min_image_side: int = Field(
        default=224,
        ge=0,
        description="Frames are enlarged (nearest) to at least this many pixels for the VLM.",
    )
    spec_overrides: SpecOverrides = Field(
        default_factory=SpecOverrides,
        description="Spec fields the write/revise tools set whatever the teacher sends.",
    )


class AgentConfig(BaseModel):
    """A complete agent setup; see the module docstring."""

    model_config = ConfigDict(extra="forbid")

    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="The teacher.")
    reasoner: ReasonerConfig = Field(description="The video model, decoders and LoRA.")
    scorer: ScorerConfig = Field(default_factory=ScorerConfig, description="The VQA scorer.")
    tto: TTOConfig = Field(
        default_factory=TTOConfig,
        description="Test-time optimizer; its max_steps follows budgets.max_lora_steps.",
    )
    budgets: BudgetConfig = Field(default_factory=BudgetConfig, description="Run limits.")
    tools: ToolsConfig = Field(default_factory=ToolsConfig, description="Tool limits.")
    out_dir: str = Field(default="runs", description="Folder that receives one folder per run.")
    keep_session_states: bool = Field(
        default=True,
        description="Keep the last LoRA and optimizer states (session/*.pt, ~8 MB with the "
        "mini model, more with a real one) once a run has finished. false: delete them then, "
        "for large batches; the video, trace and summary stay, the LoRA is gone.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AgentConfig:
        steps = self.budgets.max_lora_steps
        if "max_steps" in self.tto.model_fields_set and self.tto.max_steps != steps:
            raise ConfigError(
                f"tto.max_steps ({self.tto.max_steps}) differs from budgets.max_lora_steps "
                f"({steps}): drop tto.max_steps, the agent's step budget sets it"
            )
        # The optimizer's own cap is the run's step budget (its closing evaluation
        # then scores the last iterate).
        self.tto = self.tto.model_copy(update={"max_steps": steps})
        frames = self.reasoner.video_model.num_frames
        if self.tto.num_frames > frames:
            raise ConfigError(
                f"tto.num_frames (K={self.tto.num_frames}) exceeds the video's "
                f"{frames} frames: set tto.num_frames <= {frames}"
            )
        if self.tto.time_budget_s is not None:
            raise ConfigError(
                "tto.time_budget_s is not used by the agent: set budgets.wall_clock_s instead"
            )
        if self.teacher.offline.until_budget and self.tto.tau is not None:
            raise ConfigError(
                "teacher.offline.until_budget runs every step of the budget, but tto.tau "
                f"({self.tto.tau}) would stop the optimizer early: set tto.tau: null"
            )
        return self


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` laid over it: mappings merge key by key, anything else replaces.

    An explicit None in `override` replaces too (`tto: {tau: null}` turns early
    stopping off).
    """
    merged = dict(base)
    for key, value in override.items():
        old = merged.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def agent_config_from_dict(
    data: dict[str, Any], base_dir: Path | None = None, where: str = "config"
) -> AgentConfig:
    """Validate a mapping; a string `reasoner` is a reasoner YAML relative to `base_dir`."""
    data = dict(data)
    reasoner = data.get("reasoner")
    if isinstance(reasoner, str):
        path = Path(reasoner)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        data["reasoner"] = load_reasoner_config(path)
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(format_validation_error(error, where)) from None


def read_yaml_with_extends(
    path: Path,
    what: str,
    relative_keys: tuple[str, ...],
    chain: tuple[Path, ...] = (),
) -> dict[str, Any]:
    """The mapping of one config YAML, laid over the file its `extends:` names.

    `extends` is a path relative to the file that holds it; that file's own
    sections come first and this one's are deep-merged over them. A string under
    one of `relative_keys` is a path, resolved against the directory of the
    file that names it, so a file may extend one in another folder. `what`
    names the kind of file in errors ("agent config", "eval config").
    """
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ConfigError(f"{what}s extend each other in a loop: {cycle}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping of sections")
    for key in relative_keys:
        if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
            data[key] = str((path.parent / data[key]).absolute())
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: extends must be the path of another {what} YAML")
    inherited = read_yaml_with_extends(
        path.parent / parent, what, relative_keys, (*chain, path.resolve())
    )
    return deep_merge(inherited, data)


def read_agent_yaml(path: Path) -> dict[str, Any]:
    """One agent YAML with the ones it `extends` (see `read_yaml_with_extends`)."""
    if not path.is_file():
        raise ConfigError(f"agent config {path} does not exist; see configs/agent/ for examples")
    return read_yaml_with_extends(path, "agent config", ("reasoner",))


def load_agent_config(
    path: str | Path,
    overrides: dict[str, Any] | None = None,
    patch: Mapping[str, Any] | None = None,
    where: str | None = None,
) -> AgentConfig:
    """Read an agent YAML (and the ones it `extends`), deep-merge `patch` over it
    (`deep_merge`), then apply `overrides`.

    `overrides` are dotted keys (e.g. 'teacher.model', None values skipped);
    `where` names the source in error messages (default: the path).
    """
    path = Path(path)
    data = read_agent_yaml(path)
    if patch:
        data = deep_merge(data, patch)
    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        node = data
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot set {dotted}: {key} is not a section in {path}")
        node[leaf] = value
    return agent_config_from_dict(data, base_dir=path.parent, where=where or str(path))
