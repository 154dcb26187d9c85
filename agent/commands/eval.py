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

Variants: the file's `variants:` section names more methods, each one of the
above with its own agent-config overrides and options; their names work in
`--methods` like the built-in ones and name their results:

  variants:
    best_of_5:  {method: best_of_n, best_of_n: {n: 5}}
    teacher_vqa: {method: teacher, agent: {scorer: {include: queries}}}

Overrides are deep-merged into the agent config and validated there. The video
model and the VQA scorer are built once per worker process and shared by every
method, so a variant may change only the light parts (teacher policy, scorer
`include`, tto, budgets, tools), never `reasoner` or the scorer's model.
`agent_overrides:` applies such overrides to every method of the file, under
each variant's own (e.g. `{keep_session_states: false}` for a large batch).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from evals.batch.config import EvalConfig
from evals.mini.experiment import ExperimentPlan
from reasoner.config import format_validation_error
from reasoner.errors import ConfigError

if TYPE_CHECKING:
    from agent.config import AgentConfig
    from evals.batch.methods import BatchMethod
    from evals.results import FailureKind

METHOD_NAMES = ("base", "best_of_n", "solver", "teacher")
# Method names become folder names of the batch (as in evals.batch.config).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MethodKind = Literal["base", "best_of_n", "solver", "teacher"]
# Agent-config keys the shared heavy components are built from (None: the whole section).
SHARED_KEYS: dict[str, tuple[str, ...] | None] = {
    "reasoner": None,
    "scorer": ("source", "dtype", "device", "vqa"),
}


class BestOfNOptions(BaseModel):
    """How `best_of_n` samples and picks."""

    model_config = ConfigDict(extra="forbid")

    n: int | Literal["matched"] = Field(
        default=4,
        description="Samples per instance; 'matched': set by `vlm-teacher experiment` to the "
        "teacher's compute (see evals.mini.experiment.matched_n).",
    )
    num_frames: int | None = Field(
        default=None, ge=1, description="K frames the spec scores per sample; None: tto.num_frames."
    )

    @field_validator("n")
    @classmethod
    def _positive(cls, n: int | str) -> int | str:
        if isinstance(n, int) and n < 1:
            raise ValueError(f"best_of_n.n must be >= 1 or 'matched', got {n}")
        return n


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


class VariantConfig(BaseModel):
    """A named method: a built-in one with its own agent overrides and options."""

    model_config = ConfigDict(extra="forbid")

    method: MethodKind = Field(description="The built-in method it runs.")
    agent: dict[str, Any] = Field(
        default_factory=dict,
        description="Agent-config overrides, deep-merged (e.g. {tto: {grad_steps: last}}); "
        "not `reasoner` or the scorer's model, which every method shares.",
    )
    best_of_n: dict[str, Any] | None = Field(
        default=None, description="best_of_n options over the file's (method best_of_n only)."
    )
    solver: dict[str, Any] | None = Field(
        default=None, description="solver options over the file's (method solver only)."
    )

    @model_validator(mode="after")
    def _options_match_method(self) -> VariantConfig:
        for section in ("best_of_n", "solver"):
            if getattr(self, section) is not None and self.method != section:
                raise ValueError(
                    f"`{section}` options are for method {section}, but this variant runs "
                    f"{self.method}: remove them"
                )
        return self


