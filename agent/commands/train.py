"""`vlm-teacher train ...`: train the mini world's models, one command per model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from evals.mini.options import (
    CheckpointEveryOption,
    DataWorkersOption,
    MaxMinutesOption,
    TrainingDeviceOption,
)

app = typer.Typer(help="Train the mini world's models from scratch.", no_args_is_help=True)


@app.command("vgm")
def vgm(
    out: Annotated[
        Path | None, typer.Option(help="Model folder to write (default: the shipped one).")
    ] = None,
    work_dir: Annotated[
        Path, typer.Option(help="Checkpoints and distillation pairs; a rerun resumes here.")
    ] = Path("runs/train_vgm"),
    config: Annotated[
        Path | None, typer.Option(help="YAML overriding fields of the recipe (VgmTrainConfig).")
    ] = None,
    threads: Annotated[
        int, typer.Option(min=1, help="torch CPU threads (1 is faster on a busy machine).")
    ] = 2,
    device: TrainingDeviceOption = "cpu",
    max_minutes: MaxMinutesOption = None,
    data_workers: DataWorkersOption = 0,
    checkpoint_every: CheckpointEveryOption = 50,
) -> None:
    """Train the mini video model by its documented recipe (docs/mini-models.md)."""
    from evals.mini.paths import MINI_VGM_DIR
    from evals.mini.train_vgm import main

    main(
        out=out or MINI_VGM_DIR,
        work_dir=work_dir,
        config=config,
        threads=threads,
        device=device,
        max_minutes=max_minutes,
        data_workers=data_workers,
        checkpoint_every=checkpoint_every,
    )
