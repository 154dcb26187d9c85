"""The mini-world experiment: every method and ablation on held-out tasks, in one table.

    vlm-teacher experiment --config configs/eval/mini-experiment.yaml --per-family 50 --workers 2

The eval file names the methods (built-in ones and variants) and an
`experiment:` section (`ExperimentPlan`): which methods form which table, which
one is the base, the teacher, the best-of-N reference, and the compute-matched
best-of-N. The run goes in phases, each a batch of `evals.batch.runner` in one
folder, so rerunning the same command resumes where it stopped:

1. every method of the tables except the compute-matched best-of-N, over the
   first `per_family` instances of every family;
2. N = the teacher's mean wall seconds over the base's, rounded to the nearest
   integer (halves up) and clamped to 1..`max_matched_n` (`matched_n`); the
   compute-matched best-of-N runs with it. N is computed once, when phase 1 is
   complete, and kept in `<out>/matched_n.json`: a rerun (even with more
   instances) reuses it, so every record of that method has the same N;
3. `experiment.md` and `experiment.json`: per family and mean success, mean
   LoRA steps, mean wall seconds, wall time against best-of-N, one table per
   entry of the plan (methods, then the ablations), and the command.

This module knows no agent: the caller hands it a function that builds the
method factories for a list of names (the CLI's eval-file methods).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evals.batch.config import EvalConfig
from evals.batch.methods import MethodFactories
from evals.results import EvalRecord, FailureKind, ResultsStore, atomic_write_json
from reasoner.errors import ConfigError

MATCHED_FILE = "matched_n.json"
REPORT_MD = "experiment.md"
REPORT_JSON = "experiment.json"

# names -> {method name: best_of_n.n to fill in} -> factories
FactoryBuilder = Callable[[list[str], Mapping[str, int]], MethodFactories]


class TablePlan(BaseModel):
    """One table of the write-up: a title and its methods, one row each."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, description="Heading of the table.")
    methods: list[str] = Field(min_length=1, description="Method names, one row each, in order.")
    note: str = Field(default="", description="A sentence printed under the heading.")


class ExperimentPlan(BaseModel):
    """The `experiment:` section of an eval file: what runs, what is compared to what."""

    model_config = ConfigDict(extra="forbid")

    per_family: int = Field(default=50, ge=1, description="Instances per family (--per-family).")
    base: str = Field(default="base", description="The base method (one plain sample).")
    teacher: str = Field(
        default="teacher", description="The teacher method the compute-matched N follows."
    )
    best_of_n: str = Field(
        default="best_of_5", description="The best-of-N the teacher's wall time is compared to."
    )
    matched: str | None = Field(
        default="best_of_matched",
        description="The best-of-N variant whose N is matched to the teacher's wall time "
        "(its best_of_n.n: matched); None: no compute-matched run.",
    )
    max_matched_n: int = Field(default=64, ge=1, description="Largest compute-matched N.")
    tables: list[TablePlan] = Field(min_length=1, description="The tables, in order.")

    @model_validator(mode="after")
    def _distinct_roles(self) -> ExperimentPlan:
        if self.matched is not None and self.matched in (self.base, self.teacher):
            raise ConfigError(
                f"experiment.matched ({self.matched!r}) must differ from the base and the teacher"
            )
        return self

    def phase1_methods(self) -> list[str]:
        """Base first, then every other method of the tables (and the references)."""
        names = [self.base, self.teacher, self.best_of_n]
        names += [m for table in self.tables for m in table.methods]
        return [m for m in dict.fromkeys(names) if m != self.matched]

    def all_methods(self) -> list[str]:
        return self.phase1_methods() + ([self.matched] if self.matched else [])


