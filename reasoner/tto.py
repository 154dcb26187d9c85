"""Test-time optimization: train a fresh LoRA on the frozen video model for one task.

The loop, for one condition (prompt, optional first frame, seed):

    noise ε is drawn once and kept; the LoRA starts fresh
    (noise_candidates > 1: ε is the draw whose one-step prediction the spec scores best)
    repeat:
        x̂0     = predict_latent(ε, c)          one-step clean latent, differentiable
        frames = decode(x̂0, "surrogate")        (F, 3, H, W), light decoder
        loss   = spec(K frames sampled uniformly)
        stop if loss ≤ τ                         checked BEFORE stepping, on this iterate
        stop if N gradient steps were taken      (a closing evaluation scores the last one)
        gradient step on the LoRA parameters only

It keeps the best iterate by loss, skips non-finite steps (restoring the last
good LoRA and optimizer state), and runs in bursts (`run(k)`) so an agent can
look at the frames and revise the spec (`set_reward`) between bursts; bursts of
3 + 3 steps give the same history as one run of 6. The final video comes from
the full sampler and full decoder with the same noise.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch
from pydantic import BaseModel, ConfigDict, Field

from reasoner.cost import CostRecord, ForwardCounter
from reasoner.errors import ConfigError
from reasoner.frames import sample_frames

if TYPE_CHECKING:
    from reasoner.reward import RewardResult
    from reasoner.video_model import VideoReasoner

__all__ = [
    "OPTIMIZERS",
    "RewardFn",
    "StepRecord",
    "StopReason",
    "TTOConfig",
    "TTOResult",
    "TermRecord",
    "TestTimeOptimizer",
]

StopReason = Literal["threshold", "max_steps", "time_budget", "nan"]
Action = Literal["step", "stop", "skip"]


class RewardFn(Protocol):
    """A compiled reward spec (`reasoner.reward.RewardFunction` is one).

    Called on K frames (K, 3, H, W) in [0, 1]; `version` is the spec's version,
    recorded with every step so a history shows which spec scored it.
    """

    @property
    def version(self) -> int: ...

    def __call__(self, frames: torch.Tensor) -> RewardResult: ...


# Optimizer constructors by name; the LoRA is the only thing they ever see.
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "adamw": lambda params, lr, wd: torch.optim.AdamW(params, lr=lr, weight_decay=wd),
    "adam": lambda params, lr, wd: torch.optim.Adam(params, lr=lr, weight_decay=wd),
    "sgd": lambda params, lr, wd: torch.optim.SGD(params, lr=lr, weight_decay=wd),
}


class TTOConfig(BaseModel):
    """How one task's LoRA is optimized. Defaults follow the paper."""

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["adamw", "adam", "sgd"] = Field(
        default="adamw", description="Optimizer over the LoRA parameters."
    )
    lr: float = Field(default=5e-5, gt=0, description="Learning rate (paper: 5e-5 at rank 16).")
    weight_decay: float = Field(default=0.0, ge=0, description="Decoupled (AdamW) or L2 decay.")
    max_steps: int = Field(
        default=40, ge=0, description="At most this many gradient steps N (paper: 40)."
    )
    tau: float | None = Field(
        default=0.22,
        description="Stop when the spec loss of the current iterate is ≤ tau, before "
        "stepping (paper: 0.22, about P(Yes)=0.8). None never stops early.",
    )
    stop_needs_checks: bool = Field(
        default=True,
        description="The tau stop also needs every check of the spec to pass on the iterate. "
        "tau is set for the VQA loss (-log P(Yes)); a check's loss is on its own, smaller "
        "scale (a square twice its tolerance from the target scores ~1e-3), so the total can "
        "sit below tau while a check still fails. False: the paper's rule, loss <= tau alone.",
    )
    grad_steps: Literal["first", "last", "all"] = Field(
        default="first",
        description="Which denoising steps of the prediction carry gradients.",
    )
    num_frames: int = Field(
        default=24, ge=1, description="K frames sampled uniformly for the spec (paper: 24)."
    )
    grad_clip: float | None = Field(
        default=1.0,
        gt=0,
        description="Clip the LoRA gradient to this global norm; None: off. "
        "The paper gives none; 1.0 is a guard against a spike, rarely active.",
    )
    time_budget_s: float | None = Field(
        default=None,
        gt=0,
        description="Stop once this many seconds were spent optimizing (over all bursts).",
    )
    keep: Literal["best", "last"] = Field(
        default="best",
        description="Final LoRA: the evaluated iterate with the lowest loss under the "
        "current spec, or the last iterate.",
    )
    max_nan_skips: int = Field(
        default=3,
        ge=1,
        description="Give up (stop reason 'nan') after this many non-finite steps in a row.",
    )
    noise_candidates: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Draw this many noises from the seed and keep the one whose one-step "
        "prediction the spec scores best (one forward pass each, no gradient) before any "
        "step. 1: the paper's single draw. The first draw is always the base model's noise.",
    )


