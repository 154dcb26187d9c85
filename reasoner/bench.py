"""Time one test-time optimization step of the reasoner.

One step = one-step (or last/all-step) latent prediction -> surrogate decode ->
K uniformly sampled frames -> a simple differentiable loss (mean squared
distance to a fixed random video) -> backward -> AdamW step on the LoRA. The
first `warmup` steps are run but not timed; the result reports the median.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from reasoner.config import ReasonerConfig
from reasoner.frames import sample_frames
from reasoner.video_model import VideoReasoner


class BenchConfig(BaseModel):
    """What `vlm-teacher bench step` measures (its CLI flags)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(5, ge=1, description="Timed optimization steps (the median is reported).")
    warmup: int = Field(1, ge=0, description="Untimed steps first (allocator, kernels).")
    frames: int = Field(24, ge=1, description="K frames sampled uniformly for the loss.")
    learning_rate: float = Field(5e-5, gt=0, description="AdamW learning rate on the LoRA.")
    grad: Literal["first", "last", "all"] = Field(
        "first", description="Which sampler steps carry gradient (see VideoReasoner)."
    )
    decoder: Literal["surrogate", "full"] = Field("surrogate", description="Decoder in the graph.")
    prompt: str = Field(
        "the red ball rolls to the blue square without touching the walls",
        description="Instruction the model is conditioned on.",
    )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "cuda_max_allocated"
    # ru_maxrss: kilobytes on Linux, bytes on macOS; the whole process's peak.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "cpu_max_rss"


def run_step_bench(cfg: ReasonerConfig, bench: BenchConfig) -> dict[str, Any]:
    """Build the reasoner, run warmup + timed steps, return the measurements."""
    started = time.perf_counter()
    reasoner = VideoReasoner.from_config(cfg)
    build_seconds = time.perf_counter() - started
    device, vm = reasoner.device, cfg.video_model

    generator = torch.Generator().manual_seed(cfg.seed)
    image = torch.rand(3, vm.height, vm.width, generator=generator) if reasoner.is_ti2v else None
    cond = reasoner.encode(bench.prompt, image)
    noise = reasoner.initial_noise(generator)
    k = min(bench.frames, vm.num_frames)
    target = torch.rand(k, 3, vm.height, vm.width, generator=generator).to(device)

    params = reasoner.lora.trainable_parameters()
    optimizer = torch.optim.AdamW(params, lr=bench.learning_rate)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    seconds, losses = [], []
    for step in range(bench.warmup + bench.steps):
        _synchronize(device)
        tic = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        latent = reasoner.predict_latent(noise, cond, grad=bench.grad)
        frames = sample_frames(reasoner.decode(latent, which=bench.decoder), k)
        loss = (frames - target).square().mean()
        loss.backward()
        optimizer.step()
        _synchronize(device)
        if step >= bench.warmup:
            seconds.append(time.perf_counter() - tic)
            losses.append(loss.item())

    peak, peak_kind = _peak_memory(device)
    return {
        "source": vm.source,
        "kind": vm.kind,
        "device": str(device),
        "dtype": vm.dtype,
        "size": [vm.num_frames, vm.height, vm.width],
        "grad": bench.grad,
        "decoder": cfg.decoder.surrogate if bench.decoder == "surrogate" else "full",
        "frames_in_loss": k,
        "seconds_per_step": statistics.median(seconds),
        "seconds_all": seconds,
        "peak_memory_bytes": peak,
        "peak_memory_kind": peak_kind,
        "params_trained": sum(p.numel() for p in params),
        "params_transformer": sum(
            p.numel() for n, p in reasoner.transformer.named_parameters() if "lora_" not in n
        ),
        "losses": losses,
        "build_seconds": round(build_seconds, 2),
        "torch_threads": torch.get_num_threads(),
    }