class EvalFileConfig(BaseModel):
    """A `configs/eval/*.yaml` file."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(description="Agent config YAML the methods are built from (relative path).")
    agent_overrides: dict[str, Any] = Field(
        default_factory=dict,
        description="Agent-config overrides for every method of the batch, under each "
        "variant's own (e.g. {keep_session_states: false}); not `reasoner` or the scorer's "
        "model, which the agent file sets.",
    )
    methods: MethodOptions = Field(default_factory=MethodOptions, description="Method options.")
    variants: dict[str, VariantConfig] = Field(
        default_factory=dict, description="Named method variants, usable in eval.methods."
    )
    eval: EvalConfig = Field(default_factory=EvalConfig, description="The batch.")
    experiment: ExperimentPlan | None = Field(
        default=None, description="What `vlm-teacher experiment` runs and tabulates."
    )

    @field_validator("variants")
    @classmethod
    def _variant_names(cls, variants: dict[str, VariantConfig]) -> dict[str, VariantConfig]:
        for name in variants:
            if name in METHOD_NAMES:
                raise ValueError(
                    f"variant {name!r} has the name of a built-in method; choose another name"
                )
            if not _NAME.fullmatch(name):
                raise ValueError(
                    f"variant name {name!r}: use letters, digits, '_', '-' or '.' (it names "
                    "folders of the batch)"
                )
        return variants


def load_eval_file(path: Path) -> tuple[EvalFileConfig, Path]:
    """The eval YAML (laid over the one its `extends:` names) and its agent config's path."""
    from agent.config import read_yaml_with_extends

    if not path.is_file():
        raise ConfigError(f"eval config {path} does not exist; see configs/eval/ for examples")
    # `agent:` is relative to the file that names it, also when another file extends it.
    data = read_yaml_with_extends(path, "eval config", ("agent",))
    try:
        config = EvalFileConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, str(path))) from None
    return config, Path(config.agent).resolve()


@dataclass(frozen=True)
class ResolvedMethod:
    """What a method name stands for: a built-in method, options, agent overrides."""

    name: str
    method: MethodKind
    options: dict[str, Any]
    """`MethodOptions` as plain data."""
    agent_patch: dict[str, Any]


def _shared_keys_touched(patch: Mapping[str, Any]) -> list[str]:
    touched = []
    for section, keys in SHARED_KEYS.items():
        if section not in patch:
            continue
        value = patch[section]
        if keys is None or not isinstance(value, Mapping):
            touched.append(section)
        else:
            touched += [f"{section}.{key}" for key in keys if key in value]
    return touched


def resolve_method(
    name: str,
    file: EvalFileConfig,
    agent_path: Path,
    teacher_kind: str,
    best_of_n_n: int | None = None,
) -> ResolvedMethod:
    """The built-in method or variant `name`, validated against the agent config.

    `best_of_n_n` sets `best_of_n.n` (how the experiment fills in 'matched').
    Raises `ConfigError` naming the variant and what to change.
    """
    from agent.config import deep_merge, load_agent_config

    options = file.methods.model_dump()
    variant = file.variants.get(name)
    if variant is None and name not in METHOD_NAMES:
        known = [*METHOD_NAMES, *file.variants]
        raise ConfigError(f"unknown methods [{name!r}]; choose from {', '.join(known)}")
    kind: MethodKind = variant.method if variant is not None else name  # type: ignore[assignment]
    label = f"method {name!r}"
    touched = _shared_keys_touched(file.agent_overrides)
    if touched:
        raise ConfigError(
            f"agent_overrides sets {', '.join(touched)}: the video model and the VQA scorer "
            "are built once per worker from the agent file. Set them in the agent file."
        )
    patch: dict[str, Any] = dict(file.agent_overrides)
    if variant is not None:
        label = f"variant {name!r} (method {kind})"
        touched = _shared_keys_touched(variant.agent)
        if touched:
            raise ConfigError(
                f"{label} overrides {', '.join(touched)}: the video model and the VQA scorer "
                "are built once per worker and shared by every method. Use a separate eval "
                "config whose agent file sets them."
            )
        patch = deep_merge(patch, variant.agent)
        for section in ("best_of_n", "solver"):
            given = getattr(variant, section)
            if given is not None:
                options[section] = {**options[section], **given}
        try:
            options = MethodOptions.model_validate(options).model_dump()
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"{label} options")) from None
    if patch:
        # Validates the merged config now, in the driver: a bad key fails here.
        config = load_agent_config(
            agent_path, patch=patch, where=f"{label} (agent {agent_path.name} + overrides)"
        )
        teacher_kind = config.teacher.kind
    if best_of_n_n is not None:
        options["best_of_n"]["n"] = best_of_n_n
    if kind == "best_of_n" and options["best_of_n"]["n"] == "matched":
        raise ConfigError(
            f"{label} has best_of_n.n: matched, which `vlm-teacher experiment` fills in from "
            "the teacher's wall time; give a number to run it with `vlm-teacher eval`"
        )
    if kind == "solver" and teacher_kind != "openai":
        raise ConfigError(
            f"{label} needs a model teacher to rewrite prompts (teacher.kind: "
            "openai); the offline teacher cannot"
        )
    return ResolvedMethod(name=name, method=kind, options=options, agent_patch=dict(patch))


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


