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
    import torch

    from agent.config import AgentConfig
    from evals.batch.methods import BatchMethod
    from reasoner.spec import RewardSpec

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


def _frame(image: torch.Tensor | None) -> Any:
    from evals.video_io import to_uint8

    if image is None:
        raise ConfigError("this method needs the first frame; the instance has none")
    return to_uint8(image)


class OfflineSpecWriter:
    """The spec the offline teacher writes first, read from the instruction and first frame."""

    def __init__(self) -> None:
        from reasoner.cost import TeacherUsage

        self._usage = TeacherUsage()

    @property
    def usage(self) -> Any:
        return self._usage

    def write_spec(self, prompt: str, image: torch.Tensor | None) -> RewardSpec:
        from agent.offline_reading import read_task, spec_for
        from reasoner.cost import TeacherUsage
        from reasoner.spec import RewardSpec

        self._usage = self._usage + TeacherUsage(calls=1)
        return RewardSpec.model_validate(spec_for(read_task(prompt, _frame(image))))


class TeacherPrompter:
    """A model teacher as a one-shot helper: writes a spec, rewrites or critiques a prompt.

    It speaks the teacher's own interface (`reply(messages, tools, budget_s)`), so
    retries, timeouts and token counts are the teacher client's. A spec that
    fails validation goes back to the teacher with the reason, a bounded number
    of times.
    """

    def __init__(self, teacher: Any, budget_s: float, max_attempts: int = 3) -> None:
        self.teacher, self.budget_s, self.max_attempts = teacher, budget_s, max_attempts

    @property
    def usage(self) -> Any:
        return self.teacher.usage

    def _user(self, text: str, frames: list[Any]) -> dict[str, Any]:
        from evals.ruler import image_part

        parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
        parts += [image_part(frame, "png") for frame in frames]
        return {"role": "user", "content": parts}

    def write_spec(self, prompt: str, image: torch.Tensor | None) -> RewardSpec:
        from reasoner.spec import RewardSpec, explain_validation_error
        from tools.registry import tool_schemas

        tools = [t for t in tool_schemas() if t["function"]["name"] == "write_reward_spec"]
        messages: list[dict[str, Any]] = [
            self._user(
                f"Task: {prompt}\nThe image is the first frame. Call write_reward_spec once with "
                "a goal question, 1-3 process questions and, where geometry matters, checks.",
                [] if image is None else [_frame(image)],
            )
        ]
        problem = "no write_reward_spec call"
        for _ in range(self.max_attempts):
            reply = self.teacher.reply(messages, tools, self.budget_s)
            calls = [c for c in reply.tool_calls if c.name == "write_reward_spec"]
            if calls:
                try:
                    return RewardSpec.model_validate_json(calls[0].arguments)
                except ValidationError as err:
                    problem = explain_validation_error(err)
            messages += [
                {"role": "assistant", "content": reply.content or "(no spec)"},
                {"role": "user", "content": f"That spec cannot be used: {problem}. Try again."},
            ]
        raise ConfigError(
            f"the teacher wrote no valid spec in {self.max_attempts} tries: {problem}"
        )

    def rewrite(self, prompt: str, image: torch.Tensor | None) -> str:
        text = (
            "Rewrite this instruction for a video generation model: state the start, every "
            "move and the end explicitly, keeping every rule. Answer with the prompt only.\n\n"
            f"{prompt}"
        )
        reply = self.teacher.reply(
            [self._user(text, [] if image is None else [_frame(image)])], [], self.budget_s
        )
        return reply.content.strip() or prompt

    def critique(self, prompt: str, frames: torch.Tensor) -> str:
        from evals.video_io import to_uint8

        text = (
            f"These frames were generated from the prompt:\n{prompt}\n"
            "Say briefly what the video gets wrong about the instruction."
        )
        reply = self.teacher.reply([self._user(text, list(to_uint8(frames)))], [], self.budget_s)
        return reply.content.strip()


@dataclass
class IncludeOnly:
    """A spec writer whose specs keep only the terms the setup optimizes (`scorer.include`).

    `best_of_n` picks by the compiled spec; with `include: checks` (no VQA model)
    its questions must go, as the agent's own compile leaves them out.
    """

    writer: Any
    include: Literal["all", "queries", "checks"]

    @property
    def usage(self) -> Any:
        return self.writer.usage

    def write_spec(self, prompt: str, image: torch.Tensor | None) -> RewardSpec:
        spec = self.writer.write_spec(prompt, image)
        if self.include == "queries":
            return spec.model_copy(update={"checks": []})
        if self.include == "checks":
            if not any(check.role == "goal" for check in spec.checks):
                raise ConfigError(
                    "scorer.include is 'checks' but the spec has no goal check to pick by; "
                    "load a VQA scorer (scorer.source) or use include: all"
                )
            return spec.model_copy(update={"goal": None, "process": [], "verifiers": []})
        return spec


@dataclass(frozen=True)
class MethodFactory:
    """Builds one named method in the process that runs it (picklable)."""

    name: Literal["base", "best_of_n", "solver", "teacher"]
    agent_path: str
    options: dict[str, Any]

    def __call__(self) -> BatchMethod:
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
