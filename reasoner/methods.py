"""Methods that turn a condition into a video, each with its cost: one interface.

    method(Condition(prompt, image, seed)) -> MethodOutput(video, cost, method, details)

- `BaseMethod`     one sample of the video model.
- `BestOfN`        N samples; the pick is made by the reward spec's loss (no ground
                   truth), or — labelled "best_of_n_oracle", an upper bound only — by
                   a checker the caller passes in. N is given, or matched to another
                   method's cost.
- `SolverMethod`   VLM-as-solver: the teacher rewrites the instruction into a more
                   explicit prompt (optionally refined from its critique of the
                   result, like VideoTPO), then the video model samples.
- `TeacherMethod`  test-time optimization of a LoRA against a reward spec (given,
                   or written by a `SpecWriter`).

The reasoner knows no evaluation task: a `Condition` is only prompt text, an
optional first frame and a seed (plus an opaque `key` the caller may use).
Every method leaves the base model as it found it: the LoRA is reset to a
fresh (zero-output) one after the methods that train it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch

from prompts.loader import render
from reasoner.cost import CostMeter, CostRecord, TeacherUsage, UsageReporter
from reasoner.frames import sample_frames
from reasoner.reward import compile_spec
from reasoner.tto import TestTimeOptimizer, TTOConfig

if TYPE_CHECKING:
    from reasoner.spec import RewardSpec
    from reasoner.video_model import VideoReasoner
    from reasoner.vqa import VQAScorer

__all__ = [
    "BaseMethod",
    "BestOfN",
    "Condition",
    "Method",
    "MethodOutput",
    "PromptRewriter",
    "RuleRewriter",
    "SolverMethod",
    "SpecWriter",
    "TeacherMethod",
]


@dataclass(frozen=True)
class Condition:
    """What a method is asked to solve."""

    prompt: str
    image: torch.Tensor | None = None
    """Optional first frame (3, H, W) in [0, 1]."""
    seed: int = 0
    """Seeds the noise; the same seed gives every method the same first noise sample."""
    key: str = ""
    """Opaque label chosen by the caller (e.g. a task id); never interpreted here."""


@dataclass
class MethodOutput:
    """A method's answer to one condition."""

    video: torch.Tensor
    """(F, 3, H, W) in [0, 1] from the full sampler and full decoder."""
    cost: CostRecord
    method: str
    details: dict[str, Any] = field(default_factory=dict)
    """JSON-ready facts about how the video was made (prompts, picks, loss history)."""


class Method(Protocol):
    """The one interface the batch runner and the CLI use."""

    name: str

    def __call__(self, cond: Condition) -> MethodOutput: ...


class PromptRewriter(UsageReporter, Protocol):
    """A teacher acting as a prompt engineer (the VLM-as-solver baseline)."""

    def rewrite(self, prompt: str, image: torch.Tensor | None) -> str:
        """A more explicit prompt for the video model, from an instruction (+ frame)."""
        ...

    def critique(self, prompt: str, frames: torch.Tensor) -> str:
        """What the video made from `prompt` got wrong; frames (K, 3, H, W) in [0, 1]."""
        ...


class SpecWriter(UsageReporter, Protocol):
    """A teacher that turns a task into a reward spec (the fixed, non-agentic pipeline)."""

    def write_spec(self, prompt: str, image: torch.Tensor | None) -> RewardSpec: ...


def _spec_for(cond: Condition, spec: RewardSpec | None, writer: SpecWriter | None) -> RewardSpec:
    if spec is not None:
        return spec
    assert writer is not None  # the constructors require one of the two
    return writer.write_spec(cond.prompt, cond.image)


def _usage_sources(*maybe: UsageReporter | None) -> list[UsageReporter]:
    return [m for m in maybe if m is not None]


@torch.no_grad()
def _draw_noise(reasoner: VideoReasoner, generator: torch.Generator) -> torch.Tensor:
    return reasoner.initial_noise(generator)  # (1, C, F', H', W')