@dataclass(frozen=True)
class TermRecord:
    """One spec term's score on one iterate."""

    name: str
    role: str
    loss: float
    weight: float
    p_yes: float | None
    passed: bool | None


@dataclass(frozen=True)
class StepRecord:
    """One evaluation of the current LoRA iterate, and what the loop did next."""

    index: int
    """Position in the history."""
    iterate: int
    """Accepted gradient steps in the LoRA being evaluated (skipped steps do not count)."""
    spec_version: int
    loss: float
    """Total spec loss of this iterate (nan when it was not finite)."""
    terms: tuple[TermRecord, ...]
    action: Action
    """'step': a gradient step followed; 'stop': none (see stop_reason); 'skip': the
    loss, gradient or stepped weights were not finite, so the last good LoRA was restored."""
    grad_norm: float | None
    """Global LoRA gradient norm before clipping; None when no backward pass ran."""
    stop_reason: StopReason | None
    seconds: float


@dataclass
class TTOResult:
    """Everything one optimization produced."""

    history: list[StepRecord]
    stop_reason: StopReason | None
    best_index: int | None
    """History index of the iterate the final video uses (None: none was evaluated)."""
    best_loss: float
    nan_skips: int
    cost: CostRecord
    video: torch.Tensor | None = None
    """(F, 3, H, W) in [0, 1] from the full sampler, when asked for."""
    noise_index: int = 0
    """Which of the seed's draws the run kept (0 unless noise_candidates > 1)."""
    noise_losses: tuple[float, ...] = ()
    """Spec loss of each candidate draw's one-step prediction (empty for one draw)."""

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary (no tensors) for traces and reports."""
        return {
            "history": [asdict(r) for r in self.history],
            "stop_reason": self.stop_reason,
            "best_index": self.best_index,
            "best_loss": self.best_loss,
            "nan_skips": self.nan_skips,
            "cost": self.cost.to_dict(),
            "noise_index": self.noise_index,
            "noise_losses": list(self.noise_losses),
        }


STATE_FORMAT = 1


def _fingerprint(noise: torch.Tensor) -> list[float | int]:
    # Shape and two moments: enough to tell a different seed or prompt size apart.
    return [*noise.shape, float(noise.double().sum()), float(noise.double().square().sum())]


def _number(x: float | torch.Tensor) -> float:
    return float(x.detach()) if isinstance(x, torch.Tensor) else float(x)


def _records(result: RewardResult) -> tuple[TermRecord, ...]:
    return tuple(
        TermRecord(
            name=t.name,
            role=str(t.role),
            loss=_number(t.loss),
            weight=_number(t.weight),
            p_yes=None if t.p_yes is None else _number(t.p_yes),
            passed=None if t.passed is None else bool(t.passed),
        )
        for t in result.terms
    )


class TestTimeOptimizer:
    """Optimizes the reasoner's LoRA for one condition; see the module docstring.

    Construction resets the LoRA to a fresh one and draws the noise. The caller
    owns the reasoner: when done with the task, reset or remove its LoRA
    (the methods in `reasoner.methods` do).
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        reasoner: VideoReasoner,
        reward_fn: RewardFn,
        config: TTOConfig | None = None,
        *,
        prompt: str,
        image: torch.Tensor | None = None,
        seed: int = 0,
    ) -> None:
        self.reasoner = reasoner
        self.config = cfg = config or TTOConfig()
        video_frames = reasoner.config.video_model.num_frames
        if cfg.num_frames > video_frames:
            raise ConfigError(
                f"tto.num_frames (K={cfg.num_frames}) is more than the {video_frames} frames the "
                f"video model makes; set tto.num_frames ≤ {video_frames} (and compile the spec "
                "for the same K)."
            )
        self.reward_fn = reward_fn

        self.seed = seed
        self._seconds = 0.0
        self._forward_passes = 0
        reasoner.lora.reset()  # a fresh LoRA adds zero: the candidates are the base model's
        # One noise sample for the whole task: the LoRA learns to map *this* ε to
        # a video that satisfies the spec, and the final sampler reuses it.
        with torch.no_grad():
            self.cond = reasoner.encode(prompt, image)
        self.noise_losses: list[float] = []
        """Spec loss of each candidate noise's one-step prediction (empty for one draw)."""
        # (1, C, F', H', W')
        self.noise_index, self.noise = (
            self._pick_noise() if cfg.noise_candidates > 1 else (0, self._noise_at(0))
        )

        self.params = [p for p in reasoner.lora.trainable_parameters()]
        if not self.params:
            raise ValueError("The reasoner's LoRA has no trainable parameters; attach one first.")
        self.optimizer = OPTIMIZERS[cfg.optimizer](self.params, cfg.lr, cfg.weight_decay)

        self.history: list[StepRecord] = []
        self.steps_taken = 0
        """Step attempts so far, skipped ones included: what `max_steps` limits."""
        self.iterate = 0
        """Accepted gradient steps in the current LoRA."""
        self.nan_skips = 0
        self.stop_reason: StopReason | None = None
        self.last_frames: torch.Tensor | None = None
        """Detached K frames (K, 3, H, W) of the last evaluated iterate, for inspection."""
        self._nan_streak = 0
        self._samples = 0
        self._best: tuple[int, float, list[torch.Tensor]] | None = None
        self._last_good = self._snapshot()

    # ---- the noise -----------------------------------------------------------

    def _noise_at(self, index: int) -> torch.Tensor:
        """The `index`-th draw of the seed's generator (0: the base model's noise)."""
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        for _ in range(index):
            self.reasoner.initial_noise(generator)
        return self.reasoner.initial_noise(generator)

    @torch.no_grad()
    def _pick_noise(self) -> tuple[int, torch.Tensor]:
        """The candidate draw whose one-step prediction has the lowest spec loss: its
        index and the noise. Records every candidate's loss in `noise_losses`."""
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        best: tuple[int, torch.Tensor] | None = None
        best_loss = math.inf
        t0 = time.perf_counter()
        with ForwardCounter(self.reasoner.transformer) as counter:
            for index in range(self.config.noise_candidates):
                noise = self.reasoner.initial_noise(generator)
                latent = self.reasoner.predict_latent(noise, self.cond, grad="first")
                frames = sample_frames(
                    self.reasoner.decode(latent, which="surrogate"), self.config.num_frames
                )
                loss = float(self.reward_fn(frames).total)
                loss = loss if math.isfinite(loss) else math.inf
                # Strictly lower: ties (and all-infinite) keep the earliest draw.
                if best is None or loss < best_loss:
                    best, best_loss = (index, noise), loss
                self.noise_losses.append(loss)
        self._seconds += time.perf_counter() - t0
        self._forward_passes += counter.count
        assert best is not None  # noise_candidates >= 1
        return best

    # ---- state helpers -------------------------------------------------------

    def _weights(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def _load_weights(self, weights: list[torch.Tensor]) -> None:
        # In place, so the optimizer keeps pointing at the same tensors.
        for p, w in zip(self.params, weights, strict=True):
            p.copy_(w)

    def _snapshot(self) -> tuple[list[torch.Tensor], dict]:
        # deepcopy clones the optimizer's moment tensors; state_dict() alone aliases them.
        return self._weights(), copy.deepcopy(self.optimizer.state_dict())

    def _restore(self, snapshot: tuple[list[torch.Tensor], dict]) -> None:
        weights, opt_state = snapshot
        self._load_weights(weights)
        self.optimizer.load_state_dict(copy.deepcopy(opt_state))

    @property
    def done(self) -> bool:
        """True once no more steps can run (step, time or NaN budget spent).

        A threshold stop is not final: after `set_reward` (or even without), `run`
        evaluates the current iterate again and continues if it is above τ.
        """
        return self.stop_reason in ("max_steps", "time_budget", "nan")

    @property
    def best_index(self) -> int | None:
        return None if self._best is None else self._best[0]

    # ---- the loop ------------------------------------------------------------

    def set_reward(self, reward_fn: RewardFn) -> None:
        """Replace the spec between bursts; the LoRA and optimizer state carry on.

        Losses under different specs are not comparable, so the best iterate is
        chosen again among iterates scored by the new spec.
        """
        self.reward_fn = reward_fn
        self._best = None

    def run(self, steps: int) -> list[StepRecord]:
        """Up to `steps` more gradient steps; returns the records this burst added."""
        if steps < 0:
            raise ValueError(f"run(steps={steps}): steps must be ≥ 0.")
        if self.done:
            return []
        self.stop_reason = None  # a threshold stop is re-checked on the current iterate
        start = len(self.history)
        with ForwardCounter(self.reasoner.transformer) as counter:
            t0 = time.perf_counter()
            for _ in range(steps):
                if self._out_of_budget(t0):
                    break
                record = self._evaluate()
                if record.stop_reason is not None:
                    break
            # The N-th step's result gets its own (closing) evaluation, so the last
            # iterate can be the best one and the history shows where the loop ended.
            spent = self.stop_reason is None and self.steps_taken >= self.config.max_steps
            if spent and not self._out_of_budget(t0):
                self._evaluate()
            self._seconds += time.perf_counter() - t0
        self._forward_passes += counter.count
        return self.history[start:]

    def run_to_end(self) -> list[StepRecord]:
        """Run until τ, N steps, the time budget or the NaN budget stops the loop."""
        return self.run(max(self.config.max_steps - self.steps_taken, 0))

    def _out_of_budget(self, t0: float) -> bool:
        budget = self.config.time_budget_s
        if budget is not None and self._seconds + (time.perf_counter() - t0) >= budget:
            self.stop_reason = "time_budget"
            return True
        return False

    def _evaluate(self) -> StepRecord:
        """Score the current iterate; then stop, step, or skip and restore."""
        cfg = self.config
        t0 = time.perf_counter()
        iterate = self.iterate

        # 1. One-step clean latent from the kept noise, with gradients into the LoRA.
        latent = self.reasoner.predict_latent(self.noise, self.cond, grad=cfg.grad_steps)
        # 2. Surrogate decode (F, 3, H, W) in [0, 1]; 3. K frames, graph kept (K, 3, H, W).
        frames = sample_frames(self.reasoner.decode(latent, which="surrogate"), cfg.num_frames)
        # 4. Spec loss on the K frames.
        result = self.reward_fn(frames)
        loss = result.total
        self.last_frames = frames.detach()
        loss_value = float(loss.detach())
        finite = math.isfinite(loss_value)

        stop_reason: StopReason | None = None
        action: Action = "step"
        grad_norm: float | None = None
        if finite and (self._best is None or loss_value < self._best[1]):
            self._best = (len(self.history), loss_value, self._weights())
        checks_pass = not cfg.stop_needs_checks or all(
            t.passed for t in result.terms if t.role == "check" and t.passed is not None
        )
        if finite and cfg.tau is not None and loss_value <= cfg.tau and checks_pass:
            stop_reason, action = "threshold", "stop"
        elif self.steps_taken >= cfg.max_steps:
            stop_reason, action = "max_steps", "stop"

        if action == "step":
            if finite:
                # 5. Gradient step on the LoRA only; the base weights are frozen.
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = float(
                    torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip or math.inf)
                )
                finite = math.isfinite(grad_norm)
                if finite:
                    self.optimizer.step()
                    # One device sync for all tensors, not one per parameter.
                    finite = bool(torch.stack([p.isfinite().all() for p in self.params]).all())
            self.optimizer.zero_grad(set_to_none=True)
            self.steps_taken += 1
            if finite:
                self.iterate += 1
                self._nan_streak = 0
                self._last_good = self._snapshot()
            else:
                # A non-finite loss, gradient or stepped weight: drop this step and go
                # back to the last iterate that was good, optimizer moments included.
                action = "skip"
                self._restore(self._last_good)
                self.nan_skips += 1
                self._nan_streak += 1
                if self._nan_streak >= cfg.max_nan_skips:
                    stop_reason = "nan"

        record = StepRecord(
            index=len(self.history),
            iterate=iterate,
            spec_version=self.reward_fn.version,
            loss=loss_value if math.isfinite(loss_value) else math.nan,
            terms=_records(result),
            action=action,
            grad_norm=grad_norm,
            stop_reason=stop_reason,
            seconds=time.perf_counter() - t0,
        )
        self.history.append(record)
        self.stop_reason = stop_reason
        return record

    # ---- resuming ------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything a rebuilt optimizer needs to continue bit-identically.

        Plain data and tensors only (`torch.save` / `torch.load(weights_only=True)`).
        The noise and conditioning are not stored: a rebuild with the same
        reasoner, prompt, image and seed recomputes them, and `load_state_dict`
        checks the noise against a fingerprint. The reward is the caller's:
        `set_reward` the current spec before loading.
        """
        best = self._best
        return {
            "format": STATE_FORMAT,
            "noise_fingerprint": _fingerprint(self.noise),
            "noise_index": self.noise_index,
            "noise_losses": list(self.noise_losses),
            "params": self._weights(),
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "last_good": {"params": self._last_good[0], "optimizer": self._last_good[1]},
            "best": None
            if best is None
            else {"index": best[0], "loss": best[1], "params": best[2]},
            "history": [asdict(r) for r in self.history],
            "steps_taken": self.steps_taken,
            "iterate": self.iterate,
            "nan_skips": self.nan_skips,
            "nan_streak": self._nan_streak,
            "stop_reason": self.stop_reason,
            "last_frames": self.last_frames,
            "seconds": self._seconds,
            "forward_passes": self._forward_passes,
            "samples": self._samples,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from `state_dict()` of an optimizer built the same way."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(
                f"optimizer state has format {state.get('format')!r}; this version reads "
                f"{STATE_FORMAT}. Start the task again instead of resuming."
            )
        # The candidates were scored by the spec current at the rebuild; the saved run
        # may have picked under another one. Its pick is the seed's draw it names.
        index = state.get("noise_index", 0)
        if index != self.noise_index:
            self.noise_index, self.noise = index, self._noise_at(index)
        self.noise_losses = list(state.get("noise_losses", []))
        if state["noise_fingerprint"] != _fingerprint(self.noise):
            raise ValueError(
                "the saved optimizer state was made with different noise: rebuild the "
                "optimizer with the same reasoner, prompt, image and seed before loading it."
            )
        self._load_weights(state["params"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        good = state["last_good"]
        self._last_good = ([w.clone() for w in good["params"]], copy.deepcopy(good["optimizer"]))
        best = state["best"]
        self._best = None if best is None else (best["index"], best["loss"], best["params"])
        self.history = [
            StepRecord(**{**r, "terms": tuple(TermRecord(**t) for t in r["terms"])})
            for r in state["history"]
        ]
        self.steps_taken = state["steps_taken"]
        self.iterate = state["iterate"]
        self.nan_skips = state["nan_skips"]
        self._nan_streak = state["nan_streak"]
        self.stop_reason = state["stop_reason"]
        self.last_frames = state["last_frames"]
        self._seconds = state["seconds"]
        self._forward_passes = state["forward_passes"]
        self._samples = state["samples"]

    # ---- the final video -----------------------------------------------------

    @torch.no_grad()
    def final_video(self) -> torch.Tensor:
        """(F, 3, H, W) in [0, 1]: full sampler + full decoder, same noise, chosen LoRA.

        The chosen LoRA is the best evaluated iterate (`keep="best"`) or the
        current one; the current iterate is put back afterwards, so the loop
        can go on.
        """
        current = self._weights()
        if self.config.keep == "best" and self._best is not None:
            self._load_weights(self._best[2])
        t0 = time.perf_counter()
        try:
            with ForwardCounter(self.reasoner.transformer) as counter:
                video = self.reasoner.sample(self.noise, self.cond)
        finally:
            self._load_weights(current)
        self._seconds += time.perf_counter() - t0
        self._forward_passes += counter.count
        self._samples += 1
        return video

    @property
    def cost(self) -> CostRecord:
        return CostRecord(
            wall_seconds=self._seconds,
            vgm_forward_passes=self._forward_passes,
            optimization_steps=self.iterate,
            samples=self._samples,
        )

    def result(self, final_video: bool = False) -> TTOResult:
        """The history so far; with `final_video=True`, also the full-sampler video."""
        video = self.final_video() if final_video else None
        best = self._best
        return TTOResult(
            history=list(self.history),
            stop_reason=self.stop_reason,
            best_index=best[0] if best is not None else None,
            best_loss=best[1] if best is not None else math.nan,
            nan_skips=self.nan_skips,
            cost=self.cost,
            video=video,
            noise_index=self.noise_index,
            noise_losses=tuple(self.noise_losses),
        )
