"""The reward spec: the teacher's judgment of a task, as validated data.

A spec holds one goal query and up to eight process queries (yes/no questions,
phrased so that "Yes" means the rule holds), the weight ``lam`` between goal and
process terms (the paper's total = lam * L(goal) + (1 - lam) / M * sum L(process)),
a frame window per query, held-out verifier queries that are scored but never
optimised, and differentiable checks (:mod:`reasoner.checks`).

``RewardSpec.model_json_schema()`` is what the teacher's tool exposes, so every
field description is written for a model to read. Invalid input from a model is
answered with :func:`explain_validation_error`, a message that says what to fix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from reasoner.checks.vocabulary import CHECK_KINDS, CHECK_MODELS, NAMED_COLORS, Check
from reasoner.spec_window import FrameWindow, SpecError

__all__ = [
    "FrameWindow",
    "Query",
    "RewardSpec",
    "SpecError",
    "explain_validation_error",
]

MAX_PROCESS_QUERIES = 8
MAX_VERIFIER_QUERIES = 8
MAX_CHECKS = 16


class Query(BaseModel):
    """A yes/no question about the video, phrased so that "Yes" means the rule holds."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "text": "By the end of the video, is the yellow ball inside the red square?",
                    "window": {"kind": "last_n", "n": 4},
                }
            ]
        },
    )

    text: str = Field(
        min_length=3,
        max_length=500,
        description="A yes/no question about what the frames show. 'Yes' must mean the rule "
        "is satisfied (ask 'Does the ball stay on the path?', not 'Does the ball leave it?'). "
        "Name objects by visible colour and shape.",
    )
    window: FrameWindow = Field(
        default_factory=FrameWindow,
        description="Frames the question is asked about (default: all). Goal questions often "
        "look at the last frames only.",
    )

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        text = text.strip()
        if len(text) < 3:
            raise ValueError("the question is empty; write a yes/no question about the video")
        return text


class RewardSpec(BaseModel):
    """How to judge a video for one task: questions for a vision-language model and checks.

    The optimised loss is lam * (goal terms) + (1 - lam) * (process terms), each group
    averaged by weight; verifiers are only reported.
    """

    model_config = ConfigDict(extra="forbid")

    version: int = Field(
        1, ge=1, le=100_000, description="Spec version: 1 for the first, +1 for each revision."
    )
    rationale: str = Field(
        min_length=1,
        max_length=1000,
        description="One or two sentences: why these questions and checks (for a revision: "
        "what changed and why).",
    )
    goal: Query | None = Field(
        None,
        description="The final-goal question, about the end state. Required unless a check "
        "has role 'goal'.",
    )
    process: list[Query] = Field(
        default_factory=list,
        max_length=MAX_PROCESS_QUERIES,
        description="0-8 (usually 1-3) questions about the trajectory: rules that must hold "
        "along the way (avoids obstacles, object stays intact, no teleporting).",
    )
    lam: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Weight of the goal terms, 0-1; process terms get 1 - lam. 0.5 balances "
        "both; 1 optimises the goal only.",
    )
    verifiers: list[Query] = Field(
        default_factory=list,
        max_length=MAX_VERIFIER_QUERIES,
        description="0-8 held-out questions that are scored but never optimised, to catch a "
        "video that fools the optimised questions.",
    )
    checks: list[Check] = Field(
        default_factory=list,
        max_length=MAX_CHECKS,
        description="0-16 precise, differentiable rules over colours and positions (pick one "
        "`kind` each). Use them for geometry the questions may misjudge.",
    )

    @model_validator(mode="after")
    def _has_goal(self) -> RewardSpec:
        if self.goal is None and not any(c.role == "goal" for c in self.checks):
            raise ValueError(
                "the spec has no goal: add `goal` (a yes/no question about the end state, e.g. "
                "{'text': 'At the end, is the ball in the red square?', 'window': 'last'}) or "
                "give a check role 'goal'"
            )
        return self

    def queries(self) -> list[tuple[str, str, Query]]:
        """(name, role, query) of every question, in a stable order."""
        out: list[tuple[str, str, Query]] = []
        if self.goal is not None:
            out.append(("goal", "goal", self.goal))
        out += [(f"process[{i}]", "process", q) for i, q in enumerate(self.process)]
        out += [(f"verifier[{i}]", "verifier", q) for i, q in enumerate(self.verifiers)]
        return out

    def summary(self) -> str:
        """One line per part, for showing a run's history of specs."""
        lines = [f"v{self.version} (lam={self.lam:g}): {self.rationale}"]
        for name, _, q in self.queries():
            lines.append(f"  {name} [{q.window.describe()}]: {q.text}")
        for i, c in enumerate(self.checks):
            label = f" {c.name!r}" if c.name else ""
            lines.append(
                f"  check[{i}] {c.kind}{label} ({c.role}, w={c.weight:g}, {c.window.describe()})"
            )
        return "\n".join(lines)