@torch.no_grad()
def _sample(
    reasoner: VideoReasoner, prompt: str, image: torch.Tensor | None, noise: torch.Tensor
) -> torch.Tensor:
    return reasoner.sample(noise, reasoner.encode(prompt, image))  # (F, 3, H, W)


def _neutral_lora(reasoner: VideoReasoner) -> None:
    # Sampling-only methods must see the base model: a fresh LoRA adds exactly zero.
    if reasoner.lora.attached:
        reasoner.lora.reset()


class BaseMethod:
    """One sample of the video model from the condition's seed."""

    name = "base"

    def __init__(self, reasoner: VideoReasoner) -> None:
        self.reasoner = reasoner

    def __call__(self, cond: Condition) -> MethodOutput:
        _neutral_lora(self.reasoner)
        with CostMeter(self.reasoner.transformer) as meter:
            generator = torch.Generator(device="cpu").manual_seed(cond.seed)
            noise = _draw_noise(self.reasoner, generator)
            video = _sample(self.reasoner, cond.prompt, cond.image, noise)
        return MethodOutput(video=video, cost=meter.record(samples=1), method=self.name)


class BestOfN:
    """N samples from successive noises of the condition's seed; keep the best one.

    The pick is made by the reward spec's loss on K frames of each sample (the
    method has no ground truth). Passing `oracle` instead picks by the caller's
    checker (higher is better); that result is named "best_of_n_oracle" and is
    an upper bound, not a method. N is either given, or matched to a budget:
    N = ⌊budget / cost of one sample⌋ (sampling + scoring), measured on the
    first sample, at least 1 and at most `max_n`.
    """

    def __init__(
        self,
        reasoner: VideoReasoner,
        n: int | None = None,
        *,
        budget: CostRecord | None = None,
        match: Literal["wall_seconds", "vgm_forward_passes"] = "vgm_forward_passes",
        max_n: int = 64,
        spec: RewardSpec | None = None,
        spec_writer: SpecWriter | None = None,
        scorer: VQAScorer | None = None,
        num_frames: int = 24,
        oracle: Callable[[Condition, torch.Tensor], float] | None = None,
    ) -> None:
        if (n is None) == (budget is None):
            raise ValueError("BestOfN: give exactly one of `n` (samples) or `budget` (a cost).")
        if n is not None and n < 1:
            raise ValueError(f"BestOfN: n={n}; ask for at least 1 sample.")
        if max_n < 1:
            raise ValueError(f"BestOfN: max_n={max_n}; it must be at least 1.")
        if budget is not None and getattr(budget, match) <= 0:
            raise ValueError(
                f"BestOfN: the budget's {match} is {getattr(budget, match)}; it must be > 0."
            )
        if oracle is None and (spec is None) == (spec_writer is None):
            raise ValueError(
                "BestOfN picks by a reward spec: give exactly one of `spec` or `spec_writer` "
                "(or pass `oracle` for the labelled upper bound)."
            )
        if oracle is not None and (spec is not None or spec_writer is not None):
            raise ValueError("BestOfN: an oracle pick uses no spec; drop `spec`/`spec_writer`.")
        self.reasoner = reasoner
        self.n, self.budget, self.match, self.max_n = n, budget, match, max_n
        self.spec, self.spec_writer, self.scorer = spec, spec_writer, scorer
        self.num_frames = num_frames
        self.oracle = oracle
        self.name = "best_of_n" if oracle is None else "best_of_n_oracle"

    def _n_for_budget(self, one_sample: CostRecord) -> int:
        assert self.budget is not None
        per_sample = getattr(one_sample, self.match)
        if per_sample <= 0:
            return self.max_n
        return max(1, min(self.max_n, math.floor(getattr(self.budget, self.match) / per_sample)))

    def _scorer(self, cond: Condition) -> tuple[Callable[[torch.Tensor], float], int | None]:
        """score(video) -> higher is better, and the spec version it uses (None: oracle)."""
        if self.oracle is not None:
            oracle = self.oracle
            return (lambda video: float(oracle(cond, video))), None
        spec = _spec_for(cond, self.spec, self.spec_writer)
        reward = compile_spec(spec, self.scorer, num_frames=self.num_frames)

        @torch.no_grad()
        def score(video: torch.Tensor) -> float:
            # Lower spec loss is better; negate so every pick is an argmax.
            return -float(reward(sample_frames(video, self.num_frames)).total)

        return score, spec.version

    def __call__(self, cond: Condition) -> MethodOutput:
        _neutral_lora(self.reasoner)
        with CostMeter(self.reasoner.transformer, _usage_sources(self.spec_writer)) as meter:
            score, spec_version = self._scorer(cond)
            generator = torch.Generator(device="cpu").manual_seed(cond.seed)
            with torch.no_grad():
                cond_enc = self.reasoner.encode(cond.prompt, cond.image)
            n_target = self.n
            scores: list[float] = []
            best: tuple[float, int, torch.Tensor] | None = None
            i = 0
            while n_target is None or i < n_target:
                # The first sample's own cost (sampling + scoring) sets N under a budget.
                with CostMeter(self.reasoner.transformer) as one:
                    noise = _draw_noise(self.reasoner, generator)
                    with torch.no_grad():
                        video = self.reasoner.sample(noise, cond_enc)
                    s = score(video)
                if n_target is None:
                    n_target = self._n_for_budget(one.record(samples=1))
                scores.append(s)
                # A non-finite score never wins; ties keep the earlier sample.
                if math.isfinite(s) and (best is None or s > best[0]):
                    best = (s, i, video)
                i += 1
            if best is None:  # every score non-finite: no honest pick exists
                raise RuntimeError(
                    f"BestOfN: all {n_target} scores were non-finite ({scores}); "
                    "check the spec or the oracle."
                )
        details: dict[str, Any] = {
            "n": n_target,
            "pick": "oracle" if self.oracle is not None else "spec",
            "upper_bound": self.oracle is not None,
            "scores": scores,
            "picked": best[1],
            "spec_version": spec_version,
        }
        return MethodOutput(
            video=best[2], cost=meter.record(samples=n_target), method=self.name, details=details
        )


