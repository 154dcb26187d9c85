"""Which teacher answers, and how patiently: the `teacher:` section of an agent config.

Swapping the teacher is a change of `model` / `base_url` here. The API key is
never stored: `api_key_env` names the environment variable that holds it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reasoner.errors import ConfigError


class OfflinePolicyConfig(BaseModel):
    """Knobs of the offline teacher's policy (see `agent.offline_teacher`)."""

    model_config = ConfigDict(extra="forbid")

    burst: int = Field(default=5, ge=1, description="LoRA steps it asks for per optimize call.")
    converge_rel: float = Field(
        default=0.02,
        ge=0,
        lt=1,
        description="A burst that lowers the loss by less than this fraction has converged.",
    )
    max_revisions: int = Field(default=2, ge=0, description="Spec revisions it may make.")
    verify_base: bool = Field(
        default=True,
        description=(
            "Verify the base model's video before the first LoRA step and accept it if every "
            "term passes (no optimization for a task the model already solves). Off with "
            "until_budget."
        ),
    )
    until_budget: bool = Field(
        default=False,
        description=(
            "Run every LoRA step of the budget before verifying and finishing: no stop on "
            "convergence or on a passing verify (the fixed-N-steps ablation; needs tto.tau: "
            "null so the optimizer does not stop either)."
        ),
    )


class TeacherConfig(BaseModel):
    """Teacher endpoint, retry policy and context limits."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["openai", "offline"] = Field(
        default="offline",
        description=(
            "`openai`: any OpenAI-compatible chat endpoint (vLLM, a hosted API); "
            "`offline`: the built-in policy that needs no model (reads the instruction)."
        ),
    )
    model: str = Field(
        default="offline-policy",
        description="Model name sent to the endpoint, e.g. `Qwen/Qwen3-VL-4B-Instruct`.",
    )
    base_url: str | None = Field(
        default=None,
        description="Endpoint base URL ending in /v1, e.g. `http://localhost:8000/v1`.",
    )
    api_key_env: str | None = Field(
        default=None,
        description=(
            "Name of the environment variable holding the API key (the key itself is "
            "never written to config, traces or logs). Unset: vLLM's placeholder `EMPTY`."
        ),
    )
    timeout_s: float = Field(
        default=120.0, gt=0, description="Seconds one HTTP request may take before it is retried."
    )
    max_attempts: int = Field(
        default=4,
        ge=1,
        le=20,
        description="HTTP attempts per turn on timeouts, dropped connections, 429 and 5xx.",
    )
    retry_wait_s: float = Field(
        default=1.0, ge=0, description="First backoff wait in seconds; doubles on each retry."
    )
    retry_wait_max_s: float = Field(
        default=20.0, ge=0, description="Longest single backoff wait in seconds."
    )
    max_malformed: int = Field(
        default=2,
        ge=0,
        le=10,
        description="Extra attempts when the endpoint answers 200 with no usable completion.",
    )
    temperature: float = Field(default=0.2, ge=0, le=2, description="Sampling temperature.")
    max_tokens: int = Field(
        default=2048, ge=16, description="Most tokens one teacher turn may use."
    )
    max_images: int = Field(
        default=12,
        ge=1,
        description=(
            "Most images kept in the conversation sent to the teacher; older ones are "
            "replaced by a one-line note so the context stays within the model's window."
        ),
    )
    max_reply_chars: int = Field(
        default=20000,
        ge=100,
        description="Longer teacher text is cut to this many characters before it enters history.",
    )

    offline: OfflinePolicyConfig = Field(
        default_factory=OfflinePolicyConfig,
        description="Policy of the offline teacher (used only with kind: offline).",
    )

    @model_validator(mode="after")
    def _endpoint_needs_url(self) -> TeacherConfig:
        if self.kind == "openai" and not self.base_url:
            raise ConfigError(
                "teacher.kind is 'openai' but teacher.base_url is empty: set it to the "
                "endpoint, e.g. http://localhost:8000/v1 for `vllm serve`."
            )
        if self.base_url and not self.base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"teacher.base_url {self.base_url!r} must start with http:// or https://"
            )
        if self.retry_wait_max_s < self.retry_wait_s:
            raise ConfigError("teacher.retry_wait_max_s must be >= teacher.retry_wait_s")
        return self
