"""`vlm-teacher eval`: run methods over a benchmark suite, resumably, locally or on Ray.

    vlm-teacher eval --config configs/eval/mini.yaml --suite mini:test \\
        --methods base,best_of_n,teacher --out runs/eval-mini --limit 40

The config file names the agent setup the methods are built from (video model,
teacher, scorer, optimizer), the methods' own options, and the batch (`eval:`,
see `evals.batch.config.EvalConfig`); flags override the file. The batch runner
(`evals/`) knows no agent: this command hands it one factory per method name,
and the agentic teacher is the `teacher` entry.

Methods:
  base        one sample of the video model
  best_of_n   N samples, the pick by the reward spec the teacher writes (no ground truth)
  solver      the teacher rewrites the prompt (VLM-as-solver); needs a model teacher
  teacher     the agent: the teacher writes and revises the spec and drives the LoRA
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evals.batch.config import EvalConfig
from reasoner.config import format_validation_error
from reasoner.errors import ConfigError

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from evals.batch.methods import BatchMethod

METHOD_NAMES = ("base", "best_of_n", "solver", "teacher")


class BestOfNOptions(BaseModel):
    """How `best_of_n` samples and picks."""

    model_config = ConfigDict(extra="forbid")

    n: int = Field(default=4, ge=1, description="Samples per instance.")
    num_frames: int | None = Field(
        default=None, ge=1, description="K frames the spec scores per sample; None: tto.num_frames."
    )


class SolverOptions(BaseModel):
    """How `solver` rewrites the prompt."""

    model_config = ConfigDict(extra="forbid")

    rounds: int = Field(
        default=1, ge=1, description="1: one rewrite; more: critique and rewrite (VideoTPO-like)."
    )


class MethodOptions(BaseModel):
    """Options of the baselines (the agent's come from the agent config)."""

    model_config = ConfigDict(extra="forbid")

    best_of_n: BestOfNOptions = Field(default_factory=BestOfNOptions, description="best_of_n.")
    solver: SolverOptions = Field(default_factory=SolverOptions, description="solver.")


class EvalFileConfig(BaseModel):
    """A `configs/eval/*.yaml` file."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(description="Agent config YAML the methods are built from (relative path).")
    methods: MethodOptions = Field(default_factory=MethodOptions, description="Method options.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="The batch.")


def load_eval_file(path: Path) -> tuple[EvalFileConfig, Path]:
    """The eval YAML and the absolute path of the agent config it names."""
    if not path.is_file():
        raise ConfigError(f"eval config {path} does not exist; see configs/eval/ for examples")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping with `agent:` and `eval:` sections")
    try:
        config = EvalFileConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None
    agent_path = Path(config.agent)
    if not agent_path.is_absolute():
        agent_path = (path.parent / agent_path).resolve()
    return config, agent_path


# --------------------------------------------------------------------------- per process
@dataclass
class Components:
    """The heavy parts every method of one worker process shares."""

    config: AgentConfig
    reasoner: Any
    scorer: Any
    teacher: Any


@functools.cache
def components(agent_path: str) -> Components:
    """Built once per worker process: methods share one video model and one scorer."""
    from agent.components import build_reasoner, build_scorer, build_teacher
    from agent.config import load_agent_config

    config = load_agent_config(agent_path)
    return Components(
        config=config,
        reasoner=build_reasoner(config),
        scorer=build_scorer(config.scorer),
        teacher=build_teacher(config.teacher),
    )


@dataclass(frozen=True)
class MethodFactory:
    """Builds one named method in the process that runs it (picklable)."""

    name: Literal["base", "best_of_n", "solver", "teacher"]
    agent_path: str
    options: dict[str, Any]

    def __call__(self) -> BatchMethod:
        from agent.teacher_adapters import IncludeOnly, OfflineSpecWriter, TeacherPrompter
        from evals.batch.methods import PlainMethod
        from reasoner.methods import BaseMethod, BestOfN, SolverMethod

        parts = components(self.agent_path)
        options = MethodOptions.model_validate(self.options)
        model_teacher = parts.config.teacher.kind == "openai"
        budget = parts.config.budgets.wall_clock_s
        if self.name == "base":
            return PlainMethod(BaseMethod(parts.reasoner))
        if self.name == "best_of_n":
            writer = (
                TeacherPrompter(parts.teacher, budget) if model_teacher else OfflineSpecWriter()
            )
            writer = IncludeOnly(writer, parts.config.scorer.include)
            k = options.best_of_n.num_frames or parts.config.tto.num_frames
            return PlainMethod(
                BestOfN(
                    parts.reasoner,
                    n=options.best_of_n.n,
                    spec_writer=writer,
                    scorer=parts.scorer,
                    num_frames=k,
                )
            )
        if self.name == "solver":
            rewriter = TeacherPrompter(parts.teacher, budget)
            return PlainMethod(SolverMethod(parts.reasoner, rewriter, rounds=options.solver.rounds))
        from agent.method import AgentMethod

        # The batch hands each call its run folder; `out_dir` is only the fallback.
        return AgentMethod(
            parts.config, parts.reasoner, parts.scorer, parts.teacher, parts.config.out_dir
        )


def method_factories(
    names: list[str], agent_path: Path, options: MethodOptions, teacher_kind: str
) -> dict[str, Callable[[], BatchMethod]]:
    unknown = [n for n in names if n not in METHOD_NAMES]
    if unknown:
        raise ConfigError(f"unknown methods {unknown}; choose from {', '.join(METHOD_NAMES)}")
    if "solver" in names and teacher_kind != "openai":
        raise ConfigError(
            "method 'solver' needs a model teacher to rewrite prompts (teacher.kind: openai); "
            "the offline teacher cannot"
        )
    dumped = options.model_dump()
    return {n: MethodFactory(n, str(agent_path), dumped) for n in names}  # type: ignore[arg-type]


def _split(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def eval_command(
    config: Annotated[Path, typer.Option("--config", help="Eval YAML (configs/eval/*.yaml).")],
    suite: Annotated[
        str | None, typer.Option(help="mini:<split> | vbvr:<question dir> | ruler:<rows file>")
    ] = None,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated: base,best_of_n,solver,teacher.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Batch folder (results, videos, traces).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="First N instances only.")] = None,
    families: Annotated[
        str | None, typer.Option(help="Comma-separated families or RULER categories.")
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Batch seed.")] = None,
    backend: Annotated[
        str | None, typer.Option(help="local (worker processes), ray, or inprocess.")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Local worker processes.")] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run failed records again.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show the progress bar.")] = True,
) -> None:
    """Run methods over a benchmark suite; rerunning the same command resumes it."""
    from agent.config import load_agent_config
    from evals.batch.runner import run_batch, summary_line

    try:
        file, agent_path = load_eval_file(config)
        agent = load_agent_config(agent_path)
        flags = {
            "suite": suite,
            "methods": _split(methods),
            "out": str(out) if out is not None else None,
            "limit": limit,
            "families": _split(families),
            "seed": seed,
            "backend": backend,
            "workers": workers,
            "retry_failed": retry_failed or None,
        }
        video = agent.reasoner.video_model
        if video.height != video.width:
            raise ConfigError(
                f"the video model makes {video.width}x{video.height} videos; benchmark suites "
                "need square frames: set reasoner.video_model height = width"
            )
        merged = {
            "size": video.height,
            "num_frames": video.num_frames,
            **file.eval.model_dump(exclude_unset=True),
            **{k: v for k, v in flags.items() if v is not None},
        }
        try:
            eval_config = EvalConfig.model_validate(merged)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"{config} + flags")) from None
        factories = method_factories(
            eval_config.methods, agent_path, file.methods, agent.teacher.kind
        )
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from err

    from agent.teacher import TeacherError

    summary = run_batch(
        eval_config,
        factories,
        show_progress=progress,
        failure_kinds=((TeacherError, "teacher_unavailable"),),
    )
    typer.echo(json.dumps(summary_line(summary)))