# ----------------------------------------------------------------------- numbers
def matched_n(teacher_seconds: float, base_seconds: float, max_n: int = 64) -> int:
    """Samples a best-of-N may draw in the teacher's time: round(teacher / base), 1..max_n.

    Nearest integer with halves rounded up (2.5 -> 3), so the rule does not
    depend on Python's round-half-to-even.
    """
    if not (base_seconds > 0 and math.isfinite(base_seconds)):
        raise ValueError(f"base mean wall time must be a positive number, got {base_seconds}")
    if not (teacher_seconds >= 0 and math.isfinite(teacher_seconds)):
        raise ValueError(f"teacher mean wall time must be >= 0, got {teacher_seconds}")
    return max(1, min(max_n, math.floor(teacher_seconds / base_seconds + 0.5)))


def method_seconds(record: EvalRecord) -> float:
    """The method's own wall time (the record's cost), not the scoring around it."""
    return float(record.cost.get("wall_seconds", record.seconds))


def mean_seconds(records: Sequence[EvalRecord], method: str) -> float | None:
    """Mean method wall seconds over the successful records of `method`."""
    values = [method_seconds(r) for r in records if r.method == method and r.status == "ok"]
    return fmean(values) if values else None


@dataclass(frozen=True)
class MethodStats:
    """One method's row: success per family and mean, steps, seconds, cost ratio."""

    method: str
    n: int
    failed: int
    success: dict[str, float | None]
    """Per family: share of its records that passed (a failed record did not)."""
    count: dict[str, int]
    """Per family: records."""
    mean_success: float | None
    """Mean of the per-family success rates (each family weighs the same)."""
    mean_score: float | None
    """Mean over families of the mean checker score (partial credit, 0-1; a failed record
    or one without a score counts 0)."""
    steps: float | None
    """Mean LoRA optimization steps over successful records."""
    seconds: float | None
    """Mean method wall seconds over successful records."""
    seconds_vs_best_of_n: float | None
    """`seconds` over the best-of-N reference's `seconds`."""


@dataclass(frozen=True)
class MatchedN:
    """How the compute-matched N was set."""

    n: int
    teacher_seconds: float
    base_seconds: float
    teacher_records: int
    base_records: int
    max_n: int


@dataclass(frozen=True)
class ExperimentResult:
    """Everything the write-up shows."""

    command: str
    suite: str
    seed: int
    per_family: int
    families: list[str]
    plan: ExperimentPlan
    stats: dict[str, MethodStats]
    matched: MatchedN | None

    def to_dict(self) -> dict[str, Any]:
        teacher = self.stats.get(self.plan.teacher)
        reference = self.stats.get(self.plan.best_of_n)
        return {
            "command": self.command,
            "suite": self.suite,
            "seed": self.seed,
            "per_family": self.per_family,
            "families": self.families,
            "matched": None if self.matched is None else asdict(self.matched),
            "teacher_vs_best_of_n": {
                "teacher": self.plan.teacher,
                "best_of_n": self.plan.best_of_n,
                "teacher_seconds": None if teacher is None else teacher.seconds,
                "best_of_n_seconds": None if reference is None else reference.seconds,
                "ratio": None if teacher is None else teacher.seconds_vs_best_of_n,
            },
            "methods": {name: asdict(s) for name, s in self.stats.items()},
            "tables": [t.model_dump() for t in self.plan.tables],
        }


def _mean(values: Sequence[float]) -> float | None:
    return fmean(values) if values else None


def method_stats(
    records: Sequence[EvalRecord], method: str, families: Sequence[str], reference: str
) -> MethodStats:
    """The row of `method` from the records (latest per instance) of the experiment."""
    mine = [r for r in records if r.method == method]
    ok = [r for r in mine if r.status == "ok"]
    success: dict[str, float | None] = {}
    scores: list[float] = []
    count: dict[str, int] = {}
    for family in families:
        rows = [r for r in mine if r.family == family]
        count[family] = len(rows)
        success[family] = sum(r.passed is True for r in rows) / len(rows) if rows else None
        if rows:
            scores.append(fmean(float(r.score or 0.0) for r in rows))
    seconds = mean_seconds(mine, method)
    ref = mean_seconds(records, reference)
    return MethodStats(
        method=method,
        n=len(mine),
        failed=len(mine) - len(ok),
        success=success,
        count=count,
        mean_success=_mean([v for v in success.values() if v is not None]),
        mean_score=_mean(scores),
        steps=_mean([float(r.steps) for r in ok if r.steps is not None]),
        seconds=seconds,
        seconds_vs_best_of_n=None if seconds is None or not ref else seconds / ref,
    )