# ------------------------------------------------------------------ error messages

# Where a discriminated union sits, pydantic puts the chosen tag in the error
# location; these are the fields whose next segment is such a tag.
_UNION_FIELDS = {"region": "type", "target": "type", "b": "type"}


def _format_loc(loc: Sequence[int | str]) -> str:
    # Members of a plain union ("literal[...]", "tuple[...]") are labels, not fields.
    loc = [seg for seg in loc if not (isinstance(seg, str) and "[" in seg)]
    parts: list[str] = []
    for i, seg in enumerate(loc):
        prev = loc[i - 1] if i else None
        if isinstance(seg, int):
            parts.append(f"[{seg}]")
        elif i >= 2 and loc[i - 2] == "checks" and isinstance(prev, int) and seg in CHECK_KINDS:
            parts.append(f"(kind={seg})")
        elif isinstance(prev, str) and prev in _UNION_FIELDS and not parts[-1].startswith("("):
            parts.append(f"({_UNION_FIELDS[prev]}={seg})")
        else:
            parts.append(("." if parts else "") + str(seg))
    return "".join(parts) or "(the spec itself)"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kinds_help() -> str:
    return "\n".join(
        f"    - {kind}: {(model.__doc__ or '').strip().splitlines()[0]}"
        for kind, model in CHECK_MODELS.items()
    )


def _explain_one(error: dict[str, Any]) -> str:
    where = _format_loc(error.get("loc", ()))
    kind = error.get("type", "")
    given = error.get("input")
    ctx = error.get("ctx") or {}
    if where.endswith(".color") and any("[" in str(seg) for seg in error.get("loc", ())):
        names = ", ".join(NAMED_COLORS)
        return (
            f"{where}: must be a colour name ({names}) or [R, G, B] with integers 0-255 "
            f"(got {_short(given)})"
        )
    if kind == "union_tag_invalid":
        tag = ctx.get("tag", given)
        expected = ctx.get("expected_tags", "")
        if ctx.get("discriminator") == "'kind'":
            return f"{where}: unknown check kind {tag!r}. Use one of:\n{_kinds_help()}"
        return f"{where}: unknown type {tag!r}; use one of {expected}"
    if kind == "union_tag_not_found":
        return f"{where}: missing {ctx.get('discriminator', 'the tag')}; every entry here needs it"
    if kind == "missing":
        return f"{where}: required field is missing; add it"
    if kind == "extra_forbidden":
        return f"{where}: unknown field (value {_short(given)}); remove it or check its spelling"
    if kind == "finite_number":
        return f"{where}: must be a finite number, got {_short(given)}"
    if kind == "json_invalid":
        return f"the arguments are not valid JSON ({error.get('msg')}); send one JSON object"
    message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
    if not error.get("loc"):
        return message  # a rule about the whole spec; echoing the spec back adds nothing
    return f"{where}: {message} (got {_short(given)})"


def explain_validation_error(err: ValidationError | SpecError) -> str:
    """A message for the teacher model saying what is wrong with its spec and how to fix it."""
    if isinstance(err, SpecError):
        return f"The reward spec cannot be applied: {err}\nFix it and call the tool again."
    # dict.fromkeys: one line per distinct problem (a bad colour fails both union members).
    lines = list(dict.fromkeys(_explain_one(e) for e in err.errors(include_url=False)))
    errors = lines
    problems = "\n".join(f"- {line}" for line in lines[:12])
    more = f"\n- ... and {len(errors) - 12} more" if len(errors) > 12 else ""
    return (
        f"The reward spec is invalid ({len(errors)} problem{'s' if len(errors) != 1 else ''}). "
        f"Fix {'them' if len(errors) != 1 else 'it'} and call the tool again:\n{problems}{more}\n"
        "Reminder: a spec is {'version': int, 'rationale': str, 'goal': {'text': yes/no "
        "question, 'window': ...}, 'process': [...], 'lam': 0..1, 'verifiers': [...], "
        "'checks': [{'kind': ..., ...}]}; 'Yes' must mean the rule holds."
    )
