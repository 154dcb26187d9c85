"""`vlm-teacher experiment`: the mini-world experiment in phases, resumable, with its table.

    vlm-teacher experiment --config configs/eval/mini-experiment.yaml \\
        --per-family 50 --out runs/experiment-mini --workers 2

The eval file's `experiment:` section (`evals.mini.experiment.ExperimentPlan`)
names the tables and the methods in them (built-in methods and the file's
variants); this command builds the method factories from the file's agent
config and hands them to `evals.mini.experiment.run_experiment`, which runs the
phases and writes `experiment.md` and `experiment.json` into the batch folder.
Rerunning the same command resumes it. Also `python -m agent.commands.experiment`.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from agent.commands.eval import (
    BackendOpt,
    EvalFileConfig,
    FamiliesOpt,
    ProgressOpt,
    RetryFailedOpt,
    SeedOpt,
    WorkersOpt,
    batch_flags,
    failure_kinds,
    method_factories,
    prepare_eval,
    resolve_method,
)
from reasoner.errors import ConfigError


@dataclass(frozen=True)
class _Factories:
    """Method factories of one eval file, for a phase's names (and matched N)."""

    file: EvalFileConfig
    agent_path: Path
    teacher_kind: str

    def __call__(self, names: list[str], best_of_n_n: Mapping[str, int]) -> dict:
        return method_factories(names, self.agent_path, self.file, self.teacher_kind, best_of_n_n)


def reproduce_command(
    config: Path,
    per_family: int,
    out: str,
    families: list[str] | None,
    seed: int,
    workers: int | None,
) -> str:
    """The command line that reruns (or resumes) this experiment, for the write-up."""
    args = ["vlm-teacher", "experiment", "--config", str(config), "--per-family", str(per_family)]
    args += ["--out", out, "--seed", str(seed)]
    if families:
        args += ["--families", ",".join(families)]
    if workers is not None:
        args += ["--workers", str(workers)]
    return shlex.join(args)


def experiment_command(
    config: Annotated[
        Path, typer.Option("--config", help="Eval YAML with an `experiment:` section.")
    ] = Path("configs/eval/mini-experiment.yaml"),
    per_family: Annotated[
        int | None, typer.Option(min=1, help="Instances per family (default: the file's).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Batch folder (default: the file's).")] = None,
    families: FamiliesOpt = None,
    seed: SeedOpt = None,
    backend: BackendOpt = None,
    workers: WorkersOpt = None,
    retry_failed: RetryFailedOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Run every method and ablation of the experiment, then write its table."""
    from evals.mini.experiment import run_experiment

    flags = {
        "out": str(out) if out is not None else None,
        **batch_flags(families, seed, backend, workers, retry_failed),
    }
    try:
        prepared = prepare_eval(config, flags)
        plan = prepared.file.experiment
        if plan is None:
            raise ConfigError(
                f"{config} has no `experiment:` section; see configs/eval/mini-experiment.yaml"
            )
        if per_family is not None:
            plan = plan.model_copy(update={"per_family": per_family})
        # Every method of the plan must resolve before the first run starts.
        for name in plan.all_methods():
            matched = name == plan.matched
            method = resolve_method(
                name,
                prepared.file,
                prepared.agent_path,
                prepared.teacher_kind,
                1 if matched else None,
            )
            if matched and method.method != "best_of_n":
                raise ConfigError(
                    f"experiment.matched names {name!r}, which runs {method.method}: it must be "
                    "a best_of_n variant (best_of_n: {n: matched})"
                )
        if prepared.eval.out is None:
            raise ConfigError("no output folder: pass --out <dir> or set eval.out")
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from err

    ev = prepared.eval
    command = reproduce_command(
        config, plan.per_family, ev.out or "", ev.families, ev.seed, ev.workers
    )
    try:
        run_experiment(
            ev,
            plan,
            _Factories(prepared.file, prepared.agent_path, prepared.teacher_kind),
            command=command,
            show_progress=progress,
            failure_kinds=failure_kinds(),
            say=lambda line: typer.echo(line, err=True),
        )
    except ConfigError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err


if __name__ == "__main__":
    app = typer.Typer(add_completion=False)
    app.command()(experiment_command)
    app(sys.argv[1:])
