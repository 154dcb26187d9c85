"""Train the mini VLM scorer, reproducibly, in one command.

    python -m evals.mini.train_scorer          # or: vlm-teacher train scorer

The mini scorer is a small ``Qwen3VLForConditionalGeneration`` (the real
transformers class, tiny config, a byte-level BPE tokenizer trained offline on
the questions' words) that answers a teacher's yes/no questions about a
mini-world video. Recipe (docs/mini-models.md):

1. Data (:mod:`evals.mini.scorer_data`): every step draws fresh train-split
   tasks, renders videos of them (solutions, rule-breaking variants, synthetic
   mixtures, and samples of the mini video model when one is shipped), labels
   every question with the task's independent checker and thins rows to equal
   Yes / No per (family, criterion). Held-out paraphrases are never used.
2. Inputs are built exactly as :class:`reasoner.vqa.VQAScorer` builds them: the
   same torch preprocessing (:func:`reasoner.vlm_preprocess.preprocess_video`),
   the same prompt format, the same frame timestamps; only several videos go
   through one batched forward pass. ``tests/test_mini_scorer.py`` checks that
   the two give the same log-probabilities.
3. Loss: cross-entropy of the checker's answer token ("Yes" or "No") over the
   whole vocabulary at the answer position, so P(Yes) itself (the quantity the
   test-time optimization minimises the NLL of) is trained, not only its ratio
   to P(No). Two training-only losses help the model read colours: a palette
   read-out of every vision token, and the colour-word alignment
   (:class:`ColorAlignHead`) between the vision tokens and the language
   model's embeddings of the colour words. A curriculum trains colour-presence
   probe questions alone for the first ``probe_only_steps``: without the
   alignment and the curriculum the answers stayed at chance (measured;
   docs/mini-models.md). A third training-only loss, the criteria read-out
   (:class:`CriteriaHead`), asks the vision tokens which of the checker's
   criteria the video meets; without it the task questions stayed at chance.
4. Evaluation through ``VQAScorer.from_pretrained`` on the saved folder, on
   held-out paraphrases of held-out-split tasks; results go to
   ``scorer_card.json`` beside the weights.

Every draw is seeded by (seed, step), so a run is a pure function of its config.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    track,
)
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from evals.mini.checkpoints import TimeLimit, save_atomic
from evals.mini.device import device_option, training_device, use_tf32_matmuls
from evals.mini.options import MaxMinutesOption, TrainingDeviceOption, minutes_to_seconds
from evals.mini.paths import MINI_SCORER_DIR
from evals.mini.questions import CRITERION_ROLES, GROUPS, SLOTS
from evals.mini.scorer_data import (
    PROBES,
    Example,
    Row,
    ScorerDataConfig,
    VideoSampler,
    balance,
    examples_for_tasks,
    palette_targets,
    split_tasks,
    to_frames,
    train_tasks,
    vgm_sampler,
    yes_rates,
)
from evals.tasks.palette import COLOR_NAMES, OBJECT_COLORS, PALETTE_RGB
from reasoner.vlm_builders import TinyQwenVLConfig, build_tiny_qwen_vl
from reasoner.vlm_preprocess import VisionPreprocessConfig, preprocess_video
from reasoner.vqa import PROMPT_FORMATS, VQAScorer, VQAScorerConfig, _frame_times

CARD_NAME = "scorer_card.json"
"""Written beside the weights: the recipe and the measured accuracy."""

CRITERIA = tuple(CRITERION_ROLES)
"""The checker criteria every family reports, in the criteria read-out's order."""

_VIDEO_TOKEN_TYPE = 2  # mm_token_type_ids value of video tokens (transformers v5)


def default_model_config() -> TinyQwenVLConfig:
    """The shipped scorer's sizes (about 1.5 M parameters, 6 MB in float32)."""
    return TinyQwenVLConfig(
        family="qwen3_vl",
        text_hidden_size=128,
        text_layers=4,
        text_heads=4,
        text_kv_heads=2,
        text_intermediate_size=384,
        vision_hidden_size=96,
        vision_depth=3,
        vision_heads=4,
        vision_intermediate_size=288,
        # 4 px patches, 2x2 merged: a 32 px frame pair is 16 language tokens of 8 px.
        patch_size=4,
        temporal_patch_size=2,
        spatial_merge_size=2,
        num_position_embeddings=64,
    )


