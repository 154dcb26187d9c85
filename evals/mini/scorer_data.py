"""Training and evaluation data of the mini VLM scorer: (frames, question) -> Yes/No.

Every example is a video of a mini-world task, a question a teacher would
write for it (:mod:`evals.mini.questions`) and the answer the task's
independent checker gives: "Yes" exactly when the question's criterion is
fully met on that video. Labels therefore never come from how a video was
made, only from what the checker sees in its pixels.

Video sources (``VideoSource``), per task:

- ``solution``: the generator's solution (every answer "Yes").
- ``perturb:<kind>``: the family's rule-breaking variants (``frozen``,
  ``vanish``, ``split``, ``rule_break``, ``wrong_target``, ``stop_short``, ...).
- ``synthetic:<kind>``: made here from those videos, to look like what a
  video model produces mid-optimization: ``blend`` (two variants
  superimposed, ghosting), ``blur``, ``splice`` (one variant, then another),
  ``scene_edit`` (scenery changes or a stray blob appears), ``partial`` (part
  of the picture wiped for some frames).
- ``vgm``: samples of a video model (its few-step sample or its one-step
  prediction), given as videos by the caller (see ``VideoSampler``).

Questions: one per checker criterion, a random paraphrase each; goal questions
are asked either over all frames or over the suggested end window. A share of
goal questions names a colour that appears nowhere in the video (answer "No"),
so the scorer must read the colour words. Rows are thinned so that every
(family, criterion) sees "Yes" and "No" equally often.

Small nuisance changes (colour gain and offset, pixel noise) are applied when
frames are turned into tensors; they are far below what changes a checker
label (see ``Nuisance``).

Everything is a pure function of (seed, index): a training run and its
evaluation sets are reproducible from the config alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from evals.checkers.pixels import MAX_COLOR_DISTANCE, classify
from evals.mini.questions import (
    GOAL_WINDOW,
    SLOTS,
    Question,
    answer_from_criteria,
    object_colors,
    questions_for,
)
from evals.tasks import FAMILIES, SPLITS, Task, check, perturb, resolve_families
from evals.tasks.palette import BACKGROUND, COLOR_NAMES, OBJECT_COLORS, PALETTE_RGB, rgb
from evals.video_io import to_uint8
from reasoner.video_model import VideoReasoner

VideoSampler = Callable[[Task, int], Sequence[tuple[str, np.ndarray]]]
"""(task, seed) -> [(source name, video (F, H, W, 3) uint8), ...] from a video model."""

SYNTHETIC_KINDS: tuple[str, ...] = ("blend", "blur", "splice", "scene_edit", "partial")

ABSENT_SLOT: dict[str, str] = {"navigate": "agent", "maze": "agent", "pairs": "a", "recolor": "new"}
"""The slot replaced by an absent colour in "absent colour" goal questions.