def summarize_experiment(
    records: Sequence[EvalRecord],
    plan: ExperimentPlan,
    families: Sequence[str],
    *,
    command: str,
    suite: str,
    seed: int,
    matched: MatchedN | None,
) -> ExperimentResult:
    """Rows for every method of the plan from the experiment's records."""
    stats = {
        m: method_stats(records, m, families, plan.best_of_n)
        for m in plan.all_methods()
        if any(r.method == m for r in records)
    }
    return ExperimentResult(
        command=command,
        suite=suite,
        seed=seed,
        per_family=plan.per_family,
        families=list(families),
        plan=plan,
        stats=stats,
        matched=matched,
    )


# ----------------------------------------------------------------------- write-up
def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 1, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def render_markdown(result: ExperimentResult) -> str:
    """The write-up: the command, how the numbers are defined, one table per plan entry."""
    plan, families = result.plan, result.families
    lines = [
        "# Mini-world experiment",
        "",
        "Reproduce (rerunning resumes):",
        "",
        "```bash",
        result.command,
        "```",
        "",
        f"Suite `{result.suite}`, {result.per_family} instances per family "
        f"({', '.join(families)}), batch seed {result.seed}. "
        "**Success**: the family's rule checker passes (a run that failed counts as not "
        "passed); **mean**: the mean over families. **Steps**: mean LoRA optimization steps "
        "per instance. **Score**: the checker's partial credit (0-1), mean over families. "
        "**Seconds**: mean wall time of the method per instance. "
        f"**× {plan.best_of_n}**: seconds over {plan.best_of_n}'s.",
        "",
    ]
    teacher = result.stats.get(plan.teacher)
    reference = result.stats.get(plan.best_of_n)
    if result.matched is not None:
        m = result.matched
        lines.append(
            f"Compute-matched best-of-N (`{plan.matched}`): N = round({plan.teacher} "
            f"{m.teacher_seconds:.3g} s / {plan.base} {m.base_seconds:.3g} s) = **{m.n}** "
            f"(clamped to 1..{m.max_n}; from {m.teacher_records} and {m.base_records} records)."
        )
    if teacher is not None and reference is not None and teacher.seconds_vs_best_of_n:
        lines.append(
            f"Teacher wall time vs `{plan.best_of_n}`: {teacher.seconds:.2f} s vs "
            f"{reference.seconds:.2f} s per instance = **{teacher.seconds_vs_best_of_n:.2f}×**."
        )
    header = [
        "method",
        *families,
        "mean",
        "score",
        "steps",
        "seconds",
        f"× {plan.best_of_n}",
        "n",
        "failed",
    ]
    for table in plan.tables:
        lines += ["", f"## {table.title}", ""]
        if table.note:
            lines += [table.note, ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
        for method in table.methods:
            s = result.stats.get(method)
            if s is None:
                lines.append(f"| {method} | " + " | ".join(["–"] * (len(header) - 1)) + " |")
                continue
            cells = [
                method,
                *(_pct(s.success[f]) for f in families),
                f"**{_pct(s.mean_success)}**",
                _num(s.mean_score, 3),
                _num(s.steps),
                _num(s.seconds, 2),
                _num(s.seconds_vs_best_of_n, 2, "×"),
                str(s.n),
                str(s.failed),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_experiment(out: Path, result: ExperimentResult) -> tuple[Path, Path]:
    """Write `experiment.md` and `experiment.json` into the batch folder."""
    md, js = out / REPORT_MD, out / REPORT_JSON
    md.write_text(render_markdown(result))
    atomic_write_json(js, result.to_dict())
    return md, js


# ----------------------------------------------------------------------- the run
def experiment_instances(config: EvalConfig, per_family: int) -> tuple[list[str], list[str]]:
    """Families and instance ids: the first `per_family` of each family, balanced."""
    from evals.batch.runner import open_suite

    suite = open_suite(config)
    families = sorted(config.families or suite.families())
    ids = suite.instance_ids(config.families, per_family * len(families))
    short = {
        f: n for f in families if (n := sum(suite.family_of(i) == f for i in ids)) != per_family
    }
    if short:
        raise ConfigError(
            f"suite {config.suite} does not give {per_family} instances of every family in its "
            f"first {per_family * len(families)} (got {short}); lower --per-family"
        )
    return families, ids


def _matched(out: Path, records: Sequence[EvalRecord], plan: ExperimentPlan) -> MatchedN:
    """The saved compute-matched N, or a new one from the phase-1 records (then saved)."""
    path = out / MATCHED_FILE
    if path.exists():
        return MatchedN(**json.loads(path.read_text()))
    teacher = mean_seconds(records, plan.teacher)
    base = mean_seconds(records, plan.base)
    if teacher is None or base is None:
        missing = plan.teacher if teacher is None else plan.base
        raise ConfigError(
            f"cannot match best-of-N to the teacher's compute: no successful {missing!r} record "
            "in phase 1 (see the failures in results.jsonl)"
        )
    matched = MatchedN(
        n=matched_n(teacher, base, plan.max_matched_n),
        teacher_seconds=teacher,
        base_seconds=base,
        teacher_records=sum(r.method == plan.teacher and r.status == "ok" for r in records),
        base_records=sum(r.method == plan.base and r.status == "ok" for r in records),
        max_n=plan.max_matched_n,
    )
    atomic_write_json(path, asdict(matched))
    return matched


def _records(out: Path, ids: Sequence[str], methods: Sequence[str]) -> list[EvalRecord]:
    wanted, names = set(ids), set(methods)
    return [
        r
        for r in ResultsStore(out).latest().values()
        if r.instance_id in wanted and r.method in names
    ]


def run_experiment(
    config: EvalConfig,
    plan: ExperimentPlan,
    build: FactoryBuilder,
    *,
    command: str,
    show_progress: bool = True,
    failure_kinds: Sequence[tuple[type[BaseException], FailureKind]] = (),
    say: Callable[[str], None] = print,
) -> ExperimentResult:
    """Run (or resume) the phases; write and return the write-up. See the module docstring."""
    from evals.batch.runner import run_batch

    if config.out is None:
        raise ConfigError("no output folder: pass --out <dir>")
    out = Path(config.out).resolve()
    families, ids = experiment_instances(config, plan.per_family)
    limit = plan.per_family * len(families)

    phase1 = plan.phase1_methods()
    phases = 2 if plan.matched else 1
    say(f"phase 1/{phases}: {len(ids)} instances x {len(phase1)} methods ({', '.join(phase1)})")
    batch = config.model_copy(update={"methods": phase1, "limit": limit})
    run_batch(batch, build(phase1, {}), show_progress=show_progress, failure_kinds=failure_kinds)

    matched = None
    if plan.matched:
        matched = _matched(out, _records(out, ids, phase1), plan)
        say(
            f"phase 2/2: {plan.matched} with N = {matched.n} (teacher "
            f"{matched.teacher_seconds:.3g} s / base {matched.base_seconds:.3g} s per instance)"
        )
        batch = config.model_copy(update={"methods": [plan.matched], "limit": limit})
        factories = build([plan.matched], {plan.matched: matched.n})
        run_batch(batch, factories, show_progress=show_progress, failure_kinds=failure_kinds)

    result = summarize_experiment(
        _records(out, ids, plan.all_methods()),
        plan,
        families,
        command=command,
        suite=config.suite or "",
        seed=config.seed,
        matched=matched,
    )
    md, _ = write_experiment(out, result)
    say(f"wrote {md} and {md.with_name(REPORT_JSON).name}")
    return result