@functools.cache
def _variant_config(agent_path: str, patch_json: str) -> AgentConfig:
    from agent.config import load_agent_config

    return load_agent_config(agent_path, patch=json.loads(patch_json))


@dataclass(frozen=True)
class MethodFactory:
    """Builds one named method in the process that runs it (picklable).

    The heavy components come from `components(agent_path)`, shared by every
    method of the process; a variant's `agent_patch` changes only the light
    config (and gets its own teacher client when it changes the teacher section).
    """

    method: MethodKind
    agent_path: str
    options: dict[str, Any]
    agent_patch: dict[str, Any] = field(default_factory=dict)

    def __call__(self) -> BatchMethod:
        from agent.components import build_teacher
        from agent.teacher_adapters import (
            FixedFields,
            IncludeOnly,
            OfflineSpecWriter,
            TeacherPrompter,
        )
        from evals.batch.methods import PlainMethod
        from reasoner.methods import BaseMethod, BestOfN, SolverMethod

        parts = components(self.agent_path)
        config, teacher = parts.config, parts.teacher
        if self.agent_patch:
            config = _variant_config(self.agent_path, json.dumps(self.agent_patch, sort_keys=True))
            if config.teacher != parts.config.teacher:
                teacher = build_teacher(config.teacher)
        options = MethodOptions.model_validate(self.options)
        model_teacher = config.teacher.kind == "openai"
        budget = config.budgets.wall_clock_s
        if self.method == "base":
            return PlainMethod(BaseMethod(parts.reasoner))
        if self.method == "best_of_n":
            if not isinstance(options.best_of_n.n, int):
                raise ConfigError("best_of_n.n is 'matched' but no number was filled in")
            writer = TeacherPrompter(teacher, budget) if model_teacher else OfflineSpecWriter()
            writer = IncludeOnly(writer, config.scorer.include)
            overrides = config.tools.spec_overrides.model_dump()
            writer = FixedFields(writer, overrides, config.scorer.include)
            k = options.best_of_n.num_frames or config.tto.num_frames
            return PlainMethod(
                BestOfN(
                    parts.reasoner,
                    n=options.best_of_n.n,
                    spec_writer=writer,
                    scorer=parts.scorer,
                    num_frames=k,
                )
            )
        if self.method == "solver":
            rewriter = TeacherPrompter(teacher, budget)
            return PlainMethod(SolverMethod(parts.reasoner, rewriter, rounds=options.solver.rounds))
        from agent.method import AgentMethod

        # The batch hands each call its run folder; `out_dir` is only the fallback.
        return AgentMethod(config, parts.reasoner, parts.scorer, teacher, config.out_dir)


def method_factories(
    names: list[str],
    agent_path: Path,
    file: EvalFileConfig,
    teacher_kind: str,
    best_of_n_n: Mapping[str, int] | None = None,
) -> dict[str, Callable[[], BatchMethod]]:
    """One factory per method name (built-in or variant), validated in the driver.

    `best_of_n_n` fills in `best_of_n.n` per method name (the experiment's
    compute-matched N).
    """
    factories: dict[str, Callable[[], BatchMethod]] = {}
    for name in names:
        m = resolve_method(name, file, agent_path, teacher_kind, (best_of_n_n or {}).get(name))
        factories[name] = MethodFactory(m.method, str(agent_path), m.options, m.agent_patch)
    return factories