Chosen so the question is then false: no square of that colour reaches (or
becomes) anything. (Replacing recolor's source colour would make "every X
square turned blue" vacuously true.)"""


PALETTE_FAR = MAX_COLOR_DISTANCE
"""A pixel farther than this (RGB distance) from every palette colour counts as no colour."""

ABSENT_DISTANCE = 100.0
"""A colour counts as present if any pixel is within this RGB distance of it (generous,
so a faint ghost of a colour still counts as present)."""


class Nuisance(BaseModel):
    """Label-preserving jitter applied to frames as tensors."""

    model_config = ConfigDict(extra="forbid")

    gain: float = Field(0.06, ge=0, le=0.3, description="Max per-channel gain change (1 ± gain).")
    offset: float = Field(
        0.03, ge=0, le=0.2, description="Max per-channel brightness offset, in [0, 1] units."
    )
    noise: float = Field(0.03, ge=0, le=0.2, description="Max std of per-pixel Gaussian noise.")


class ScorerDataConfig(BaseModel):
    """What the scorer's examples are made of."""

    model_config = ConfigDict(extra="forbid")

    families: list[str] = Field(
        default_factory=lambda: list(FAMILIES), description="Mini-world families to draw from."
    )
    size: int = Field(32, ge=16, description="Frame size in pixels (square).")
    num_frames: int = Field(
        9, ge=5, description="Frames per video (4k+1; the mini video model makes 9)."
    )
    source_weights: dict[str, float] = Field(
        default_factory=lambda: {"solution": 1.0, "perturb": 3.0, "synthetic": 3.0, "vgm": 3.0},
        description="Relative frequency of each video source; 'vgm' is used only when a "
        "video sampler is given.",
    )
    goal_window_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of goal questions asked over the end window instead of all frames.",
    )
    absent_color_share: float = Field(
        0.15,
        ge=0,
        le=1,
        description="Share of goal questions that name a colour absent from the video (No).",
    )
    probe_questions: int = Field(
        8,
        ge=0,
        description="Colour-presence questions added per training video (see probe_rows).",
    )
    paraphrases_per_criterion: int = Field(
        2, ge=1, description="Distinct paraphrases asked per criterion about each video."
    )
    balance: bool = Field(
        True,
        description="Weigh Yes and No equally per (family, criterion): by loss weights in "
        "training, by thinning rows in held-out sets.",
    )
    nuisance: Nuisance = Field(default_factory=Nuisance, description="Label-preserving jitter.")

    @field_validator("families")
    @classmethod
    def _known_families(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError(f"families must name at least one of {', '.join(FAMILIES)}")
        return resolve_families(value)

    @field_validator("source_weights")
    @classmethod
    def _known_sources(cls, value: dict[str, float]) -> dict[str, float]:
        allowed = {"solution", "perturb", "synthetic", "vgm"}
        if set(value) - allowed or any(w < 0 for w in value.values()) or not any(value.values()):
            raise ValueError(
                f"source_weights maps some of {sorted(allowed)} to non-negative weights "
                f"(at least one positive); got {value}"
            )
        return value


@dataclass(frozen=True)
class Row:
    """One question about one video, with the checker's answer."""

    text: str
    criterion: str
    role: str
    answer: bool  # True = "Yes"
    window: tuple[int, ...]  # frame indices the question looks at
    held_out: bool
    absent_color: bool


@dataclass(frozen=True)
class Example:
    """A video and the questions asked about it."""

    video: np.ndarray  # (F, H, W, 3) uint8
    task_id: str
    family: str
    source: str
    criteria: dict[str, float]
    rows: tuple[Row, ...]


# ------------------------------------------------------------------ video sources


def distinct_perturbations(family: str) -> list[str]:
    """The family's perturbation kinds without the aliases of another kind."""
    fam = FAMILIES[family]
    return [k for k in fam.perturbations if k not in fam.aliases]


def _blur(video: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur over height and width, uint8 in and out."""
    radius = max(1, int(np.ceil(2 * sigma)))
    x = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    kernel /= kernel.sum()
    out = video.astype(np.float32)
    for axis in (1, 2):
        padded = np.pad(
            out, [(radius, radius) if a == axis else (0, 0) for a in range(4)], mode="edge"
        )
        out = sum(
            w * np.take(padded, np.arange(i, i + out.shape[axis]), axis=axis)
            for i, w in enumerate(kernel)
        )
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def synthetic_video(
    kind: str, task: Task, variants: Mapping[str, np.ndarray], rng: np.random.Generator
) -> np.ndarray:
    """A video of ``task`` made from its solution and perturbed ``variants``."""
    names = sorted(variants)
    pick = lambda: variants[names[int(rng.integers(len(names)))]]  # noqa: E731
    frames, size = task.num_frames, task.size
    if kind == "blend":  # two trajectories superimposed, like an undecided prediction
        alpha = rng.uniform(0.25, 0.75)
        mixed = alpha * pick().astype(np.float32) + (1 - alpha) * pick().astype(np.float32)
        return np.rint(mixed).astype(np.uint8)
    if kind == "blur":
        return _blur(pick(), float(rng.uniform(0.4, 1.2)))
    if kind == "splice":  # one variant, then another from a random frame on
        first, second = pick(), pick()
        cut = int(rng.integers(2, frames - 1))
        return np.concatenate([first[:cut], second[cut:]])
    if kind == "scene_edit":  # a stray blob appears or scenery is wiped from frame t on
        video = pick().copy()
        start = int(rng.integers(0, frames))
        side = int(rng.integers(2, max(3, size // 6)))
        y, x = (int(v) for v in rng.integers(0, size - side, size=2))
        colour = COLOR_NAMES[int(rng.integers(len(COLOR_NAMES)))]
        video[start:, y : y + side, x : x + side] = rgb(colour)
        return video
    if kind == "partial":  # part of the picture wiped to background for a few frames
        video = pick().copy()
        start = int(rng.integers(0, frames))
        stop = int(rng.integers(start + 1, frames + 1))
        side = int(rng.integers(2, max(3, size // 4)))
        y, x = (int(v) for v in rng.integers(0, size - side, size=2))
        video[start:stop, y : y + side, x : x + side] = rgb(BACKGROUND)
        return video
    raise ValueError(f"unknown synthetic kind {kind!r}; use one of {', '.join(SYNTHETIC_KINDS)}")


class Variants(Mapping[str, np.ndarray]):
    """A task's solution and rule-breaking variants, rendered on first use.

    Each variant's seed is drawn up front, so which variants end up rendered
    does not change the random stream (or any video).
    """

    def __init__(self, task: Task, rng: np.random.Generator) -> None:
        assert task.solution is not None  # mini-world tasks always have one
        self._task = task
        self._seeds = {k: int(rng.integers(2**31)) for k in distinct_perturbations(task.family)}
        self._videos: dict[str, np.ndarray] = {"solution": np.asarray(task.solution)}

    def __getitem__(self, kind: str) -> np.ndarray:
        if kind not in self._videos:
            self._videos[kind] = perturb(self._task, kind, self._seeds[kind])
        return self._videos[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(["solution", *self._seeds])

    def __len__(self) -> int:
        return 1 + len(self._seeds)


def videos_for(
    task: Task,
    rng: np.random.Generator,
    count: int,
    weights: dict[str, float],
    sampler: VideoSampler | None = None,
) -> list[tuple[str, np.ndarray]]:
    """``count`` videos of ``task``, their sources drawn by ``weights``."""
    variants = Variants(task, rng)
    sources = [s for s, w in weights.items() if w > 0 and (s != "vgm" or sampler is not None)]
    probs = np.array([weights[s] for s in sources], dtype=float)
    drawn = rng.choice(len(sources), size=count, p=probs / probs.sum())
    vgm_pool: list[tuple[str, np.ndarray]] = []
    out: list[tuple[str, np.ndarray]] = []
    for index in drawn:
        source = sources[int(index)]
        if source == "solution":
            out.append(("solution", variants["solution"]))
        elif source == "perturb":
            kinds = [k for k in variants if k != "solution"]
            kind = kinds[int(rng.integers(len(kinds)))]
            out.append((f"perturb:{kind}", variants[kind]))
        elif source == "synthetic":
            kind = SYNTHETIC_KINDS[int(rng.integers(len(SYNTHETIC_KINDS)))]
            out.append((f"synthetic:{kind}", synthetic_video(kind, task, variants, rng)))
        else:
            assert sampler is not None
            if not vgm_pool:
                vgm_pool = list(sampler(task, int(rng.integers(2**31))))
            name, video = vgm_pool.pop(int(rng.integers(len(vgm_pool))))
            out.append((f"vgm:{name}", video))
    return out


def vgm_sampler(reasoner: VideoReasoner, drift_std: float = 0.0) -> VideoSampler:
    """Videos of a video model for a task: what the scorer sees during optimization.

    For one noise draw: the one-step prediction (``one_step``, what test-time
    optimization scores), the few-step sample (``sample``, the final video) and,
    when ``drift_std`` > 0, the one-step prediction with the LoRA's B matrices
    set to random values of that std (``drift``), standing in for a LoRA that
    optimization has moved somewhere. The LoRA is reset afterwards.
    """
    if not reasoner.lora.attached:
        raise ValueError("attach a LoRA to the reasoner first (VideoReasoner.from_config does)")

    @torch.no_grad()
    def sample(task: Task, seed: int) -> list[tuple[str, np.ndarray]]:
        generator = torch.Generator().manual_seed(seed)
        cond = reasoner.encode(task.instruction, to_frames(task.first_frame[None])[0])
        noise = reasoner.initial_noise(generator)
        out = [
            ("one_step", reasoner.decode(reasoner.predict_latent(noise, cond, grad="first"))),
            ("sample", reasoner.sample(noise, cond)),
        ]
        if drift_std > 0:
            state = reasoner.lora.state_dict()
            moved = {
                name: torch.randn(w.shape, generator=generator) * drift_std
                if ".lora_B." in name
                else w
                for name, w in state.items()
            }
            reasoner.lora.load_state_dict(moved)
            try:
                latent = reasoner.predict_latent(noise, cond, grad="first")
                out.append(("drift", reasoner.decode(latent)))
            finally:
                reasoner.lora.reset()
        return [(name, to_uint8(frames)) for name, frames in out]

    return sample


# ----------------------------------------------------------------------- questions


def absent_colors(video: np.ndarray) -> list[str]:
    """Object colours that no pixel of any frame is close to (within ``ABSENT_DISTANCE``)."""
    pixels = np.unique(video.reshape(-1, 3), axis=0).astype(np.int32)
    dist2 = ((pixels[:, None, :] - PALETTE_RGB.astype(np.int32)[None]) ** 2).sum(-1)
    near = (dist2 <= ABSENT_DISTANCE**2).any(axis=0)
    present = {name for name, hit in zip(COLOR_NAMES, near, strict=True) if hit}
    return [c for c in OBJECT_COLORS if c not in present]


def rows_for(
    task: Task,
    video: np.ndarray,
    criteria: dict[str, float],
    rng: np.random.Generator,
    cfg: ScorerDataConfig,
    *,
    held_out: bool,
) -> list[Row]:
    """Rows for every criterion: ``paraphrases_per_criterion`` distinct random paraphrases
    (train or held-out ones) and the checker's answer."""
    questions = [
        q
        for q in questions_for(task.instruction, task.family, include_held_out=held_out)
        if q.held_out == held_out
    ]
    by_criterion: dict[str, list[Question]] = {}
    for q in questions:
        by_criterion.setdefault(q.criterion, []).append(q)
    every = tuple(range(task.num_frames))
    window_n = int(GOAL_WINDOW["n"])  # type: ignore[call-overload]
    end = tuple(range(task.num_frames - window_n, task.num_frames))
    rows = []
    for criterion, options in by_criterion.items():
        count = min(cfg.paraphrases_per_criterion, len(options))
        for pick in rng.choice(len(options), size=count, replace=False):
            question = options[int(pick)]
            text, answer, absent = question.text, answer_from_criteria(question, criteria), False
            if question.role == "goal" and rng.random() < cfg.absent_color_share:
                swapped = _absent_question(task, video, options, rng)
                if swapped is not None:
                    text, answer, absent = swapped, False, True
            window = every
            if question.role == "goal" and rng.random() < cfg.goal_window_share:
                window = end
            rows.append(
                Row(text, criterion, question.role, answer, window, question.held_out, absent)
            )
    return rows


PROBES: dict[str, tuple[str, slice]] = {
    "probe:first": ("Is any part of the first frame {color}?", slice(0, 1)),
    "probe:last": ("Is any part of the last frame {color}?", slice(-1, None)),
    "probe:any": ("Is anything {color} at some point in the video?", slice(None)),
}
"""Colour-presence questions asked in training only: (template, frames they are about)."""

PROBE_MIN_PIXELS = 4
"""A colour is present in a frame when at least this many pixels are nearest to it."""


def colors_present(frames: np.ndarray) -> set[str]:
    """Object colours that at least ``PROBE_MIN_PIXELS`` pixels of ``frames`` show."""
    labels = classify(frames).ravel()  # nearest palette colour, -1 when far from all
    counts = np.bincount(labels[labels >= 0], minlength=len(COLOR_NAMES))
    return {c for c in OBJECT_COLORS if counts[COLOR_NAMES.index(c)] >= PROBE_MIN_PIXELS}


def probe_rows(video: np.ndarray, rng: np.random.Generator, count: int) -> list[Row]:
    """About ``count`` colour-presence questions about the whole video (answers from its pixels).

    They teach the language model to tie colour words to what the vision
    tokens show (the binding every task question relies on) with a dense,
    cheap signal; they are never part of the held-out sets. They come in
    pairs that differ only in the colour word, one present and one absent
    colour (``count`` // 2 pairs, at least one): the same video and wording
    with opposite answers, so only the colour word explains the answer.
    """
    rows = []
    window = tuple(range(video.shape[0]))
    names = list(PROBES)
    for _ in range(max(1, count // 2) if count else 0):
        kind = names[int(rng.integers(len(names)))]
        template, frames = PROBES[kind]
        present = colors_present(video[frames])
        for pool in (sorted(present), sorted(set(OBJECT_COLORS) - present)):
            if pool:
                color = pool[int(rng.integers(len(pool)))]
                text = template.format(color=color)
                rows.append(Row(text, kind, "probe", color in present, window, False, False))
    return rows


def _absent_question(
    task: Task,
    video: np.ndarray,
    options: list[Question],
    rng: np.random.Generator,
) -> str | None:
    """A goal question with one colour word replaced by a colour absent from the video."""
    named_colors = object_colors(task.instruction)
    # Neither in the video nor in the instruction: the question must really change.
    absent = [c for c in absent_colors(video) if c not in named_colors]
    original = named_colors[SLOTS[task.family].index(ABSENT_SLOT[task.family])]
    pattern = re.compile(rf"\b{original}\b")
    named = [q for q in options if pattern.search(q.text)]
    if not absent or not named:
        return None
    text = named[int(rng.integers(len(named)))].text
    return pattern.sub(absent[int(rng.integers(len(absent)))], text)


# ------------------------------------------------------------------------ examples


def make_example(
    task: Task,
    source: str,
    video: np.ndarray,
    rng: np.random.Generator,
    cfg: ScorerDataConfig,
    *,
    held_out: bool,
) -> Example:
    """Score ``video`` with the task's checker and ask its questions."""
    result = check(task, video)
    rows = rows_for(task, video, result.criteria, rng, cfg, held_out=held_out)
    if not held_out:
        rows += probe_rows(video, rng, cfg.probe_questions)
    return Example(video, task.task_id, task.family, source, dict(result.criteria), tuple(rows))


def examples_for_tasks(
    tasks: Iterable[Task],
    cfg: ScorerDataConfig,
    seed: Sequence[int],
    videos_per_task: int,
    *,
    held_out: bool,
    sampler: VideoSampler | None = None,
) -> list[Example]:
    """Examples for each task in order; deterministic in ``seed`` (a sequence of
    non-negative ints) and the task ids."""
    out = []
    for task in tasks:
        rng = np.random.default_rng([*seed, FAMILY_INDEX[task.family], task.seed])
        for source, video in videos_for(task, rng, videos_per_task, cfg.source_weights, sampler):
            out.append(make_example(task, source, video, rng, cfg, held_out=held_out))
    return out


FAMILY_INDEX = {name: i for i, name in enumerate(FAMILIES)}


def train_tasks(cfg: ScorerDataConfig, seed: Sequence[int], step: int, count: int) -> list[Task]:
    """``count`` tasks of the train split for training step ``step``, families in turn."""
    rng = np.random.default_rng([*seed, step])
    seeds = rng.integers(SPLITS["train"].start, SPLITS["train"].stop, size=count)
    return [
        FAMILIES[cfg.families[(step * count + i) % len(cfg.families)]].generate(
            int(s), size=cfg.size, num_frames=cfg.num_frames
        )
        for i, s in enumerate(seeds)
    ]


def split_tasks(cfg: ScorerDataConfig, split: str, per_family: int) -> list[Task]:
    """The first ``per_family`` tasks of a held-out split, for every family."""
    seeds = SPLITS[split][:per_family]  # type: ignore[index]
    return [
        FAMILIES[f].generate(int(s), size=cfg.size, num_frames=cfg.num_frames)
        for s in seeds
        for f in cfg.families
    ]


# ---------------------------------------------------------------------- balancing


def yes_rates(examples: Iterable[Example]) -> dict[tuple[str, str], float]:
    """Share of "Yes" answers per (family, criterion)."""
    counts: dict[tuple[str, str], list[int]] = {}
    for ex in examples:
        for row in ex.rows:
            c = counts.setdefault((ex.family, row.criterion), [0, 0])
            c[0] += row.answer
            c[1] += 1
    return {k: yes / total for k, (yes, total) in counts.items()}


def balance(
    examples: Sequence[Example],
    rates: dict[tuple[str, str], float],
    rng: np.random.Generator,
) -> list[Example]:
    """Drop rows of the majority answer so each (family, criterion) is Yes/No balanced.

    A row of the majority answer is kept with probability minority/majority
    share; examples left without rows are dropped.
    """
    out = []
    for ex in examples:
        kept = []
        for row in ex.rows:
            p_yes = rates.get((ex.family, row.criterion), 0.5)
            p_answer = p_yes if row.answer else 1 - p_yes
            keep = min(1.0, (1 - p_answer) / p_answer) if p_answer > 0 else 1.0
            if rng.random() < keep:
                kept.append(row)
        if kept:
            out.append(
                Example(ex.video, ex.task_id, ex.family, ex.source, ex.criteria, tuple(kept))
            )
    return out


# ------------------------------------------------------------------------ tensors


def to_frames(
    video: np.ndarray,
    nuisance: Nuisance | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float (F, 3, H, W) in [0, 1], with optional nuisance jitter."""
    frames = torch.from_numpy(np.array(video, copy=True)).permute(0, 3, 1, 2).float() / 255.0
    if nuisance is None:
        return frames
    if generator is None:
        raise ValueError("nuisance jitter needs a seeded torch.Generator")
    u = lambda *shape: torch.rand(*shape, generator=generator) * 2 - 1  # noqa: E731
    gain = 1 + nuisance.gain * u(1, 3, 1, 1)
    offset = nuisance.offset * u(1, 3, 1, 1)
    std = nuisance.noise * float(torch.rand((), generator=generator))
    noise = std * torch.randn(frames.shape, generator=generator)
    return (frames * gain + offset + noise).clamp(0.0, 1.0)


def palette_targets(
    frames: torch.Tensor, patch_size: int, merge_size: int, temporal_patch_size: int
) -> torch.Tensor:
    """What each vision token should know: palette-colour fractions of its patches.

    ``frames`` (f, 3, H, W) in [0, 1], at the size the scorer feeds them (no
    resize). Returns ``(tokens, temporal_patch_size * merge_size**2, C)``: for
    every merged vision token (in the encoder's output order: temporal group,
    then block row, then block column) and every frame and patch inside it, the
    share of its pixels nearest to each palette colour, plus a last class for
    pixels far from all of them. Used as a dense auxiliary target in training.
    """
    tp, p, m = temporal_patch_size, patch_size, merge_size
    if pad := -frames.shape[0] % tp:  # the scorer pads by repeating the last frame
        frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
    palette = torch.as_tensor(PALETTE_RGB, dtype=frames.dtype) / 255.0
    dist2 = ((frames.permute(0, 2, 3, 1)[..., None, :] - palette) ** 2).sum(-1)  # (f, H, W, K)
    labels = dist2.argmin(-1)
    labels[dist2.min(-1).values > (PALETTE_FAR / 255.0) ** 2] = len(PALETTE_RGB)
    classes = len(PALETTE_RGB) + 1
    onehot = torch.nn.functional.one_hot(labels, classes).to(frames.dtype)
    f, h, w = labels.shape
    blocks = onehot.reshape(f // tp, tp, h // (p * m), m, p, w // (p * m), m, p, classes)
    # -> (t, block row, block col, frame in group, patch row, patch col, px, px, class)
    blocks = blocks.permute(0, 2, 5, 1, 3, 6, 4, 7, 8)
    return blocks.mean(dim=(6, 7)).reshape(-1, tp * m * m, classes)
