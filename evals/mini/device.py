"""The `--device` option of the mini models' scripts, checked before any work starts."""

from __future__ import annotations

import torch
import typer

from reasoner.errors import ConfigError
from reasoner.loading import check_device


def device_option(device: str) -> torch.device:
    """`device` if this machine has it, else a usage error that names `--device`."""
    try:
        return check_device(device, "--device", "pass --device cpu")
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="'--device'") from None
