"""Teachers as one-shot helpers for the non-agentic methods.

`best_of_n` and the fixed teacher pipeline need a reward spec, and the
VLM-as-solver baseline a prompt rewrite and a critique, without the agent's
loop. These adapters give the methods' `SpecWriter` / `PromptRewriter`
interfaces (`reasoner.methods`) from the offline teacher's reading of the task
or from a model teacher client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from prompts.loader import render
from reasoner.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from reasoner.spec import RewardSpec


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
                render("baselines", "write_spec", instruction=prompt),
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
                {"role": "user", "content": render("baselines", "spec_retry", problem=problem)},
            ]
        raise ConfigError(
            f"the teacher wrote no valid spec in {self.max_attempts} tries: {problem}"
        )

    def rewrite(self, prompt: str, image: torch.Tensor | None) -> str:
        text = render("baselines", "rewrite", instruction=prompt)
        reply = self.teacher.reply(
            [self._user(text, [] if image is None else [_frame(image)])], [], self.budget_s
        )
        return reply.content.strip() or prompt

    def critique(self, prompt: str, frames: torch.Tensor) -> str:
        from evals.video_io import to_uint8

        text = render("baselines", "critique", prompt=prompt)
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


@dataclass
class FixedFields:
    """A spec writer whose specs carry the fields the setup fixes (`tools.spec_overrides`).

    The agent's spec tools apply them to every spec the teacher writes; this does
    the same for the one spec `best_of_n` picks by, so a variant means the same
    for both methods.
    """

    writer: Any
    overrides: Mapping[str, Any]
    include: Literal["all", "queries", "checks"]

    @property
    def usage(self) -> Any:
        return self.writer.usage

    def write_spec(self, prompt: str, image: torch.Tensor | None) -> RewardSpec:
        from reasoner.spec import SpecError
        from tools.write_reward_spec import fix_fields

        spec = self.writer.write_spec(prompt, image)
        try:
            spec, _ = fix_fields(spec, self.overrides, self.include)
        except SpecError as err:
            raise ConfigError(f"the spec does not fit tools.spec_overrides: {err}") from None
        return spec
