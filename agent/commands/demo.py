"""`vlm-teacher demo`: the reasoner's step benchmark on the tiny CPU config.

It exercises the whole differentiable path — one-step prediction, surrogate
decode, loss, LoRA update — in seconds, with no weights. `make demo` runs the
main job instead: `vlm-teacher run --config configs/agent/mini.yaml --task ...`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "reasoner" / "tiny.yaml"


def demo() -> None:
    """Benchmark reasoner steps on the tiny CPU config (`make demo` runs the main job)."""
    from agent.commands.bench import run_step

    if not TINY_CONFIG.is_file():
        typer.echo(
            f"error: {TINY_CONFIG} is missing; run the demo from a repository checkout", err=True
        )
        raise typer.Exit(code=2)
    typer.echo(f"reasoner step benchmark on {TINY_CONFIG.name} (CPU):")
    result = run_step(TINY_CONFIG, bench_options={"steps": 3, "warmup": 1}, threads=1)
    typer.echo(json.dumps(result))
