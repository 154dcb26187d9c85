"""The `--device` option of the mini models' scripts, checked before any work starts."""

from __future__ import annotations

import torch
import typer

from reasoner.errors import ConfigError
from reasoner.loading import check_device


def training_device(device: str) -> torch.device:
    """`device` if this machine has it, else a `ConfigError` that names `--device`."""
    return check_device(device, "--device", "pass --device cpu")


def device_option(device: str) -> torch.device:
    """`training_device`, failing as a usage error of the command line."""
    try:
        return training_device(device)
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="'--device'") from None