class SolverMethod:
    """VLM-as-solver: the teacher rewrites the prompt, the video model samples.

    `rounds=1` is one rewrite. With more rounds, the teacher critiques K frames
    of the last video and rewrites again (`prompts/solver.yaml`, `refine`), VideoTPO-style;
    every round samples from the same noise, so only the prompt changes. The
    last round's video is the answer.
    """

    name = "solver"

    def __init__(
        self,
        reasoner: VideoReasoner,
        rewriter: PromptRewriter,
        rounds: int = 1,
        critique_frames: int = 8,
    ) -> None:
        if rounds < 1:
            raise ValueError(f"SolverMethod: rounds={rounds}; use at least 1.")
        if critique_frames < 1:
            raise ValueError(f"SolverMethod: critique_frames={critique_frames}; use at least 1.")
        self.reasoner, self.rewriter = reasoner, rewriter
        self.rounds, self.critique_frames = rounds, critique_frames

    def _rewrite(self, request: str, image: torch.Tensor | None) -> str:
        prompt = self.rewriter.rewrite(request, image).strip()
        if not prompt:
            # No silent fallback to the original prompt: that would be the base method.
            raise ValueError("the prompt rewriter returned an empty prompt; check the teacher")
        return prompt

    def __call__(self, cond: Condition) -> MethodOutput:
        _neutral_lora(self.reasoner)
        with CostMeter(self.reasoner.transformer, [self.rewriter]) as meter:
            generator = torch.Generator(device="cpu").manual_seed(cond.seed)
            noise = _draw_noise(self.reasoner, generator)
            prompt = self._rewrite(cond.prompt, cond.image)
            prompts, critiques = [prompt], []
            video = _sample(self.reasoner, prompt, cond.image, noise)
            for _ in range(self.rounds - 1):
                critique = self.rewriter.critique(
                    prompt, sample_frames(video, self.critique_frames)
                )
                request = render(
                    "solver", "refine", instruction=cond.prompt, prompt=prompt, critique=critique
                )
                prompt = self._rewrite(request, cond.image)
                critiques.append(critique)
                prompts.append(prompt)
                video = _sample(self.reasoner, prompt, cond.image, noise)
        return MethodOutput(
            video=video,
            cost=meter.record(samples=self.rounds),
            method=self.name,
            details={"prompts": prompts, "critiques": critiques},
        )


