"""Build the heavy parts of an agent setup from its config: reasoner, scorer, teacher.

Built once and shared by every task of a batch (the reasoner's LoRA is reset
between tasks by each run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.config import AgentConfig, ScorerConfig
from agent.offline_teacher import OfflineTeacher
from agent.openai_teacher import OpenAITeacher
from agent.teacher import Teacher
from agent.teacher_config import TeacherConfig
from prompts.loader import load_prompts

if TYPE_CHECKING:
    from reasoner.video_model import VideoReasoner
    from reasoner.vqa import VQAScorer


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
    return VQAScorer.from_pretrained(
        config.source, dtype=dtype, device=config.device, config=config.vqa
    )


def build_reasoner(config: AgentConfig) -> VideoReasoner:
    from reasoner.video_model import VideoReasoner

    return VideoReasoner.from_config(config.reasoner)
