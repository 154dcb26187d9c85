"""The `--device` option of the mini models' scripts, checked before any work starts."""

from __future__ import annotations

import torch
import typer

from reasoner.errors import ConfigError
from reasoner.loading import check_device


def training_device(device: str) -> torch.device:
    """`device` if this machine has it, else a `ConfigError` that names `--device`."""
    return check_device(device, "--device", "pass --device cpu")


def use_tf32_matmuls(device: torch.device) -> None:
    """On a GPU, let float32 matrix products run on the tensor cores (TF32).

    The mini models train in float32; on an H100 TF32 products are several times
    faster, with a relative error near 1e-3 that the training noise dwarfs. A CPU
    has no TF32, so nothing changes there (and CPU runs stay bit-reproducible).
    """
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def device_option(device: str) -> torch.device:
    """`training_device`, failing as a usage error of the command line."""
    try:
        return training_device(device)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="'--device'") from None
