"""Flow-matching maths of Wan's samplers, written out so gradients can pass through.

Wan is trained with rectified flow: z_sigma = (1 - sigma) * x0 + sigma * noise,
and the transformer predicts the velocity v = noise - x0. Hence

    x0_hat = z_sigma - sigma * v            (clean-latent prediction)
    z_next = z_sigma + (sigma_next - sigma) * v   (Euler step)

which are exactly `UniPCMultistepScheduler.convert_model_output` for
`flow_prediction` and `FlowMatchEulerDiscreteScheduler.step`. The timestep the
transformer sees is sigma * num_train_timesteps (1000).
"""

from __future__ import annotations

import torch
from diffusers import FlowMatchEulerDiscreteScheduler

NUM_TRAIN_TIMESTEPS = 1000


def make_scheduler(flow_shift: float) -> FlowMatchEulerDiscreteScheduler:
    """The scheduler whose sigma schedule the few-step sampler follows."""
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=NUM_TRAIN_TIMESTEPS, shift=flow_shift
    )


def sampler_sigmas(
    scheduler: FlowMatchEulerDiscreteScheduler,
    num_inference_steps: int,
    sigmas: list[float] | None = None,
) -> torch.Tensor:
    """Shifted sigmas of one rollout, (num_inference_steps + 1,) float32, ending at 0.

    `set_timesteps` is called again on every rollout: the scheduler keeps a
    step index, and a stale one would silently start mid-schedule.
    """
    if sigmas is None:
        scheduler.set_timesteps(num_inference_steps)
    else:
        scheduler.set_timesteps(sigmas=sigmas)
    return scheduler.sigmas.detach().to(dtype=torch.float32, device="cpu").clone()


def clean_prediction(latents: torch.Tensor, velocity: torch.Tensor, sigma: float) -> torch.Tensor:
    """x0_hat = z_sigma - sigma * v."""
    return latents - sigma * velocity


def euler_step(
    latents: torch.Tensor, velocity: torch.Tensor, sigma: float, sigma_next: float
) -> torch.Tensor:
    """z_next = z_sigma + (sigma_next - sigma) * v."""
    return latents + (sigma_next - sigma) * velocity
