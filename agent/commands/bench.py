"""`vlm-teacher bench ...`: measurements of the reasoner core."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Benchmarks of the reasoner core.", no_args_is_help=True)


def run_step(
    config: Path,
    overrides: dict[str, object] | None = None,
    bench_options: dict[str, object] | None = None,
    threads: int | None = None,
) -> dict[str, object]:
    """Load a reasoner YAML, apply CLI overrides, run the step benchmark."""
    import torch

    from reasoner.bench import BenchConfig, run_step_bench
    from reasoner.config import load_reasoner_config, reasoner_config_from_dict

    cfg = load_reasoner_config(config)
    if overrides:
        data = cfg.model_dump()
        data["video_model"].update(overrides)
        cfg = reasoner_config_from_dict(data, where=f"{config} with CLI overrides")
    if threads is not None:
        torch.set_num_threads(threads)
    return run_step_bench(cfg, BenchConfig(**(bench_options or {})))


@app.command("step")
def step(
    config: Annotated[
        Path, typer.Option("--config", help="Reasoner YAML, e.g. configs/reasoner/tiny.yaml.")
    ],
    steps: Annotated[int, typer.Option(min=1, help="Timed steps (median reported).")] = 5,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed steps first.")] = 1,
    frames: Annotated[int, typer.Option(min=1, help="K frames sampled for the loss.")] = 24,
    lr: Annotated[float, typer.Option(min=0.0, help="AdamW learning rate.")] = 5e-5,
    grad: Annotated[
        str, typer.Option(help="Steps with gradient: first (one-step), last or all.")
    ] = "first",
    decoder: Annotated[str, typer.Option(help="Decoder in the graph: surrogate or full.")] = (
        "surrogate"
    ),
    device: Annotated[str | None, typer.Option(help="Override video_model.device.")] = None,
    dtype: Annotated[str | None, typer.Option(help="Override video_model.dtype.")] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch CPU threads (1 is fastest for tiny models).")
    ] = None,
) -> None:
    """Time one optimization step and print one JSON line.

    The line holds seconds per step (median), peak memory and the number of
    parameters trained.
    """
    from pydantic import ValidationError

    from reasoner.errors import ConfigError

    overrides = {k: v for k, v in {"device": device, "dtype": dtype}.items() if v is not None}
    options = {
        "steps": steps,
        "warmup": warmup,
        "frames": frames,
        "learning_rate": lr,
        "grad": grad,
        "decoder": decoder,
    }
    try:
        result = run_step(config, overrides, options, threads)
    except (ConfigError, ValidationError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(json.dumps(result))
