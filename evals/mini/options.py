"""Command-line options the mini models' trainers share (typer only: cheap to import)."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

TrainingDeviceOption = Annotated[
    str, typer.Option(help="Where to train: 'cpu', or 'cuda' / 'cuda:N' for a GPU.")
]
"""`--device` of the trainers; `evals.mini.device.device_option` checks the value."""

EvalSplit = Literal["test", "val"]
"""The splits a mini model is measured on: held-out test tasks, or val tasks for tuning."""

EvalSplitOption = Annotated[
    EvalSplit, typer.Option(help="Task split: 'test' (held out) or 'val' (for tuning).")
]
"""`--split` of the measuring commands; typer refuses any other value."""

MaxMinutesOption = Annotated[
    float | None,
    typer.Option(
        min=0,
        help=(
            "Stop at the first checkpoint after this many minutes (a job's time limit); "
            "the same command again resumes there. Default: run to the end."
        ),
    ),
]


DataWorkersOption = Annotated[
    int,
    typer.Option(
        min=0,
        help=(
            "Processes that render the training batches ahead of the loop (on a GPU the "
            "rendering would otherwise stand between steps). The batches are the same."
        ),
    ),
]


CheckpointEveryOption = Annotated[
    int,
    typer.Option(
        min=1,
        help=(
            "Steps between checkpoints (and --max-minutes checks); the weights are the same "
            "for any value. A few hundred on a GPU, where writing one costs more than a step."
        ),
    ),
]


def minutes_to_seconds(minutes: float | None) -> float | None:
    """`--max-minutes` as the trainers' `time_limit_s`."""
    return None if minutes is None else minutes * 60
