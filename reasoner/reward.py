"""Compile a reward spec into one function: frames -> total loss plus a per-term breakdown.

How the terms enter the total (``lam`` is the spec's weight):

* Terms form two groups. Goal group: the goal query and checks with role
  "goal". Process group: the process queries and checks with role "process".
  A query weighs 1.0, a check its ``weight``.
* total = lam * (weighted mean of the goal group)
  + (1 - lam) * (weighted mean of the process group).
  With only queries this is the paper's lam * L(goal) + (1 - lam) / M * sum L(process_m).
* If one group is empty the other gets all the weight, so the total is always a
  weighted average of term losses (a threshold such as tau = 0.22 keeps its
  meaning whatever the spec holds).
* Verifier queries are never in the total: :meth:`RewardFunction.verify` scores
  them without gradient.

``include`` selects terms for ablations: "queries" (VQA only), "checks" (checks
only, no VLM needed), or "all".
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from reasoner.checks import CompiledCheck, compile_check
from reasoner.checks.compile import first_frame_problems
from reasoner.errors import ConfigError
from reasoner.spec import Query, RewardSpec
from reasoner.spec_window import SpecError
from reasoner.vlm_preprocess import check_frames
from reasoner.vqa import VQAScorer

Role = Literal["goal", "process", "check", "verifier"]
Include = Literal["all", "queries", "checks"]

__all__ = ["RewardFunction", "RewardResult", "TermResult", "compile_spec"]


@dataclass(frozen=True)
class TermResult:
    """One query or check, as scored on one video."""

    name: str  # "goal", "process[0]", "check[2]:inside_region", "verifier[1]"
    role: Role
    loss: torch.Tensor  # scalar
    weight: float  # its share of the total (0 for verifiers)
    p_yes: float | None  # queries only
    passed: bool | None  # checks: the hard verdict; queries: P(Yes) >= query_pass_p
    detail: str | None = None  # checks: the worst measurement, in words


@dataclass(frozen=True)
class RewardResult:
    """The total loss and what each term contributed."""

    total: torch.Tensor
    terms: list[TermResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every term that has a verdict passed."""
        return all(t.passed for t in self.terms if t.passed is not None)

    def term(self, name: str) -> TermResult:
        for t in self.terms:
            if t.name == name:
                return t
        raise KeyError(f"no term {name!r}; terms are {[t.name for t in self.terms]}")

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers, for logs, traces and tool results."""
        return {
            "total": float(self.total.detach()),
            "passed": self.passed,
            "terms": [
                {
                    "name": t.name,
                    "role": t.role,
                    "loss": float(t.loss.detach()),
                    "weight": t.weight,
                    "p_yes": t.p_yes,
                    "passed": t.passed,
                    "detail": t.detail,
                }
                for t in self.terms
            ],
        }


@dataclass(frozen=True)
class _QueryTerm:
    name: str
    role: Role
    query: Query
    indices: tuple[int, ...]
    weight: float


@dataclass(frozen=True)
class _CheckTerm:
    name: str
    compiled: CompiledCheck
    weight: float


class RewardFunction:
    """A compiled spec. Call it on ``(K, 3, H, W)`` frames in [0, 1]."""

    def __init__(
        self,
        spec: RewardSpec,
        num_frames: int,
        scorer: VQAScorer | None,
        queries: list[_QueryTerm],
        checks: list[_CheckTerm],
        verifiers: list[_QueryTerm],
        normalize_yes_no: bool,
        query_pass_p: float,
    ) -> None:
        self.spec = spec
        self.num_frames = num_frames
        self.scorer = scorer
        self._queries = queries
        self._checks = checks
        self._verifiers = verifiers
        self._normalize = normalize_yes_no
        self._pass_p = query_pass_p

    @property
    def version(self) -> int:
        return self.spec.version

    def _check_input(self, frames: torch.Tensor) -> None:
        check_frames(frames)
        if frames.shape[0] != self.num_frames:
            raise ConfigError(
                f"the reward was compiled for {self.num_frames} frames but got {frames.shape[0]}; "
                "sample the same K frames the spec was compiled for"
            )

    def _score_queries(self, frames: torch.Tensor, terms: list[_QueryTerm]) -> list[TermResult]:
        # Queries on the same window share one vision pass and one batched LM call.
        by_window: dict[tuple[int, ...], list[_QueryTerm]] = defaultdict(list)
        for term in terms:
            by_window[term.indices].append(term)
        results: dict[str, TermResult] = {}
        for indices, group in by_window.items():
            assert self.scorer is not None  # guaranteed by compile_spec
            scores = self.scorer.score(
                frames[list(indices)],
                [t.query.text for t in group],
                normalize_yes_no=self._normalize,
                first_frame_index=indices[0],
            )
            for term, score in zip(group, scores, strict=True):
                results[term.name] = TermResult(
                    name=term.name,
                    role=term.role,
                    loss=score.nll,
                    weight=term.weight,
                    p_yes=score.p_yes,
                    passed=score.p_yes >= self._pass_p,
                )
        return [results[t.name] for t in terms]

    def __call__(self, frames: torch.Tensor) -> RewardResult:
        """Total loss (differentiable in ``frames``) and per-term results."""
        self._check_input(frames)
        terms = self._score_queries(frames, self._queries)
        for term in self._checks:
            outcome = term.compiled(frames)
            terms.append(
                TermResult(
                    name=term.name,
                    role="check",
                    loss=outcome.loss,
                    weight=term.weight,
                    p_yes=None,
                    passed=outcome.passed,
                    detail=outcome.detail,
                )
            )
        total = sum((t.weight * t.loss for t in terms), start=frames.new_zeros(()))
        return RewardResult(total=total, terms=terms)

    @torch.no_grad()
    def verify(self, frames: torch.Tensor) -> RewardResult:
        """Verifier queries only, without gradient; total = their mean loss (never optimised)."""
        self._check_input(frames)
        terms = self._score_queries(frames, self._verifiers)
        total = (
            torch.stack([t.loss for t in terms]).mean() if terms else frames.new_zeros(())
        ).detach()
        return RewardResult(total=total, terms=terms)


def _group_weights(
    goal: Sequence[float], process: Sequence[float], lam: float
) -> tuple[list[float], list[float]]:
    """Share of the total for each goal item and each process item."""
    if not goal and not process:
        raise SpecError("the spec selects no term to optimise; add a goal query or a check")
    lam_eff = lam if goal and process else (1.0 if goal else 0.0)
    g = [lam_eff * w / sum(goal) for w in goal]
    p = [(1.0 - lam_eff) * w / sum(process) for w in process]
    return g, p


def compile_spec(
    spec: RewardSpec,
    scorer: VQAScorer | None,
    num_frames: int,
    *,
    include: Include = "all",
    normalize_yes_no: bool = False,
    query_pass_p: float = 0.5,
    first_frame: torch.Tensor | None = None,
) -> RewardFunction:
    """Compile ``spec`` for ``num_frames`` frames (K) into a :class:`RewardFunction`.

    Raises :class:`SpecError` (message written for the teacher) when a window lies
    outside the K frames, when VQA queries are used without a scorer, or, if
    ``first_frame`` ``(3, H, W)`` is given, when a check names a first-frame colour
    that is not there.
    """
    if not isinstance(num_frames, int) or num_frames < 1:
        raise ConfigError(f"num_frames must be a positive int, got {num_frames!r}")
    if include not in ("all", "queries", "checks"):
        raise ConfigError(f"include must be 'all', 'queries' or 'checks', got {include!r}")
    use_queries, use_checks = include in ("all", "queries"), include in ("all", "checks")

    query_items = (
        [(n, r, q) for n, r, q in spec.queries() if r != "verifier"] if use_queries else []
    )
    verifier_items = [(n, r, q) for n, r, q in spec.queries() if r == "verifier"]
    verifier_items = verifier_items if use_queries else []
    if (query_items or verifier_items) and scorer is None:
        raise SpecError(
            "the spec has VQA questions but no VQA scorer is loaded; use checks only "
            "(include='checks') or load a scorer"
        )
    windows = {name: tuple(q.window.indices(num_frames)) for name, _, q in query_items}
    windows |= {name: tuple(q.window.indices(num_frames)) for name, _, q in verifier_items}

    checks = list(enumerate(spec.checks)) if use_checks else []
    compiled = {i: compile_check(c, num_frames) for i, c in checks}
    if first_frame is not None:
        if first_frame.ndim != 3 or first_frame.shape[0] != 3:
            raise ConfigError(f"first_frame must be (3, H, W), got {tuple(first_frame.shape)}")
        for i, c in checks:
            if problem := first_frame_problems(c, first_frame):
                raise SpecError(f"checks[{i}] ({c.kind}): {problem}")

    goal_items = [("q", n) for n, r, _ in query_items if r == "goal"]
    goal_items += [("c", i) for i, c in checks if c.role == "goal"]
    process_items = [("q", n) for n, r, _ in query_items if r == "process"]
    process_items += [("c", i) for i, c in checks if c.role == "process"]

    def item_weight(item: tuple[str, Any]) -> float:
        return 1.0 if item[0] == "q" else spec.checks[item[1]].weight

    g, p = _group_weights(
        [item_weight(it) for it in goal_items], [item_weight(it) for it in process_items], spec.lam
    )
    weight_of = dict(zip(goal_items, g, strict=True)) | dict(zip(process_items, p, strict=True))
    queries = [
        _QueryTerm(name=n, role=r, query=q, indices=windows[n], weight=weight_of[("q", n)])
        for n, r, q in query_items
    ]
    check_terms = [
        _CheckTerm(
            name=f"check[{i}]:{c.name or c.kind}", compiled=compiled[i], weight=weight_of[("c", i)]
        )
        for i, c in checks
    ]
    verifiers = [
        _QueryTerm(name=n, role="verifier", query=q, indices=windows[n], weight=0.0)
        for n, _, q in verifier_items
    ]
    return RewardFunction(
        spec=spec,
        num_frames=num_frames,
        scorer=scorer,
        queries=queries,
        checks=check_terms,
        verifiers=verifiers,
        normalize_yes_no=normalize_yes_no,
        query_pass_p=query_pass_p,
    )