def validate_variants(file: EvalFileConfig, agent_path: Path, teacher_kind: str) -> None:
    """Resolve every declared variant, so a bad one fails before any run starts."""
    for name, variant in file.variants.items():
        matched = variant.best_of_n is not None and variant.best_of_n.get("n") == "matched"
        resolve_method(name, file, agent_path, teacher_kind, 1 if matched else None)


def split_csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


# Options `vlm-teacher eval` and `vlm-teacher experiment` share.
FamiliesOpt = Annotated[
    str | None, typer.Option(help="Comma-separated families or RULER categories.")
]
SeedOpt = Annotated[int | None, typer.Option(min=0, help="Batch seed.")]
BackendOpt = Annotated[
    str | None, typer.Option(help="local (worker processes), ray, or inprocess.")
]
WorkersOpt = Annotated[int | None, typer.Option(min=1, help="Local worker processes.")]
RetryFailedOpt = Annotated[bool, typer.Option("--retry-failed", help="Run failed records again.")]
ProgressOpt = Annotated[bool, typer.Option(help="Show the progress bars.")]


def batch_flags(
    families: str | None,
    seed: int | None,
    backend: str | None,
    workers: int | None,
    retry_failed: bool,
) -> dict[str, Any]:
    """The shared options as `prepare_eval` flags (None: leave the file's value)."""
    return {
        "families": split_csv(families),
        "seed": seed,
        "backend": backend,
        "workers": workers,
        "retry_failed": retry_failed or None,
    }


def eval_command(
    config: Annotated[Path, typer.Option("--config", help="Eval YAML (configs/eval/*.yaml).")],
    suite: Annotated[
        str | None, typer.Option(help="mini:<split> | vbvr:<question dir> | ruler:<rows file>")
    ] = None,
    methods: Annotated[
        str | None,
        typer.Option(help="Comma-separated: base,best_of_n,solver,teacher or variant names."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Batch folder (results, videos, traces).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="First N instances only.")] = None,
    families: FamiliesOpt = None,
    seed: SeedOpt = None,
    backend: BackendOpt = None,
    workers: WorkersOpt = None,
    retry_failed: RetryFailedOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Run methods over a benchmark suite; rerunning the same command resumes it."""
    from evals.batch.runner import run_batch, summary_line

    flags = {
        "suite": suite,
        "methods": split_csv(methods),
        "out": str(out) if out is not None else None,
        "limit": limit,
        **batch_flags(families, seed, backend, workers, retry_failed),
    }
    try:
        prepared = prepare_eval(config, flags)
        factories = method_factories(
            prepared.eval.methods, prepared.agent_path, prepared.file, prepared.teacher_kind
        )
    except ConfigError as err:
        raise typer.BadParameter(str(err), param_hint="--config") from err

    summary = run_batch(
        prepared.eval, factories, show_progress=progress, failure_kinds=failure_kinds()
    )
    typer.echo(json.dumps(summary_line(summary)))


@dataclass(frozen=True)
class PreparedEval:
    """An eval file with its flags applied, checked against its agent config."""

    file: EvalFileConfig
    agent_path: Path
    teacher_kind: str
    eval: EvalConfig


def prepare_eval(config: Path, flags: Mapping[str, Any]) -> PreparedEval:
    """Load the eval file and its agent config; flags (None: unset) override `eval:`.

    Frame size and count come from the video model. Every declared variant is
    resolved, so a bad one fails before any run starts. Raises `ConfigError`.
    """
    from agent.config import load_agent_config

    file, agent_path = load_eval_file(config)
    agent = load_agent_config(agent_path)
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
    validate_variants(file, agent_path, agent.teacher.kind)
    return PreparedEval(file, agent_path, agent.teacher.kind, eval_config)


def failure_kinds() -> tuple[tuple[type[BaseException], FailureKind], ...]:
    """The agent's own errors the batch classifies (the rest by the runner)."""
    from agent.teacher import TeacherError

    return ((TeacherError, "teacher_unavailable"),)