class TeacherMethod:
    """The fixed teacher pipeline: one spec (given or written), then LoRA optimization."""

    name = "teacher"

    def __init__(
        self,
        reasoner: VideoReasoner,
        config: TTOConfig | None = None,
        *,
        spec: RewardSpec | None = None,
        spec_writer: SpecWriter | None = None,
        scorer: VQAScorer | None = None,
    ) -> None:
        if (spec is None) == (spec_writer is None):
            raise ValueError("TeacherMethod: give exactly one of `spec` or `spec_writer`.")
        self.reasoner = reasoner
        self.config = config or TTOConfig()
        self.spec, self.spec_writer, self.scorer = spec, spec_writer, scorer

    def __call__(self, cond: Condition) -> MethodOutput:
        with CostMeter(self.reasoner.transformer, _usage_sources(self.spec_writer)) as meter:
            spec = _spec_for(cond, self.spec, self.spec_writer)
            reward = compile_spec(spec, self.scorer, num_frames=self.config.num_frames)
            try:
                tto = TestTimeOptimizer(
                    self.reasoner,
                    reward,
                    self.config,
                    prompt=cond.prompt,
                    image=cond.image,
                    seed=cond.seed,
                )
                tto.run_to_end()
                result = tto.result(final_video=True)
            finally:
                # The trained LoRA belongs to this task only; the next one starts fresh.
                self.reasoner.lora.reset()
        assert result.video is not None
        cost = meter.record(optimization_steps=result.cost.optimization_steps, samples=1)
        return MethodOutput(
            video=result.video,
            cost=cost,
            method=self.name,
            details={"spec": spec.model_dump(mode="json"), **result.to_dict()},
        )


class RuleRewriter:
    """A prompt rewriter that needs no model: it appends the task's rule sentences.

    A real, deterministic `PromptRewriter` for offline runs and tests. `rewrite`
    adds each rule not already in the prompt; `critique` reports measured facts
    of the frames (brightness, motion) and restates the rules. It calls no
    model, so its usage counts calls and zero tokens.
    """

    def __init__(self, rules: Sequence[str]) -> None:
        self.rules = [r.strip() for r in rules if r.strip()]
        self._calls = 0

    @property
    def usage(self) -> TeacherUsage:
        return TeacherUsage(calls=self._calls)

    def rewrite(self, prompt: str, image: torch.Tensor | None) -> str:
        self._calls += 1
        missing = [r for r in self.rules if r not in prompt]
        return " ".join([prompt.strip(), *missing])

    def critique(self, prompt: str, frames: torch.Tensor) -> str:
        self._calls += 1
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"critique expects frames (K, 3, H, W); got {tuple(frames.shape)}.")
        brightness = float(frames.mean())
        motion = float((frames[1:] - frames[:-1]).abs().mean()) if len(frames) > 1 else 0.0
        checks = " ".join(f"Make sure that: {r}" for r in self.rules)
        return f"Mean brightness {brightness:.3f}; mean frame change {motion:.4f}. {checks}".strip()
