"""Training data of the mini video model: the mini world's train split as pixel videos.

Everything here is deterministic in a step index, so a run resumed from a
checkpoint sees exactly the batches it would have seen without the break.

- `instruction_words` / `build_mini_tokenizer`: a T5 (Unigram) tokenizer built
  offline whose vocabulary holds every word of the families' instructions as
  one piece, so an instruction is a short sequence of meaningful tokens (the
  colour words decide which object moves where). Unknown words still tokenize,
  character by character.
- `DemoStream`: batch `step` of (instruction, first frame, video) from the
  train split, the families interleaved evenly, every seed used once.
- `StepBatches`: a stream's batches (or anything else made from the step) for a
  range of steps, in order, made ahead by worker processes if asked (on a GPU the
  rendering would otherwise stand between steps).
"""

from __future__ import annotations

import importlib
import re
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

import numpy as np
import torch
from transformers import T5Tokenizer

from evals.tasks import FAMILIES, SPLITS, Task, resolve_families
from evals.tasks.palette import COLOR_NAMES

T = TypeVar("T")

MARKER = "\u2581"
"""SentencePiece's word-start marker."""

VOCAB_SAMPLE_SEEDS = 300
"""Train seeds per family whose instructions are read to collect the filled-in words."""


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z]+", text)


@lru_cache(maxsize=8)
def _family_words(name: str) -> frozenset[str]:
    family = FAMILIES[name]
    module = importlib.import_module(type(family).__module__)
    found: set[str] = set()
    for group in ("TEMPLATES", "ENDINGS"):
        for template in getattr(module, group, ()):
            found.update(_words(re.sub(r"\{[^}]*\}", " ", template)))
    for seed in SPLITS["train"][:VOCAB_SAMPLE_SEEDS]:
        found.update(_words(family.generate(seed).instruction))
    return frozenset(found)


def instruction_words(families: Sequence[str] | None = None) -> list[str]:
    """Every word the families' instructions use, sorted, both as written and lower-case.

    Words come from each family module's instruction templates (placeholders
    removed) and from the instructions of the first `VOCAB_SAMPLE_SEEDS` train
    seeds (which fill the placeholders: colours, counts), plus the palette's
    colour names.
    """
    names = resolve_families(families)
    found: set[str] = set(COLOR_NAMES)
    for name in names:
        found |= _family_words(name)
    cased = found | {w.lower() for w in found} | {w.capitalize() for w in found}
    return sorted(cased)


def build_mini_tokenizer(words: Sequence[str], model_max_length: int = 64) -> T5Tokenizer:
    """A T5 Unigram tokenizer over `words` (one piece each) with a character fallback.

    Ids follow T5: <pad>=0, </s>=1, <unk>=2. A whole word scores higher than
    its characters, so the Unigram model picks the word whenever it can.
    """
    chars = string.ascii_letters + string.digits + string.punctuation
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab.append((MARKER, -4.0))
    vocab += [(c, -5.0) for c in chars]
    vocab += [(MARKER + c, -4.5) for c in chars]
    single = set(chars)
    vocab += [(MARKER + w, -3.0) for w in sorted(set(words)) if w not in single]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=model_max_length)


def video_to_pixels(video: np.ndarray) -> torch.Tensor:
    """uint8 (F, H, W, 3) -> float32 (3, F, H, W) in [-1, 1], the pixel model's latent."""
    return (
        torch.from_numpy(np.array(video, copy=True)).float().div(127.5).sub(1.0).permute(3, 0, 1, 2)
    )


def pixels_to_video(pixels: torch.Tensor) -> np.ndarray:
    """float (3, F, H, W) in [-1, 1] -> uint8 (F, H, W, 3), rounded and clipped."""
    scaled = (pixels.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5
    return scaled.round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


@dataclass(frozen=True)
class Batch:
    """One training batch."""

    instructions: list[str]
    videos: torch.Tensor
    """(B, 3, F, H, W) float32 in [-1, 1]; frame 0 is the task's first frame."""
    task_ids: list[str]


class DemoStream:
    """Deterministic batches of demonstration videos from the mini world's train split.

    Example `i` (counting over all batches) is family `families[i % n]` at
    train seed `first_seed + i // n`: families alternate, no seed repeats, and
    `batch(step)` needs no state, which makes resuming exact.
    """

    def __init__(
        self,
        batch_size: int,
        families: Sequence[str] | None = None,
        first_seed: int = 0,
        size: int = 32,
        num_frames: int = 17,
    ) -> None:
        self.families = resolve_families(families)
        train = SPLITS["train"]
        if not train.start <= first_seed < train.stop:
            raise ValueError(f"first_seed {first_seed} is outside the train split {train}")
        self.batch_size = batch_size
        self.first_seed = first_seed
        self.size = size
        self.num_frames = num_frames

    def task(self, index: int) -> Task:
        """The task of example `index` of the stream."""
        n = len(self.families)
        seed = self.first_seed + index // n
        if seed not in SPLITS["train"]:
            raise ValueError(f"the stream ran past the train split at example {index}")
        family = FAMILIES[self.families[index % n]]
        return family.generate(seed, size=self.size, num_frames=self.num_frames)

    def batch(self, step: int) -> Batch:
        """Batch number `step` (0-based)."""
        tasks = [self.task(step * self.batch_size + i) for i in range(self.batch_size)]
        videos = torch.stack([video_to_pixels(t.solution) for t in tasks])  # type: ignore[arg-type]
        return Batch([t.instruction for t in tasks], videos, [t.task_id for t in tasks])


class _Steps(torch.utils.data.Dataset):
    """`make` as a dataset whose item `step` is `make(step)` (for a DataLoader)."""

    def __init__(self, make: Callable[[int], Any]) -> None:
        self.make = make

    def __getitem__(self, step: int) -> Any:
        return self.make(step)


class StepBatches(Generic[T]):
    """The items `make(step)` for steps `start`..`stop - 1`, handed out one at a time, in order.

    `make` is a pure function of the step (a stream's `batch`, or a trainer's batch
    with its noise draws) and picklable. With `workers` > 0, that many worker
    processes make the items ahead of the training loop (each still a function of
    its step, so the items are the same with or without them); with 0 every item is
    made when asked for.
    """

    def __init__(self, make: Callable[[int], T], start: int, stop: int, workers: int = 0) -> None:
        if workers < 0:
            raise ValueError(f"workers must be 0 or more, got {workers}")
        self.next_step = start
        self._items: Iterator[T]
        if workers == 0 or start >= stop:
            self._items = (make(step) for step in range(start, stop))
        else:
            loader = torch.utils.data.DataLoader(
                _Steps(make),
                batch_size=None,  # an item is already a batch
                sampler=range(start, stop),
                num_workers=workers,
                prefetch_factor=4,
            )
            self._items = iter(loader)

    def __call__(self, step: int) -> T:
        """Item `step`, which must be the next one."""
        if step != self.next_step:
            raise ValueError(f"asked for batch {step}, but the next one is {self.next_step}")
        self.next_step += 1
        return next(self._items)