class ScorerTrainConfig(BaseModel):
    """The whole recipe of the mini scorer; the defaults are the shipped model's."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed of the init, the data and every random draw.")
    model: TinyQwenVLConfig = Field(
        default_factory=default_model_config, description="Model sizes (a real Qwen-VL class)."
    )
    vocab_size: int = Field(640, ge=300, description="Size of the offline byte-level BPE.")
    data: ScorerDataConfig = Field(
        default_factory=ScorerDataConfig, description="What the examples are made of."
    )
    steps: int = Field(3000, ge=1, description="Optimizer steps.")
    tasks_per_step: int = Field(4, ge=1, description="Train tasks drawn per step.")
    videos_per_task: int = Field(2, ge=1, description="Videos rendered per drawn task.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps.")
    min_lr_ratio: float = Field(
        0.05, ge=0, le=1, description="Cosine decay ends at lr * min_lr_ratio."
    )
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    grad_clip: float = Field(1.0, gt=0, description="Clip the gradient to this global norm.")
    aux_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of the dense palette loss: a linear read-out (dropped after "
        "training) must recover each vision token's colour fractions per frame and patch.",
    )
    align_weight: float = Field(
        5.0,
        ge=0,
        description="Weight of the colour-word alignment loss (see ColorAlignHead): each "
        "vision token the language model reads must tell, by its cosine similarity to the "
        "language model's input embedding of each colour word, which object colours it "
        "shows. Without it the language model does not learn to bind a question's colour "
        "word to the video (answers stay at chance); 0 turns it off.",
    )
    criteria_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of the criteria read-out loss (see CriteriaHead): the averaged "
        "vision tokens of a window must tell which of the checker's criteria the video "
        "meets (all four for the whole video, the goal for a window that ends it). Without "
        "it the task questions stayed at chance; 0 turns it off.",
    )
    probe_only_steps: int = Field(
        400,
        ge=0,
        description="Curriculum: for the first steps only the colour-presence probe questions "
        "are trained (scorer_data.probe_rows), so the language model learns to read a colour "
        "word off the video before the task questions, whose answers also depend on it.",
    )
    vgm_drift_std: float = Field(
        0.02,
        ge=0,
        description="Std of the random LoRA B weights of the 'drift' video-model samples "
        "(stand-ins for mid-optimization videos); 0 leaves them out.",
    )
    calibration_tasks: int = Field(
        60,
        ge=1,
        description="Train tasks per family whose answers set the Yes/No balancing rates.",
    )
    eval_split: Literal["val", "test"] = Field(
        "test", description="Held-out split of the final accuracy."
    )
    eval_tasks_per_family: int = Field(50, ge=1, description="Held-out tasks per family.")
    eval_videos_per_task: int = Field(4, ge=1, description="Videos per held-out task.")
    num_threads: int = Field(2, ge=1, description="torch CPU threads.")
    log_every: int = Field(50, ge=1, description="Steps between loss lines in the log.")

    @model_validator(mode="after")
    def _curriculum_has_probes(self) -> ScorerTrainConfig:
        if self.probe_only_steps > 0 and self.data.probe_questions == 0:
            raise ValueError(
                "probe_only_steps > 0 trains probe questions only, but data.probe_questions "
                "is 0; set data.probe_questions > 0 or probe_only_steps: 0"
            )
        return self


# -------------------------------------------------------------------- vocabulary


def corpus(cfg: ScorerTrainConfig) -> list[str]:
    """Texts the tokenizer is trained on: every question paraphrase in every colour,
    the scorer's answer suffix and the frame timestamps it writes."""
    texts = []
    for family in cfg.data.families:
        first, second = SLOTS[family]
        for group in GROUPS[family]:
            for template in (*group.train, *group.held_out):
                for a in OBJECT_COLORS:
                    for b in OBJECT_COLORS:
                        if a != b:
                            texts.append(template.format(**{first: a, second: b}))
    texts += [template.format(color=c) for template, _ in PROBES.values() for c in OBJECT_COLORS]
    scorer = VQAScorerConfig()
    texts += [scorer.question_suffix.strip()] * 50
    # Timestamps fall on quarter frames of the scored video (temporal patch midpoints).
    seconds = [f"<{k / 4 / scorer.fps:.1f} seconds>" for k in range(4 * cfg.data.num_frames)]
    return texts + seconds * 20


# ---------------------------------------------------------------------- forward


@dataclass(frozen=True)
class Item:
    """One video window and the questions asked about it."""

    frames: torch.Tensor  # (f, 3, H, W) in [0, 1]
    first_index: int  # position of frames[0] in the scored video (sets timestamps)
    questions: tuple[str, ...]
    answers: tuple[bool, ...]
    weights: tuple[float, ...] | None = None  # per-question loss weights (default 1)
    roles: tuple[str, ...] | None = None  # per-question role, for logging
    family: str | None = None
    criteria: tuple[bool | None, ...] | None = None  # CRITERIA met (None: not in the window)


