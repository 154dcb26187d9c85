"""Build the heavy parts of an agent setup from its config: reasoner, scorer, teacher.

Built once and shared by every task of a batch (the reasoner's LoRA is reset
between tasks by each run). The mini world's shipped models are named in the
configs relative to the repository root (`evals/mini/weights/...`); they are
found from any working directory (`evals.mini.paths`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.config import AgentConfig, ScorerConfig
from agent.offline_teacher import OfflineTeacher
from agent.openai_teacher import OpenAITeacher
from agent.teacher import Teacher
from agent.teacher_config import TeacherConfig
from evals.mini.paths import shipped_folder
from prompts.loader import load_prompts
from reasoner.errors import ConfigError

if TYPE_CHECKING:
    from reasoner.video_model import VideoReasoner
    from reasoner.vqa import VQAScorer

TRAIN_COMMANDS = {
    "reasoner": "vlm-teacher train vgm",
    "scorer": "python -m evals.mini.train_scorer",
}
"""How to make each shipped mini model when a checkout lacks it."""


def build_teacher(config: TeacherConfig) -> Teacher:
    """The teacher `config.kind` names."""
    if config.kind == "openai":
        return OpenAITeacher(config)
    return OfflineTeacher(config.offline)


def build_scorer(config: ScorerConfig) -> VQAScorer | None:
    """The VQA scorer: a checkpoint, a random-init tiny model of the real class, or none."""
    import torch

    from reasoner.vqa import VQAScorer

    if config.source is None:
        return None
    if config.source.startswith("tiny:"):
        from reasoner.vlm_builders import build_tiny_qwen_vl

        family = config.source.removeprefix("tiny:")
        # The offline tokenizer's vocabulary comes from the kind of text it will read.
        examples = load_prompts("teacher")["examples"]
        texts = [t for ex in examples for t in (ex["instruction"], ex["goal"], *ex["process"])]
        model, tokenizer = build_tiny_qwen_vl(family, texts, seed=0)  # type: ignore[arg-type]
        return VQAScorer(model.to(config.device), tokenizer, config.vqa)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[config.dtype]
    source = _shipped(config.source, TRAIN_COMMANDS["scorer"])
    return VQAScorer.from_pretrained(source, dtype=dtype, device=config.device, config=config.vqa)


def build_reasoner(config: AgentConfig) -> VideoReasoner:
    from reasoner.video_model import VideoReasoner

    reasoner = config.reasoner
    source = _shipped(reasoner.video_model.source, TRAIN_COMMANDS["reasoner"])
    if source != reasoner.video_model.source:
        video_model = reasoner.video_model.model_copy(update={"source": source})
        reasoner = reasoner.model_copy(update={"video_model": video_model})
    return VideoReasoner.from_config(reasoner)


def check_shipped_models(config: AgentConfig) -> None:
    """Raise `ConfigError` (saying what to run) if a shipped model the config names is missing.

    Cheap: looks for folders only, so a command can refuse before building anything.
    """
    _shipped(config.reasoner.video_model.source, TRAIN_COMMANDS["reasoner"])
    if config.scorer.source is not None:
        _shipped(config.scorer.source, TRAIN_COMMANDS["scorer"])


def _shipped(source: str, train_command: str) -> str:
    """A shipped mini model's folder (absolute) for its repo-relative source; others as given.

    A missing shipped folder is a clear error here, not a failed hub lookup later.
    """
    folder = shipped_folder(source)
    if folder is None:
        return source
    if not folder.is_dir():
        raise ConfigError(
            f"the model {source} is not in this checkout (its folder is missing): train it "
            f"with `{train_command}`, or run configs/agent/embedded.yaml (random-init models)"
        )
    return str(folder)
