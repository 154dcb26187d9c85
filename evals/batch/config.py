"""Settings of one batch evaluation: what to run, where, and on which backend.

`EvalConfig` is the `eval:` part of a `configs/eval/*.yaml` file; CLI flags
(`--suite`, `--methods`, `--out`, `--limit`, `--families`, `--seed`,
`--backend`, `--workers`) override it. How the methods themselves are built
(video model, teacher, optimization budgets) is not here: the CLI builds them
from its own config and hands the runner a factory per method name.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evals.ruler import JudgeConfig
from reasoner.errors import ConfigError

# Method names become folder names of the output layouts.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class RayOptions(BaseModel):
    """How `--backend ray` places one task per instance on the cluster."""

    model_config = ConfigDict(extra="forbid")

    address: str | None = Field(
        default=None,
        description="Ray cluster address ('auto' or 'ray://host:10001'); None starts a local Ray.",
    )
    num_cpus_per_task: float = Field(default=1.0, gt=0, description="CPUs reserved per task.")
    num_gpus_per_task: float = Field(
        default=0.0, ge=0, description="GPUs reserved per task (fractions share a GPU)."
    )
    max_in_flight: int | None = Field(
        default=None, ge=1, description="Tasks submitted at once; None: twice the cluster's CPUs."
    )


class EvalConfig(BaseModel):
    """One batch: a suite, methods, an output folder, a backend."""

    model_config = ConfigDict(extra="forbid")

    suite: str | None = Field(
        default=None,
        description="'mini:<split>', 'vbvr:<question dir>' or 'ruler:<rows .jsonl/.json>'.",
    )
    methods: list[str] = Field(
        default_factory=lambda: ["base", "best_of_n", "teacher"],
        min_length=1,
        description="Method names, in the order each instance runs them.",
    )
    out: str | None = Field(
        default=None, description="Batch folder: results.jsonl, videos, traces, reports."
    )
    limit: int | None = Field(default=None, ge=1, description="Run only the first N instances.")
    families: list[str] | None = Field(
        default=None, description="Only these families (mini, VBVR generator) or RULER categories."
    )
    seed: int = Field(
        default=0, ge=0, description="Batch seed; each instance's seed derives from it."
    )
    size: int | None = Field(
        default=None,
        ge=8,
        description="Frame size in px of generated videos (mini tasks are rendered at it, input "
        "images resized to it). None: the CLI takes it from the video model config.",
    )
    num_frames: int | None = Field(
        default=None,
        ge=1,
        description="Frames per video (4k+1). None: from the video model config.",
    )
    video_fps: float = Field(default=16.0, gt=0, description="Frame rate written to output videos.")
    backend: Literal["local", "ray", "inprocess"] = Field(
        default="local",
        description="'local': worker processes on this machine; 'ray': one Ray task per instance; "
        "'inprocess': sequentially in the driver (debugging).",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        description="Local worker processes; None: one per visible GPU, else CPUs / threads.",
    )
    devices: list[str] = Field(
        default_factory=list,
        description="GPU ids for local workers (worker i gets devices[i % n]); empty: all visible.",
    )
    threads_per_worker: int = Field(
        default=1,
        ge=1,
        description="torch CPU threads per worker. Keep it equal across backends: CPU results "
        "are bitwise reproducible only at the same thread count.",
    )
    job_timeout_s: float | None = Field(
        default=None, gt=0, description="Wall seconds one instance may take (local backend only)."
    )
    retry_failed: bool = Field(
        default=False, description="On a rerun, run failed records again (else they are kept)."
    )
    fsync: bool = Field(default=True, description="fsync the results file after each record.")
    ray: RayOptions = Field(default_factory=RayOptions, description="Ray placement.")
    judge: JudgeConfig | None = Field(
        default=None, description="The checklist judge; needed by 'ruler:' suites."
    )

    @field_validator("methods")
    @classmethod
    def _method_names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not _NAME.fullmatch(n)]
        if bad:
            raise ConfigError(f"method names {bad} must be letters, digits, '_', '-' or '.'")
        if len(set(names)) != len(names):
            raise ConfigError(f"methods {names} name one method twice")
        return names

    @field_validator("num_frames")
    @classmethod
    def _wan_frames(cls, n: int | None) -> int | None:
        if n is not None and n % 4 != 1:
            raise ConfigError(f"num_frames={n}: Wan videos have 4k+1 frames (e.g. 17)")
        return n

    @model_validator(mode="after")
    def _combinations(self) -> EvalConfig:
        if self.job_timeout_s is not None and self.backend != "local":
            raise ConfigError(
                f"job_timeout_s is enforced by the local backend only; unset it for "
                f"backend '{self.backend}'"
            )
        if self.suite is not None and self.suite.startswith("ruler:") and self.judge is None:
            raise ConfigError(
                "a 'ruler:' suite is scored by a checklist judge: add a `judge:` section "
                "(model, base_url) to the eval config"
            )
        return self