class BatchedAnswerer:
    """log P(Yes), log P(No) for many (video window, question) pairs in two forward passes.

    Builds every input exactly as ``VQAScorer.score`` does (same preprocessing,
    prompt, timestamps, special tokens). For speed it splits each prompt at the
    question: the shared part (chat header and video) runs once per window,
    then its key/value cache is copied to each of the window's questions, and
    only the question tokens run per question. ``tests/test_mini_scorer.py``
    checks that this gives the scorer's numbers.
    """

    _QUESTION = "\x00"  # stands in for the question when a prompt is split in two

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        scorer_config: VQAScorerConfig | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = scorer_config or VQAScorerConfig()
        self.family = model.config.model_type
        self.preprocess = VisionPreprocessConfig.for_model(
            model.config, min_pixels=self.config.min_pixels, max_pixels=self.config.max_pixels
        )
        self.yes_id = self._single_token(self.config.answer_yes)
        self.no_id = self._single_token(self.config.answer_no)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _single_token(self, word: str) -> int:
        ids = self.tokenizer(word, add_special_tokens=False).input_ids
        if len(ids) != 1:
            raise ValueError(f"answer {word!r} must be one token of the scorer's vocabulary")
        return int(ids[0])

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False).input_ids)

    def prompt_parts(self, item: Item, grid: torch.Tensor) -> tuple[str, str]:
        """The scorer's prompt for this window, split around the question."""
        tokens_per_group = int(grid[1] * grid[2]) // self.preprocess.merge_size**2
        times = _frame_times(
            item.frames.shape[0],
            item.first_index,
            self.preprocess.temporal_patch_size,
            self.config.fps,
        )
        text = PROMPT_FORMATS[self.family](
            self._QUESTION, grid, tokens_per_group, times, self.config.system_prompt
        )
        head, tail = text.split(self._QUESTION)
        return head, self.config.question_suffix + tail

    @staticmethod
    def _left_pad(seqs: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        length = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), length), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), length), dtype=torch.long)
        for r, seq in enumerate(seqs):
            ids[r, length - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[r, length - len(seq) :] = 1
        return ids, mask

    def logits(self, items: Sequence[Item]) -> torch.Tensor:
        """(rows, 2) log-probabilities of (Yes, No), rows in item then question order."""
        return self.forward(items)[0]

    def forward(self, items: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`logits`, and the vision tokens the language model read (tokens, hidden)."""
        vision = [preprocess_video(item.frames, self.preprocess) for item in items]
        grids = torch.cat([v.grid_thw for v in vision]).to(self.device)  # (items, 3)
        features = self.model.get_video_features(
            torch.cat([v.pixel_values for v in vision]).to(self.device), grids, return_dict=True
        )
        parts = [
            self.prompt_parts(item, v.grid_thw[0]) for item, v in zip(items, vision, strict=True)
        ]

        # 1. The shared part of each window's prompt: header and video, once per window.
        head_ids, head_mask = self._left_pad([self._ids(h) for h, _ in parts], self.pad_id)
        head_ids, head_mask = head_ids.to(self.device), head_mask.to(self.device)
        token_types = (head_ids == self.model.config.video_token_id).long() * _VIDEO_TOKEN_TYPE
        extra: dict[str, Any] = {}
        if self.family == "qwen2_5_vl":
            seconds = self.preprocess.temporal_patch_size / self.config.fps
            extra["second_per_grid_ts"] = torch.full((len(items),), seconds, device=self.device)
        positions, _ = self.model.model.get_rope_index(
            head_ids,
            mm_token_type_ids=token_types,
            video_grid_thw=grids,
            attention_mask=head_mask,
            **extra,
        )
        head = self.model(
            input_ids=head_ids,
            attention_mask=head_mask,
            mm_token_type_ids=token_types,
            video_grid_thw=grids,
            mm_encoder_outputs={"video": features},
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
        )

        # 2. Each question continues its window's cache.
        owner = torch.tensor(
            [i for i, item in enumerate(items) for _ in item.questions], device=self.device
        )
        tails = [
            self._ids(q + tail)
            for (_, tail), item in zip(parts, items, strict=True)
            for q in item.questions
        ]
        tail_ids, tail_mask = self._left_pad(tails, self.pad_id)
        tail_ids, tail_mask = tail_ids.to(self.device), tail_mask.to(self.device)
        cache = head.cache
        cache.reorder_cache(owner)  # index_select on the batch: differentiable
        next_position = positions.amax(dim=(0, 2))[owner] + 1  # (rows,)
        tail_positions = next_position[:, None] + (tail_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=tail_ids,
            attention_mask=torch.cat([head_mask[owner], tail_mask], dim=1),
            position_ids=tail_positions[None].expand(3, -1, -1),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logprobs = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        return logprobs[:, [self.yes_id, self.no_id]], torch.cat(features.pooler_output)


def items_from_examples(
    examples: Sequence[Example],
    data: ScorerDataConfig,
    generator: torch.Generator | None,
    rates: dict[tuple[str, str], float] | None = None,
) -> list[Item]:
    """Group each example's rows by frame window; jitter frames when a generator is given.

    With ``rates`` (Yes-rates per (family, criterion)), each row is weighted
    0.5 / P(its answer), so Yes and No weigh the same in the loss.
    """
    items = []
    for ex in examples:
        frames = to_frames(ex.video, data.nuisance if generator is not None else None, generator)
        by_window: dict[tuple[int, ...], list[Row]] = defaultdict(list)
        for row in ex.rows:
            by_window[row.window].append(row)
        for window, rows in by_window.items():
            items.append(
                Item(
                    frames=frames[list(window)],
                    first_index=window[0],
                    questions=tuple(r.text for r in rows),
                    answers=tuple(r.answer for r in rows),
                    weights=None
                    if rates is None
                    else tuple(
                        _balance_weight(rates.get((ex.family, r.criterion), 0.5), r.answer)
                        for r in rows
                    ),
                    roles=tuple(r.role for r in rows),
                    family=ex.family,
                    criteria=_criteria_seen(ex, window),
                )
            )
    return items


def _criteria_seen(ex: Example, window: tuple[int, ...]) -> tuple[bool | None, ...] | None:
    """The criteria a window shows: all of them for the whole video, only whether the
    goal is reached for a window that ends with the video, none otherwise."""
    frames = ex.video.shape[0]
    if not all(c in ex.criteria for c in CRITERIA) or window[-1] != frames - 1:
        return None
    whole = len(window) == frames
    return tuple(ex.criteria[c] >= 1.0 if whole or c == "reached_goal" else None for c in CRITERIA)


def _balance_weight(p_yes: float, answer: bool, cap: float = 5.0) -> float:
    share = p_yes if answer else 1.0 - p_yes
    return min(cap, 0.5 / max(share, 1e-6))


@dataclass(frozen=True)
class StepResult:
    """One batch's losses and accuracies."""

    loss: torch.Tensor  # answer + aux_weight * palette + align_weight * align (minimised)
    answer_loss: float
    palette_loss: float
    align_loss: float
    criteria_loss: float
    accuracy: dict[str, float]  # "all" and per role


def answer_loss(answerer: BatchedAnswerer, items: Sequence[Item]) -> tuple[torch.Tensor, float]:
    """Weighted cross-entropy of the true answers over the vocabulary, and the batch accuracy."""
    result = step_losses(answerer, items, palette_head=None, aux_weight=0.0)
    return result.loss, result.accuracy["all"]


def step_losses(
    answerer: BatchedAnswerer,
    items: Sequence[Item],
    palette_head: torch.nn.Module | None,
    aux_weight: float,
    align_head: ColorAlignHead | None = None,
    align_weight: float = 0.0,
    criteria_head: CriteriaHead | None = None,
    criteria_weight: float = 0.0,
) -> StepResult:
    """The answer loss (cross-entropy over the whole vocabulary, so P(Yes) itself is
    trained) plus the dense palette loss on the vision tokens, the colour-word
    alignment loss between the vision tokens and the colour words' embeddings, and
    the criteria read-out of the windows."""
    logp, tokens = answerer.forward(items)  # logp (rows, 2): log P(Yes), log P(No)
    yes = torch.tensor([a for item in items for a in item.answers], device=logp.device)
    weights = torch.tensor(
        [w for item in items for w in (item.weights or (1.0,) * len(item.answers))],
        device=logp.device,
    )
    nll = -torch.where(yes, logp[:, 0], logp[:, 1])
    loss = (weights * nll).sum() / weights.sum()
    correct = (logp[:, 0] > logp[:, 1]) == yes
    roles = [r for item in items for r in (item.roles or ("",) * len(item.answers))]
    accuracy = {"all": float(correct.float().mean())}
    for role in sorted(set(roles) - {""}):
        accuracy[role] = float(correct[[r == role for r in roles]].float().mean())
    palette = align = criteria = torch.zeros((), device=logp.device)
    if palette_head is not None or align_head is not None or criteria_head is not None:
        pre = answerer.preprocess
        per_item = [
            palette_targets(item.frames, pre.patch_size, pre.merge_size, pre.temporal_patch_size)
            for item in items
        ]
        target = torch.cat(per_item).to(logp.device)
        if palette_head is not None:
            logits = palette_head(tokens).view(target.shape)
            palette = -(target * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
            loss = loss + aux_weight * palette
        if align_head is not None:
            embeddings = answerer.model.get_input_embeddings().weight
            align = align_head.loss(tokens, embeddings, target)
            loss = loss + align_weight * align
        if criteria_head is not None:
            pooled = [part.mean(0) for part in tokens.split([len(t) for t in per_item])]
            criteria = criteria_head.loss(pooled, items)
            loss = loss + criteria_weight * criteria
    return StepResult(
        loss,
        float(nll.detach().mean()),
        float(palette.detach()),
        float(align.detach()),
        float(criteria.detach()),
        accuracy,
    )


ALIGN_MIN_SHARE = 0.05
"""A vision token shows a colour when one of its patches has at least this share of
pixels nearest to it (one pixel of a 4 px patch)."""


class ColorAlignHead(torch.nn.Module):
    """Training only: ties the colour words' input embeddings to the vision tokens.

    A question's answer depends on which colour it names, so the language model
    must match a colour word to the vision tokens of that colour. Learnt from
    the yes/no bit alone, that lookup stays at chance for hundreds of steps
    (measured; docs/mini-models.md). This loss gives it a shared space from the
    start: each vision token (what the language model reads) scores every
    object colour by its cosine similarity to that colour word's input
    embedding (times a learnt scale), trained with binary cross-entropy against
    the colours the token's pixels show. Its only parameter (the scale) is
    dropped after training; the saved model is the plain Qwen-VL.
    """

    def __init__(self, color_token_ids: Sequence[int], palette_index: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("color_ids", torch.tensor(list(color_token_ids)), persistent=False)
        self.register_buffer("palette_index", torch.tensor(list(palette_index)), persistent=False)
        self.log_scale = torch.nn.Parameter(torch.tensor(2.0))

    @classmethod
    def for_tokenizer(cls, tokenizer: PreTrainedTokenizerBase) -> ColorAlignHead:
        """The head for the object colours as the questions spell them (" red", ...)."""
        ids = []
        for color in OBJECT_COLORS:
            pieces = tokenizer(f" {color}", add_special_tokens=False).input_ids
            if len(pieces) != 1:
                raise ValueError(
                    f"colour word {color!r} must be one token of the scorer's vocabulary; "
                    "train the tokenizer on the questions (corpus())"
                )
            ids.append(int(pieces[0]))
        return cls(ids, [COLOR_NAMES.index(c) for c in OBJECT_COLORS])

    def logits(self, tokens: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """(tokens, colours) scaled cosine similarities."""
        words = torch.nn.functional.normalize(embeddings[self.color_ids], dim=-1)
        return self.log_scale.exp() * torch.nn.functional.normalize(tokens, dim=-1) @ words.T

    def loss(
        self, tokens: torch.Tensor, embeddings: torch.Tensor, palette: torch.Tensor
    ) -> torch.Tensor:
        """BCE of :meth:`logits` against the colours shown (``palette`` from palette_targets)."""
        shown = (palette[:, :, self.palette_index].amax(dim=1) >= ALIGN_MIN_SHARE).float()
        return torch.nn.functional.binary_cross_entropy_with_logits(
            self.logits(tokens, embeddings), shown
        )


class CriteriaHead(torch.nn.Module):
    """Training only: which checker criteria a whole video meets, read off its vision tokens.

    The task questions ("does the green square end on the red one?", "does it stay
    in one piece?") ask about relations between objects and frames. Learnt from
    the one answer bit per question alone, they stayed at chance (measured;
    docs/mini-models.md). This loss asks the averaged vision tokens of every
    whole-video window for the checker's criteria (one linear read-out per
    family), so the relations are in the tokens the language model reads; the
    answer loss then has to learn only which criterion a question names. The
    head is dropped after training; the saved model is the plain Qwen-VL.
    """

    def __init__(self, hidden_size: int, families: Sequence[str], seed: int) -> None:
        super().__init__()
        self.families = list(families)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + 1)
            self.linear = torch.nn.Linear(hidden_size, len(self.families) * len(CRITERIA))

    def loss(self, pooled: Sequence[torch.Tensor], items: Sequence[Item]) -> torch.Tensor:
        """Binary cross-entropy over the criteria the items show (0 when none do)."""
        logits, targets = [], []
        for vector, item in zip(pooled, items, strict=True):
            if item.criteria is None or item.family not in self.families:
                continue
            start = self.families.index(item.family) * len(CRITERIA)
            row = self.linear(vector)
            for k, met in enumerate(item.criteria):
                if met is not None:
                    logits.append(row[start + k])
                    targets.append(float(met))
        device = self.linear.weight.device
        if not logits:
            return torch.zeros((), device=device)
        return torch.nn.functional.binary_cross_entropy_with_logits(
            torch.stack(logits), torch.tensor(targets, device=device)
        )


def palette_head_for(model: PreTrainedModel, seed: int) -> torch.nn.Linear:
    """A linear read-out of palette fractions from the vision tokens (training only).

    Initialised under ``seed`` without touching the caller's global RNG state.
    """
    vision = model.config.vision_config
    classes = len(PALETTE_RGB) + 1
    outputs = vision.temporal_patch_size * vision.spatial_merge_size**2 * classes
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch.nn.Linear(vision.out_hidden_size, outputs)


# ---------------------------------------------------------------------- training


def lr_at(step: int, cfg: ScorerTrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``lr * min_lr_ratio``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(step - cfg.warmup_steps, span) / span))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * cosine)


def calibration_rates(
    cfg: ScorerTrainConfig, sampler: VideoSampler | None
) -> dict[tuple[str, str], float]:
    """Yes-rates per (family, criterion) on a fixed sample of train tasks (for balancing)."""
    tasks = [
        t
        for step in range(cfg.calibration_tasks)
        for t in train_tasks(cfg.data, [cfg.seed, 1], step, len(cfg.data.families))
    ]
    examples = examples_for_tasks(
        tasks, cfg.data, [cfg.seed, 1], cfg.videos_per_task, held_out=False, sampler=sampler
    )
    return yes_rates(examples)


def train_batch(
    cfg: ScorerTrainConfig,
    step: int,
    sampler: VideoSampler | None,
) -> list[Example]:
    """The examples of training step ``step`` (a pure function of the step).

    Before ``probe_only_steps`` only their probe rows are kept (the curriculum).
    """
    tasks = train_tasks(cfg.data, [cfg.seed, 0], step, cfg.tasks_per_step)
    examples = examples_for_tasks(
        tasks, cfg.data, [cfg.seed, 0, step], cfg.videos_per_task, held_out=False, sampler=sampler
    )
    if step >= cfg.probe_only_steps:
        return examples
    probes_only = [
        Example(ex.video, ex.task_id, ex.family, ex.source, ex.criteria, rows)
        for ex in examples
        if (rows := tuple(r for r in ex.rows if r.role == "probe"))
    ]
    if not probes_only:
        raise ValueError("no probe rows in this step's examples; raise data.probe_questions")
    return probes_only


def build_scorer_model(cfg: ScorerTrainConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The random-init model and the offline tokenizer of this recipe."""
    model, tokenizer = build_tiny_qwen_vl(
        cfg.model.family,
        corpus(cfg),
        config=cfg.model,
        vocab_size=cfg.vocab_size,
        seed=cfg.seed,
    )
    return model, tokenizer


def _window_record(result: StepResult) -> dict[str, Any]:
    """A log-window entry without its loss tensor (what a checkpoint keeps of it)."""
    return {k: v for k, v in vars(result).items() if k != "loss"}


def _window_entry(record: dict[str, Any]) -> StepResult:
    return StepResult(loss=torch.zeros(()), **record)


class ScorerTrainer:
    """One training run of the scorer: the model, its training-only read-outs, the
    optimizer and the log, with checkpoints in ``work_dir`` (see :func:`train`)."""

    def __init__(
        self,
        cfg: ScorerTrainConfig,
        *,
        sampler: VideoSampler | None = None,
        progress: bool = True,
        device: str = "cpu",
        work_dir: Path | None = None,
        checkpoint_every: int = 100,
        time_limit_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_limit_s is not None and work_dir is None:
            raise ValueError("a time limit needs a work_dir to keep the checkpoint in")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self.cfg = cfg
        self.sampler = sampler
        self.progress = progress
        self.device = training_device(device)
        use_tf32_matmuls(self.device)
        self.checkpoint = None if work_dir is None else Path(work_dir) / "checkpoint.pt"
        self.checkpoint_every = checkpoint_every
        self.limit = TimeLimit(time_limit_s, clock)
        self.limit.start()
        torch.set_num_threads(cfg.num_threads)
        self.started = time.time()
        self.seconds_before = 0.0
        """Training seconds of the runs this one resumes."""
        # The construction order below fixes the random draws; keep it.
        self.model, self.tokenizer = build_scorer_model(cfg)
        self.model.to(self.device).train()
        self.answerer = BatchedAnswerer(self.model, self.tokenizer)
        self.rates = calibration_rates(cfg, sampler) if cfg.data.balance else {}
        # The read-outs only shape the vision tokens during training; none is saved.
        self.palette_head = palette_head_for(self.model, cfg.seed).to(self.device)
        self.align = (
            ColorAlignHead.for_tokenizer(self.tokenizer).to(self.device)
            if cfg.align_weight > 0
            else None
        )
        self.criteria_head = (
            CriteriaHead(
                self.model.config.vision_config.out_hidden_size, cfg.data.families, cfg.seed
            ).to(self.device)
            if cfg.criteria_weight > 0
            else None
        )
        self.optimizer = self._optimizer()
        self.history: list[dict[str, Any]] = []
        """One summary per ``log_every`` steps."""
        self.window: list[StepResult] = []
        """The steps since the last summary."""
        # What must match for a checkpoint to be resumed: the recipe and the data it draws.
        # Not the thread count: a run started on a laptop may go on on a larger machine
        # (the float sums then differ, as they do on another device).
        self.identity = {
            "recipe": cfg.model_dump(mode="json", exclude={"num_threads"}),
            "video_model_samples": sampler is not None,
        }

    @property
    def modules(self) -> dict[str, torch.nn.Module | None]:
        return {
            "model": self.model,
            "palette_head": self.palette_head,
            "align": self.align,
            "criteria": self.criteria_head,
        }

    def _optimizer(self) -> torch.optim.Optimizer:
        cfg = self.cfg
        named = list(self.model.named_parameters())
        decay = [p for n, p in named if p.ndim >= 2 and "embed" not in n]
        no_decay = [p for n, p in named if p.ndim < 2 or "embed" in n]
        decay += list(self.palette_head.parameters())
        if self.criteria_head is not None:
            decay += list(self.criteria_head.parameters())
        if self.align is not None:
            no_decay += list(self.align.parameters())
        return torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(0.9, 0.95),
        )

    # -- checkpoints ---------------------------------------------------------------

    def _seconds(self) -> float:
        return self.seconds_before + time.time() - self.started

    def resume(self) -> int:
        """Load the checkpoint when there is one; the first step still to run."""
        if self.checkpoint is None or not self.checkpoint.is_file():
            return 0
        # On the CPU: the modules and the optimizer copy their parts to their own device,
        # and an optimizer's step count must stay on the CPU (on a GPU, AdamW would sync on it).
        state = torch.load(self.checkpoint, map_location="cpu", weights_only=False)
        if state["identity"] != self.identity:
            raise ValueError(
                f"{self.checkpoint} was written by a different recipe (or with/without the "
                f"video model's samples); delete {self.checkpoint.parent} or pass the same "
                "configuration to resume"
            )
        for name, module in self.modules.items():
            if module is not None:
                module.load_state_dict(state["modules"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.history = state["history"]
        self.window = [_window_entry(r) for r in state["window"]]
        self.seconds_before = state["seconds"]
        if self.progress:
            typer.echo(f"resuming at step {state['step']} from {self.checkpoint}")
        return int(state["step"])

    def _save_checkpoint(self, step: int) -> None:
        assert self.checkpoint is not None
        state = {
            "identity": self.identity,
            "step": step,
            "modules": {n: m.state_dict() for n, m in self.modules.items() if m is not None},
            "optimizer": self.optimizer.state_dict(),
            "history": self.history,
            "window": [_window_record(r) for r in self.window],
            "seconds": self._seconds(),
        }
        save_atomic(state, self.checkpoint)

    # -- training ------------------------------------------------------------------

    def step(self, step: int) -> StepResult:
        """Training step ``step``: its batch (a function of the step), losses and update."""
        cfg = self.cfg
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        examples = train_batch(cfg, step, self.sampler)
        items = items_from_examples(
            examples, cfg.data, generator, self.rates if cfg.data.balance else None
        )
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        result = step_losses(
            self.answerer,
            items,
            self.palette_head,
            cfg.aux_weight,
            self.align,
            cfg.align_weight,
            self.criteria_head,
            cfg.criteria_weight,
        )
        self.optimizer.zero_grad(set_to_none=True)
        result.loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        return result

    def run(self) -> bool:
        """Every step left; False when the time limit stopped it at a checkpoint first."""
        cfg = self.cfg
        first_step = self.resume()
        with _progress_bar(self.progress) as bar:
            task = bar.add_task(
                "training the mini scorer", total=cfg.steps, completed=first_step, loss=math.nan
            )
            for step in range(first_step, cfg.steps):
                result = self.step(step)
                self.window.append(result)
                if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                    self.history.append(_summary(step + 1, self.window))
                    bar.console.print(self.history[-1])
                    self.window = []
                bar.update(task, advance=1, loss=result.answer_loss)
                if self.checkpoint is None:
                    continue
                if (step + 1) % self.checkpoint_every == 0 or step + 1 == cfg.steps:
                    self._save_checkpoint(step + 1)
                    if step + 1 < cfg.steps and self.limit.reached():
                        where = f"step {step + 1}/{cfg.steps}"
                        bar.console.print(self.limit.stop_message(where, self.checkpoint.parent))
                        return False
        return True

    def export(self, out_dir: Path, evaluate_after: bool = True) -> dict[str, Any]:
        """Save the model and tokenizer to ``out_dir`` with the card; returns the card."""
        self.model.eval().to("cpu")  # the saved folder loads on any machine
        out_dir.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        card: dict[str, Any] = {
            "recipe": self.cfg.model_dump(mode="json"),
            "train_seconds": round(self._seconds(), 1),
            "device": self.device.type,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "history": self.history,
            "video_model_samples": self.sampler is not None,
            "balance_yes_rates": {
                f"{f}/{c}": round(r, 4) for (f, c), r in sorted(self.rates.items())
            },
        }
        if evaluate_after:
            scorer = VQAScorer.from_pretrained(str(out_dir), device=self.device)
            card["evaluation"] = evaluate(scorer, self.cfg, sampler=self.sampler)
        (out_dir / CARD_NAME).write_text(json.dumps(card, indent=2) + "\n")
        return card


def train(
    cfg: ScorerTrainConfig,
    out_dir: Path,
    *,
    sampler: VideoSampler | None = None,
    evaluate_after: bool = True,
    progress: bool = True,
    device: str = "cpu",
    work_dir: Path | None = None,
    checkpoint_every: int = 100,
    time_limit_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any] | None:
    """Train, save to ``out_dir`` (model + tokenizer + card) and return the card.

    ``device`` is where the scorer trains ('cuda' for a GPU); the data are drawn
    and rendered on the CPU either way, so a GPU run sees the same examples.

    With ``work_dir``, a checkpoint is written there every ``checkpoint_every``
    steps and a rerun resumes from it, ending with the same weights as one
    uninterrupted run (every draw is a function of the step; on a GPU, whose kernels
    may sum in a varying order, up to float noise). ``time_limit_s``
    (which needs ``work_dir``) stops the run at the first checkpoint past it:
    nothing is saved to ``out_dir`` and None is returned.
    """
    trainer = ScorerTrainer(
        cfg,
        sampler=sampler,
        progress=progress,
        device=device,
        work_dir=work_dir,
        checkpoint_every=checkpoint_every,
        time_limit_s=time_limit_s,
        clock=clock,
    )
    if not trainer.run():
        return None
    return trainer.export(out_dir, evaluate_after)


def _summary(step: int, window: Sequence[StepResult]) -> dict[str, Any]:
    """Mean losses and batch accuracies over the steps since the last log line."""
    roles = sorted({k for r in window for k in r.accuracy})
    return {
        "step": step,
        "answer_loss": round(float(np.mean([r.answer_loss for r in window])), 4),
        "palette_loss": round(float(np.mean([r.palette_loss for r in window])), 4),
        "align_loss": round(float(np.mean([r.align_loss for r in window])), 4),
        "criteria_loss": round(float(np.mean([r.criteria_loss for r in window])), 4),
        "batch_accuracy": {
            k: round(float(np.mean([r.accuracy[k] for r in window if k in r.accuracy])), 3)
            for k in roles
        },
    }


# -------------------------------------------------------------------- evaluation


Phrasings = Literal["held_out", "train"]


def eval_examples(
    cfg: ScorerTrainConfig,
    split: str,
    sampler: VideoSampler | None = None,
    tasks_per_family: int | None = None,
    phrasings: Phrasings = "held_out",
) -> list[Example]:
    """Balanced examples of `split`'s tasks (held out from training), asked in the
    held-out paraphrases (the card's accuracy) or in the trained ones (those the
    offline teacher asks; these rows also hold the colour probes)."""
    tasks = split_tasks(cfg.data, split, tasks_per_family or cfg.eval_tasks_per_family)
    examples = examples_for_tasks(
        tasks,
        cfg.data,
        [cfg.seed, 3],
        cfg.eval_videos_per_task,
        held_out=phrasings == "held_out",
        sampler=sampler,
    )
    if not cfg.data.balance:
        return examples
    return balance(examples, yes_rates(examples), np.random.default_rng([cfg.seed, 4]))


def evaluate(
    scorer: VQAScorer,
    cfg: ScorerTrainConfig,
    *,
    sampler: VideoSampler | None = None,
    split: str | None = None,
    tasks_per_family: int | None = None,
    tau_p_yes: float = 0.8,
    phrasings: Phrasings = "held_out",
    progress: bool = False,
) -> dict[str, Any]:
    """Accuracy of ``scorer`` (through its real inference path) on held-out examples.

    A row is answered "Yes" when P(Yes) > P(No). Also reported: how often a
    "Yes" row reaches P(Yes) >= ``tau_p_yes`` (the test-time optimization's
    stopping level) and how often a "No" row wrongly does.
    """
    split = split or cfg.eval_split
    examples = eval_examples(cfg, split, sampler, tasks_per_family, phrasings)
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    accepted = {"yes_rows_accepted": [0, 0], "no_rows_accepted": [0, 0]}
    with torch.no_grad():
        for ex in track(examples, description="scoring", disable=not progress):
            frames = to_frames(ex.video)
            by_window: dict[tuple[int, ...], list] = defaultdict(list)
            for row in ex.rows:
                by_window[row.window].append(row)
            for window, rows in by_window.items():
                scores = scorer.score(
                    frames[list(window)], [r.text for r in rows], first_frame_index=window[0]
                )
                for row, s in zip(rows, scores, strict=True):
                    assert s.p_no is not None  # one-token answers: P(No) comes for free
                    correct = int((s.p_yes > s.p_no) == row.answer)
                    source = ex.source.split(":")[0]
                    task_row = row.role != "probe"
                    for key in (
                        "all",
                        *(["task_questions", f"task_questions/{ex.family}"] if task_row else []),
                        f"family/{ex.family}",
                        f"role/{row.role}",
                        f"source/{source}",
                        f"family_source/{ex.family}/{source}",
                        f"kind/{ex.source}",
                    ):
                        tally[key][0] += correct
                        tally[key][1] += 1
                    name = "yes_rows_accepted" if row.answer else "no_rows_accepted"
                    accepted[name][0] += int(s.p_yes >= tau_p_yes)
                    accepted[name][1] += 1
    if not tally:
        raise ValueError(
            f"no held-out rows to score on {split!r}; raise eval_tasks_per_family or "
            "eval_videos_per_task"
        )
    result: dict[str, Any] = {
        "split": split,
        "phrasings": phrasings,
        "rows": tally["all"][1],
        "accuracy": {k: round(c / n, 4) for k, (c, n) in sorted(tally.items())},
        "rows_per_group": {k: n for k, (_, n) in sorted(tally.items())},
    }
    result |= {k: round(c / max(n, 1), 4) for k, (c, n) in accepted.items()}
    return result


# --------------------------------------------------------------------------- CLI


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def load_config(path: Path | None, overrides: dict[str, Any]) -> ScorerTrainConfig:
    """Defaults, then a YAML file, then CLI flags."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{path} must hold a mapping of config fields")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return ScorerTrainConfig.model_validate(data)


def shipped_vgm_sampler(drift_std: float) -> VideoSampler | None:
    """A sampler of the shipped mini video model, or None when it is not shipped (yet)."""
    from evals.mini.paths import MINI_VGM_DIR, mini_reasoner_config
    from reasoner.video_model import VideoReasoner

    if not (MINI_VGM_DIR / "transformer").is_dir():
        return None
    return vgm_sampler(VideoReasoner.from_config(mini_reasoner_config()), drift_std)


def main(
    out: Annotated[
        Path, typer.Option(help="Folder to write the trained scorer to.")
    ] = MINI_SCORER_DIR,
    config: Annotated[Path | None, typer.Option(help="YAML file overriding recipe fields.")] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of everything.")] = None,
    eval_tasks_per_family: Annotated[
        int | None, typer.Option(help="Held-out tasks per family for the accuracy.")
    ] = None,
    vgm: Annotated[
        bool,
        typer.Option(
            help="Add samples of the shipped mini video model to the data (when it is shipped)."
        ),
    ] = True,
    device: TrainingDeviceOption = "cpu",
    work_dir: Annotated[
        Path, typer.Option(help="Checkpoints (every 100 steps); a rerun resumes here.")
    ] = Path("runs/train_scorer"),
    max_minutes: MaxMinutesOption = None,
) -> None:
    """Train the mini VLM scorer and write it (with its accuracy card) to OUT."""
    device_option(device)
    cfg = load_config(
        config,
        {"steps": steps, "seed": seed, "eval_tasks_per_family": eval_tasks_per_family},
    )
    sampler = shipped_vgm_sampler(cfg.vgm_drift_std) if vgm else None
    if vgm and sampler is None:
        typer.echo("no shipped mini video model found: training without its samples")
    card = train(
        cfg,
        out,
        sampler=sampler,
        device=device,
        work_dir=work_dir,
        time_limit_s=minutes_to_seconds(max_minutes),
    )
    if card is None:
        typer.echo(f"stopped at the time limit; nothing written to {out} yet")
        return
    evaluation = card.get("evaluation", {})
    typer.echo(
        f"saved to {out} after {card['train_seconds']} s; held-out accuracy "
        f"{evaluation.get('accuracy', {}).get('all')} on {evaluation.get('rows')} rows"
    )


if __name__ == "__main__":
    typer.run(main)
