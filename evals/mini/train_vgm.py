"""Train the mini video model (mini VGM) from scratch, reproducibly, in one command.

    python -m evals.mini.train_vgm            # or: vlm-teacher train vgm

Recipe (docs/mini-models.md explains the choices):

1. **Flow matching** (rectified flow, as Wan is trained): a pixel-space
   `WanTransformer3DModel` learns the velocity v = noise - x0 on the solution
   videos of the mini world's train split, conditioned as Wan2.2-TI2V is (the
   first frame is the clean condition at timestep 0, the instruction goes
   through a small UMT5 trained with it). Noise levels are uniform in (0, 1],
   plus a share at exactly 1 (the level the one-step prediction is read from).
   An EMA of the weights is the result.
2. **Step distillation** into the 4-step sampler the reasoner uses: the EMA
   model (teacher) solves the flow ODE from fixed noise with many Euler steps;
   the student (initialised from it) learns, at each of the sampler's noise
   levels on the straight line between that noise and the teacher's endpoint,
   the velocity that lands on the endpoint. Then the one-step prediction
   x0_hat = z1 - v(z1, 1, c) from pure noise is already the sample, and the
   4-step sampler agrees with it — what the test-time optimization relies on.

Every random draw comes from a generator seeded by (seed, stage, step), and
batches are a pure function of the step, so a run stopped at any point and
resumed from its checkpoint ends with the same weights. The draws are made on
the CPU and moved to the training device (`--device cuda` trains on a GPU), so
a GPU run sees the same data and noise as a CPU run; only its float sums differ.
(On a GPU some kernels sum in a varying order, so there a resumed run, like a second
run, ends with weights equal up to float noise rather than bit for bit.)
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

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
)

from evals.mini.checkpoints import TimeLimit, save_atomic
from evals.mini.device import device_option, training_device, use_tf32_matmuls
from evals.mini.options import (
    CheckpointEveryOption,
    DataWorkersOption,
    MaxMinutesOption,
    TrainingDeviceOption,
    minutes_to_seconds,
)
from evals.mini.paths import MINI_VGM_DIR, REPO_CONFIG
from evals.mini.vgm_data import (
    Batch,
    DemoStream,
    StepBatches,
    build_mini_tokenizer,
    instruction_words,
)
from evals.mini.vgm_model import (
    VgmArchitecture,
    batched_velocity,
    build_models,
    embed_prompts,
    encode_prompts,
    euler_sample,
    save_model_folder,
)
from evals.tasks import FAMILIES, resolve_families
from reasoner.flow import make_scheduler, sampler_sigmas

# Offsets that keep the two stages' train seeds apart (the train split has 1e6 seeds).
FLOW_FIRST_SEED = 0
DISTILL_FIRST_SEED = 500_000


class VgmTrainConfig(BaseModel):
    """The whole recipe of the mini VGM; the defaults are the shipped model's."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seed of the init and of every noise draw.")
    architecture: VgmArchitecture = Field(
        default_factory=VgmArchitecture, description="Model sizes."
    )
    families: list[str] = Field(
        default_factory=lambda: list(FAMILIES), description="Mini-world families trained on."
    )
    size: int = Field(32, description="Frame size in pixels (square).")
    num_frames: int = Field(9, description="Frames per video (4k+1).")
    max_sequence_length: int = Field(
        48, ge=8, description="Text tokens (the longest instruction is ~35)."
    )
    batch_size: int = Field(8, ge=1, description="Videos per optimizer step (both stages).")

    flow_steps: int = Field(10000, ge=0, description="Optimizer steps of stage 1 (flow matching).")
    flow_lr: float = Field(1e-3, gt=0, description="Peak AdamW learning rate of stage 1.")
    warmup_steps: int = Field(50, ge=0, description="Linear warm-up steps (both stages).")
    min_lr_ratio: float = Field(
        0.1, ge=0, le=1, description="Cosine decay ends at this fraction of the peak rate."
    )
    grad_clip: float = Field(1.0, gt=0, description="Gradient-norm clip.")
    sigma_one_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Share of stage-1 examples at noise level exactly 1 (the rest uniform).",
    )
    ema_decay: float = Field(
        0.995,
        ge=0,
        lt=1,
        description="EMA decay of the weights (warmed up as min(decay, (1+t)/(10+t))).",
    )
    train_text_encoder: bool = Field(
        True,
        description=(
            "Train the UMT5 text encoder with the transformer. Wan's cross-attention has no "
            "positions on the text side, so which colour is the agent and which the goal "
            "must be in the text states themselves; a frozen random-init encoder barely mixes "
            "context (swapping two colour words left the loss unchanged), a trained one does."
        ),
    )
    object_weight: float = Field(
        10.0,
        ge=1,
        description=(
            "Loss weight of the pixels that matter (an object's colour, or different from the "
            "first frame) against 1 for static background and walls. Objects are ~7% of the "
            "pixels: unweighted, they are learned last."
        ),
    )

    distill_pairs: int = Field(
        1024, ge=0, description="(noise, teacher endpoint) pairs made for stage 2."
    )
    teacher_steps: int = Field(
        8, ge=1, description="Euler steps of the teacher's ODE solve (uniform in sigma)."
    )
    distill_steps: int = Field(500, ge=0, description="Optimizer steps of stage 2.")
    distill_lr: float = Field(3e-4, gt=0, description="Peak AdamW learning rate of stage 2.")
    distill_sigma_one_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description=(
            "Share of stage-2 examples at sigma 1 (the one-step prediction); the rest are "
            "spread over the sampler's other levels."
        ),
    )
    sampler_sigmas: list[float] = Field(
        default_factory=lambda: [1.0, 0.75, 0.5, 0.25],
        description="Unshifted sampler levels the student is distilled for (= mini.yaml).",
    )
    flow_shift: float = Field(1.0, gt=0, description="Flow shift of the sampler (= mini.yaml).")

    @model_validator(mode="after")
    def _check(self) -> VgmTrainConfig:
        resolve_families(self.families)  # an unknown name is an error naming the known ones
        if self.distill_steps and not self.distill_pairs:
            raise ValueError("distill_steps > 0 needs distill_pairs > 0")
        if self.distill_pairs and self.distill_pairs < self.batch_size:
            raise ValueError(f"distill_pairs must be at least batch_size ({self.batch_size})")
        return self


def read_sampler(config_path: Path) -> tuple[list[float], float]:
    """(sampler_sigmas, flow_shift) of a reasoner YAML, so training matches inference."""
    data = yaml.safe_load(config_path.read_text())
    vm = data["video_model"]
    return list(vm["sampler_sigmas"]), float(vm["flow_shift"])


def _generator(seed: int, stage: int, step: int) -> torch.Generator:
    # One generator per (stage, step): resuming needs no saved RNG state.
    return torch.Generator().manual_seed(seed * 1_000_003 + stage * 100_003 + step)


def _lr(step: int, total: int, peak: float, warmup: int, floor: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


@dataclass(frozen=True)
class FlowExample:
    """Stage 1's batch of one step with the noise it is trained at."""

    batch: Batch
    sigmas: torch.Tensor
    """(B,) noise levels in (0, 1]."""
    noise: torch.Tensor
    """Gaussian noise shaped like `batch.videos`."""


class FlowExamples:
    """Stage 1's example of step `step`: a pure function of the step, and picklable.

    The noise is drawn here, with the batch, so that worker processes
    (`--data-workers`) draw it ahead of the loop too: at a GPU's batch sizes the
    draw (on the CPU, so that a GPU run sees a CPU run's noise) costs as much as
    the step. The same generator makes the same draws in any process.
    """

    def __init__(self, stream: DemoStream, seed: int, sigma_one_share: float) -> None:
        self.stream = stream
        self.seed = seed
        self.sigma_one_share = sigma_one_share

    def __call__(self, step: int) -> FlowExample:
        batch = self.stream.batch(step)
        gen = _generator(self.seed, 1, step)
        b = batch.videos.shape[0]
        sigmas = torch.rand(b, generator=gen).clamp_min(1e-3)
        sigmas[torch.rand(b, generator=gen) < self.sigma_one_share] = 1.0
        noise = torch.randn(batch.videos.shape, generator=gen)
        return FlowExample(batch, sigmas, noise)


class _Ema:
    """Exponential moving average of a module's float parameters."""

    def __init__(self, module: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        # Warm-up: early on the average must not be dominated by the initial weights.
        decay = min(self.decay, (1 + step) / (10 + step))
        floats: list[str] = []
        state = module.state_dict()
        for key, value in state.items():
            if value.is_floating_point():
                floats.append(key)
            else:
                self.shadow[key].copy_(value)
        # One multi-tensor update instead of a kernel launch per tensor (on a GPU the
        # launches, not the arithmetic, bound a step of this small model).
        torch._foreach_lerp_(
            [self.shadow[k] for k in floats], [state[k] for k in floats], 1 - decay
        )


def emphasis_weights(target: torch.Tensor, factor: float) -> torch.Tensor:
    """(B, 1, F-1, H, W) per-pixel loss weights of frames 1.. of `target` (B, 3, F, H, W).

    `factor` where a pixel shows an object (neither the white background nor a
    black wall) or differs from the first frame (something moved or changed
    there), 1 elsewhere; normalised to mean 1 over the batch.
    """
    frames = target[:, :, 1:]
    white = (frames > 0.9).all(dim=1, keepdim=True)
    black = (frames < -0.9).all(dim=1, keepdim=True)
    changed = (frames - target[:, :, :1]).abs().amax(dim=1, keepdim=True) > 0.1
    weights = 1.0 + (factor - 1.0) * ((~white & ~black) | changed).float()
    return weights / weights.mean()


LOSS_READ_EVERY = 10
"""Steps between reads of the training loss (each read waits for a GPU to catch up)."""


class Trainer:
    """Runs the two stages with checkpoints in `work_dir`, then writes the model folder."""

    def __init__(
        self,
        cfg: VgmTrainConfig,
        work_dir: Path,
        threads: int = 2,
        checkpoint_every: int = 50,
        log: Callable[[str], None] = print,
        show_progress: bool = True,
        device: str = "cpu",
        time_limit_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        data_workers: int = 0,
    ) -> None:
        self.cfg = cfg
        self.work_dir = Path(work_dir)
        # How the run executes, not what it computes: a run may resume with others
        # (a checkpoint written on a GPU resumes on the CPU and the other way round).
        self.threads = threads
        if data_workers < 0:
            raise ValueError(f"data_workers must be 0 or more, got {data_workers}")
        self.data_workers = data_workers
        """Processes rendering stage 1's batches ahead (0: the training loop renders them)."""
        self.device = training_device(device)
        use_tf32_matmuls(self.device)
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {checkpoint_every}")
        self.checkpoint_every = checkpoint_every
        # A job's time limit: `train` stops at the first checkpoint past it (a rerun resumes).
        self.time_limit = TimeLimit(time_limit_s, clock)
        self.log = log
        self.show_progress = show_progress
        self.tokenizer = build_mini_tokenizer(
            instruction_words(cfg.families), model_max_length=cfg.max_sequence_length
        )
        self.transformer, self.text_encoder = build_models(
            cfg.architecture, self.tokenizer, cfg.seed
        )
        self.text_encoder.requires_grad_(cfg.train_text_encoder)
        self.transformer.to(self.device)
        self.text_encoder.to(self.device)
        # Everything the optimizer, the EMA and the checkpoints cover.
        self.trainable = torch.nn.ModuleDict(
            {"transformer": self.transformer, "text_encoder": self.text_encoder}
        )
        self.history: dict[str, list[float]] = {"flow": [], "distill": []}
        scheduler = make_scheduler(cfg.flow_shift)
        self.student_sigmas = sampler_sigmas(scheduler, len(cfg.sampler_sigmas), cfg.sampler_sigmas)
        self.seconds: dict[str, float] = {}
        self._noise: torch.Tensor | None = None
        """Stage 2's starting noises of every pair, drawn on first use (`_pair_noise`)."""

    # -- shared pieces ---------------------------------------------------------

    def _embed(self, prompts: list[str]) -> torch.Tensor:
        embed = embed_prompts if torch.is_grad_enabled() else encode_prompts
        return embed(prompts, self.tokenizer, self.text_encoder, self.cfg.max_sequence_length)

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            disable=not self.show_progress,
        )

    def _checkpoint_path(self) -> Path:
        return self.work_dir / "checkpoint.pt"

    def _save_checkpoint(
        self, stage: str, step: int, opt: torch.optim.Optimizer, ema: _Ema
    ) -> None:
        save_atomic(
            {
                "config": self.cfg.model_dump(),
                "stage": stage,
                "step": step,
                "model": self.trainable.state_dict(),
                "ema": ema.shadow,
                "optimizer": opt.state_dict(),
                "history": self.history,
                "seconds": self.seconds,
            },
            self._checkpoint_path(),
        )

    def _load_checkpoint(self) -> dict[str, Any] | None:
        path = self._checkpoint_path()
        if not path.is_file():
            return None
        # On the CPU: the model and optimizer copy their parts to their own device, and
        # an optimizer's step count must stay on the CPU (on a GPU, AdamW would sync on it).
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["config"] != self.cfg.model_dump():
            raise ValueError(
                f"{path} was written by a different recipe; delete {self.work_dir} or pass "
                "the same configuration to resume"
            )
        return state

    def _optimizer(self, lr: float) -> torch.optim.Optimizer:
        return torch.optim.AdamW(
            [p for p in self.trainable.parameters() if p.requires_grad],
            lr=lr,
            betas=(0.9, 0.99),
            weight_decay=0.0,
        )

    def _step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float) -> None:
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.trainable.parameters(), self.cfg.grad_clip)
        opt.step()

    # -- stage 1: flow matching ---------------------------------------------------

    def _flow_loss(self, example: FlowExample) -> torch.Tensor:
        """Flow-matching loss of one stage-1 example (batch and noise draws)."""
        cfg = self.cfg
        batch = example.batch
        b = batch.videos.shape[0]
        x0, sigmas, noise = (
            t.to(self.device) for t in (batch.videos, example.sigmas, example.noise)
        )
        s = sigmas.view(b, 1, 1, 1, 1)
        z = (1 - s) * x0 + s * noise
        v = batched_velocity(
            self.transformer, z, sigmas, self._embed(batch.instructions), x0[:, :, :1]
        )
        # Frame 0 is the condition: its output is thrown away, so it carries no loss.
        error = (v - (noise - x0))[:, :, 1:].square()
        return (error * emphasis_weights(x0, cfg.object_weight)).mean()

    # -- stage 2: distillation ----------------------------------------------------

    def flow_ema_path(self) -> Path:
        """Where the EMA weights that end stage 1 (the flow model, the teacher) are kept."""
        return self.work_dir / "flow_ema.pt"

    def _pairs_path(self) -> Path:
        return self.work_dir / "distill_pairs.pt"

    @torch.no_grad()
    def _make_pairs(self, ema_state: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Teacher endpoints of the ODE from fixed noise, for `distill_pairs` train tasks."""
        path = self._pairs_path()
        if path.is_file():
            return torch.load(path, weights_only=False)
        cfg = self.cfg
        self.trainable.load_state_dict(ema_state)
        self.trainable.eval()
        stream = DemoStream(
            cfg.batch_size, cfg.families, DISTILL_FIRST_SEED, cfg.size, cfg.num_frames
        )
        teacher_sigmas = torch.linspace(1.0, 0.0, cfg.teacher_steps + 1).tolist()
        chunks = math.ceil(cfg.distill_pairs / cfg.batch_size)
        instructions: list[str] = []
        firsts, endpoints = [], []
        start = time.perf_counter()
        with self._progress() as bar:
            task = bar.add_task("stage 2a: teacher ODE", total=chunks, loss=0.0)
            for chunk in range(chunks):
                batch = stream.batch(chunk)
                noise = torch.randn(batch.videos.shape, generator=_generator(cfg.seed, 2, chunk))
                out = euler_sample(
                    self.transformer,
                    noise.to(self.device),
                    teacher_sigmas,
                    self._embed(batch.instructions),
                    batch.videos[:, :, :1].to(self.device),
                )
                instructions += batch.instructions
                firsts.append(batch.videos[:, :, :1].to(torch.float16))
                # The pairs stay on the CPU (and on disk): batches are moved as drawn.
                endpoints.append(out.to("cpu", torch.float16))
                bar.update(task, advance=1)
        pairs = {
            "instructions": instructions[: cfg.distill_pairs],
            "first_frames": torch.cat(firsts)[: cfg.distill_pairs],
            "endpoints": torch.cat(endpoints)[: cfg.distill_pairs],
        }
        self.seconds["teacher_ode"] = time.perf_counter() - start
        save_atomic(pairs, path)
        return pairs

    def _pair_noise(
        self, indices: torch.Tensor, shape: tuple[int, ...], num_pairs: int
    ) -> torch.Tensor:
        """The noise the teacher's ODE started from, for pairs `indices` of `num_pairs`.

        The noise of pair i is the i-th draw of its chunk's generator: redrawn rather
        than stored with the pairs (it is as large as the endpoints), once per run,
        since redrawing a whole chunk for every pair of every step costs more than the
        step itself when batches are large (a GPU recipe).
        """
        cfg = self.cfg
        if self._noise is None or self._noise.shape[1:] != shape:
            chunks = math.ceil(num_pairs / cfg.batch_size)
            self._noise = torch.cat(
                [
                    torch.randn((cfg.batch_size, *shape), generator=_generator(cfg.seed, 2, c))
                    for c in range(chunks)
                ]
            )
        return self._noise[indices]

    def _distill_loss(self, step: int, pairs: dict[str, Any]) -> torch.Tensor:
        cfg = self.cfg
        gen = _generator(cfg.seed, 3, step)
        n = len(pairs["instructions"])
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen)
        target = pairs["endpoints"][idx].float()
        first = pairs["first_frames"][idx].float()
        noise = self._pair_noise(idx, tuple(target.shape[1:]), n)
        target, first, noise = (t.to(self.device) for t in (target, first, noise))
        levels = self.student_sigmas[:-1]  # the sampler's shifted levels, 1.0 first
        if len(levels) > 1:
            pick = torch.randint(1, len(levels), (cfg.batch_size,), generator=gen)
        else:
            pick = torch.zeros(cfg.batch_size, dtype=torch.long)
        pick[torch.rand(cfg.batch_size, generator=gen) < cfg.distill_sigma_one_share] = 0
        sigmas = levels[pick].to(self.device)
        s = sigmas.view(-1, 1, 1, 1, 1)
        # The straight line from the noise to the teacher's endpoint: the path a
        # sampler whose every step predicts the endpoint walks.
        z = (1 - s) * target + s * noise
        prompts = [pairs["instructions"][i] for i in idx.tolist()]
        v = batched_velocity(self.transformer, z, sigmas, self._embed(prompts), first)
        error = (v - (noise - target))[:, :, 1:].square()
        return (error * emphasis_weights(target, cfg.object_weight)).mean()

    # -- the loop -----------------------------------------------------------------

    def _run_stage(
        self,
        name: str,
        label: str,
        total: int,
        peak_lr: float,
        loss_fn: Callable[[int], torch.Tensor],
        start_step: int,
        opt: torch.optim.Optimizer,
        ema: _Ema,
    ) -> bool:
        """Steps `start_step`..`total`; False when the time limit stopped it at a checkpoint."""
        cfg = self.cfg
        self.trainable.train()
        started = time.perf_counter()
        # The losses are read (a host-device sync on a GPU) every few steps, not every
        # step, so that the CPU renders the next batch while the GPU is still busy.
        pending: list[torch.Tensor] = []
        with self._progress() as bar:
            task = bar.add_task(label, total=total, completed=start_step, loss=0.0)
            for step in range(start_step, total):
                loss = loss_fn(step)
                lr = _lr(step, total, peak_lr, cfg.warmup_steps, cfg.min_lr_ratio)
                self._step(opt, loss, lr)
                ema.update(self.trainable, step)
                pending.append(loss.detach())
                at_checkpoint = (step + 1) % self.checkpoint_every == 0 or step + 1 == total
                if at_checkpoint or len(pending) == LOSS_READ_EVERY:
                    losses = torch.stack(pending).tolist()
                    self.history[name].extend(losses)
                    bar.update(task, advance=len(losses), loss=losses[-1])
                    pending = []
                if at_checkpoint:
                    self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
                    started = time.perf_counter()
                    self._save_checkpoint(name, step + 1, opt, ema)
                    recent = self.history[name][-self.checkpoint_every :]
                    self.log(
                        f"{name} step {step + 1}/{total}: loss {sum(recent) / len(recent):.4f}, "
                        f"{self.seconds[name]:.0f} s in this stage; checkpoint saved"
                    )
                    if step + 1 < total and self.time_limit.reached():
                        self._log_time_stop(f"{name} step {step + 1}/{total}")
                        return False
        return True

    def _log_time_stop(self, where: str) -> None:
        self.log(self.time_limit.stop_message(where, self.work_dir))

    def _stage_state(
        self, lr: float, state: dict[str, Any] | None
    ) -> tuple[torch.optim.Optimizer, _Ema]:
        """A stage's optimizer and EMA: fresh, or as the checkpoint `state` left them."""
        opt = self._optimizer(lr)
        ema = _Ema(self.trainable, self.cfg.ema_decay)
        if state is not None:
            opt.load_state_dict(state["optimizer"])
            ema.shadow = {k: v.to(self.device) for k, v in state["ema"].items()}
        return opt, ema

    def train(self) -> bool:
        """Both stages, resuming from `work_dir/checkpoint.pt` when there is one.

        True when the recipe is done; False when the time limit stopped it first (at a
        checkpoint, or before the teacher ODE, which has none): a rerun resumes there.
        """
        cfg = self.cfg
        self.time_limit.start()
        torch.set_num_threads(self.threads)
        state = self._load_checkpoint()
        stage, step = ("flow", 0) if state is None else (state["stage"], state["step"])
        if state is not None:
            self.trainable.load_state_dict(state["model"])
            self.history = state["history"]
            self.seconds = state["seconds"]
            self.log(f"resuming {stage} at step {step} from {self._checkpoint_path()}")

        flow_examples = FlowExamples(
            DemoStream(cfg.batch_size, cfg.families, FLOW_FIRST_SEED, cfg.size, cfg.num_frames),
            cfg.seed,
            cfg.sigma_one_share,
        )
        if stage == "flow":
            trained_now = step < cfg.flow_steps  # this run takes flow steps
            opt, ema = self._stage_state(cfg.flow_lr, state)
            examples = StepBatches(flow_examples, step, cfg.flow_steps, self.data_workers)
            finished = self._run_stage(
                "flow",
                "stage 1: flow matching",
                cfg.flow_steps,
                cfg.flow_lr,
                lambda s: self._flow_loss(examples(s)),
                step,
                opt,
                ema,
            )
            del examples  # ends its worker processes
            if not finished:
                return False
            flow_ema = ema.shadow
            # The checkpoint moves on to stage 2; keep stage 1's result, so that stage 2 can
            # be studied or redone without the hour of stage 1 again.
            save_atomic({k: v.cpu() for k, v in flow_ema.items()}, self.flow_ema_path())
            stage, step, state = "distill", 0, None
            if cfg.distill_steps == 0:
                self.trainable.load_state_dict(flow_ema)
                return True
            if trained_now and self.time_limit.reached() and not self._pairs_path().is_file():
                # Stage 1's last checkpoint and flow_ema.pt are on disk; the rerun starts
                # the teacher ODE (which keeps no checkpoint of its own) with a full budget.
                # Only after flow steps of this run: else a rerun would stop here for ever.
                self._log_time_stop("the end of stage 1")
                return False
            pairs = self._make_pairs(flow_ema)
            # The student starts as the teacher (the EMA weights).
            self.trainable.load_state_dict(flow_ema)
        else:
            pairs = self._make_pairs({})  # stage 1 finished: the pairs are on disk

        opt, ema = self._stage_state(cfg.distill_lr, state)
        finished = self._run_stage(
            "distill",
            "stage 2: distillation",
            cfg.distill_steps,
            cfg.distill_lr,
            lambda s: self._distill_loss(s, pairs),
            step,
            opt,
            ema,
        )
        if not finished:
            return False
        self.trainable.load_state_dict(ema.shadow)
        return True

    def export(self, out_dir: Path) -> Path:
        """Write the diffusers model folder and `training.json` (recipe, losses, seconds)."""
        self.trainable.eval().to("cpu")  # the folder loads on any machine
        save_model_folder(Path(out_dir), self.transformer, self.text_encoder, self.tokenizer)
        record = {
            "recipe": self.cfg.model_dump(),
            "parameters": sum(p.numel() for p in self.transformer.parameters()),
            "text_encoder_parameters": sum(p.numel() for p in self.text_encoder.parameters()),
            "seconds": {k: round(v, 1) for k, v in self.seconds.items()},
            "final_loss": {
                k: round(sum(v[-50:]) / max(len(v[-50:]), 1), 5) for k, v in self.history.items()
            },
            "loss_every_50_steps": {
                k: [round(sum(v[i : i + 50]) / len(v[i : i + 50]), 5) for i in range(0, len(v), 50)]
                for k, v in self.history.items()
            },
        }
        (Path(out_dir) / "training.json").write_text(json.dumps(record, indent=1) + "\n")
        return Path(out_dir)


def train_vgm(
    cfg: VgmTrainConfig,
    out_dir: Path = MINI_VGM_DIR,
    work_dir: Path = Path("runs/train_vgm"),
    threads: int = 2,
    show_progress: bool = True,
    device: str = "cpu",
    time_limit_s: float | None = None,
    data_workers: int = 0,
    checkpoint_every: int = 50,
) -> Path | None:
    """Train by `cfg` (resuming from `work_dir`) and write the model folder to `out_dir`.

    None when `time_limit_s` stopped the run first: nothing is exported, and the same
    call again resumes from the checkpoint in `work_dir`. `data_workers` processes
    render the training batches ahead (worth it on a GPU; the batches are the same).
    A checkpoint is written every `checkpoint_every` steps of each stage (on a GPU,
    where a step takes milliseconds, every few hundred).
    """
    trainer = Trainer(
        cfg,
        work_dir,
        threads=threads,
        show_progress=show_progress,
        device=device,
        time_limit_s=time_limit_s,
        data_workers=data_workers,
        checkpoint_every=checkpoint_every,
    )
    if not trainer.train():
        return None
    return trainer.export(out_dir)


def default_config(reasoner_yaml: Path = REPO_CONFIG) -> VgmTrainConfig:
    """The shipped recipe, with the sampler read from the reasoner config it serves."""
    sigmas, shift = read_sampler(reasoner_yaml)
    return VgmTrainConfig(sampler_sigmas=sigmas, flow_shift=shift)


def main(
    out: Annotated[Path, typer.Option(help="Model folder to write.")] = MINI_VGM_DIR,
    work_dir: Annotated[
        Path, typer.Option(help="Checkpoints and distillation pairs (resumable).")
    ] = Path("runs/train_vgm"),
    config: Annotated[
        Path | None, typer.Option(help="YAML overriding fields of VgmTrainConfig.")
    ] = None,
    threads: Annotated[
        int, typer.Option(min=1, help="torch CPU threads (1 is faster on a busy machine).")
    ] = 2,
    device: TrainingDeviceOption = "cpu",
    max_minutes: MaxMinutesOption = None,
    data_workers: DataWorkersOption = 0,
    checkpoint_every: CheckpointEveryOption = 50,
) -> None:
    """Train the mini video model by its documented recipe (resumes from --work-dir)."""
    device_option(device)
    cfg = default_config()
    if config is not None:
        data = {**cfg.model_dump(), **(yaml.safe_load(config.read_text()) or {})}
        cfg = VgmTrainConfig.model_validate(data)
    limit = minutes_to_seconds(max_minutes)
    path = train_vgm(
        cfg,
        out,
        work_dir,
        threads=threads,
        device=device,
        time_limit_s=limit,
        data_workers=data_workers,
        checkpoint_every=checkpoint_every,
    )
    if path is None:
        typer.echo(f"stopped at the time limit; nothing written to {out} yet")
        return
    typer.echo(f"wrote {path}")


if __name__ == "__main__":
    typer.run(main)
