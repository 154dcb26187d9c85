"""Reports of a batch folder: a Markdown table and an HTML page with the videos.

    md_path, html_path = write_report("runs/eval-mini")

Per family (or RULER category) and method, from the latest record of each
(instance, method):

- **score**: mean checker/judge score over the records that have one;
- **success**: share of all records that passed (a failed record did not);
- **steps**: mean LoRA optimization steps; **seconds**: mean method wall time;
- **VGM calls**: mean transformer forward passes;
- **cost × base**: mean seconds divided by `base`'s mean seconds on the same family;
- **failed**: records without a video.

RULER batches also get the benchmark's own table (categories × IF/VC/VF/RC,
overall). The HTML page shows each instance's videos side by side (base first,
then the other methods in batch order), the teacher's loss curve, and links to
every trace. All links are relative, so the folder can be moved or served.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from evals.results import EvalRecord, ResultsStore
from evals.ruler import METRIC_ABBREV, JudgedInstance, RulerSummary, aggregate

TEMPLATES = Path(__file__).parent / "templates"
ALL = "all"


@dataclass(frozen=True)
class Row:
    """One line of the summary table: a family (or `all`) and a method."""

    family: str
    method: str
    n: int
    failed: int
    score: float | None
    success: float | None
    steps: float | None
    seconds: float | None
    vgm_calls: float | None
    cost_ratio: float | None


@dataclass(frozen=True)
class Cell:
    """One method's result on one instance, for the side-by-side gallery."""

    method: str
    record: EvalRecord | None
    curve_svg: str | None


@dataclass(frozen=True)
class Instance:
    instance_id: str
    family: str
    prompt: str | None
    cells: list[Cell]


@dataclass
class Report:
    """Everything the Markdown and HTML views show."""

    title: str
    suite: str
    methods: list[str]
    rows: list[Row]
    instances: list[Instance]
    ruler: dict[str, RulerSummary] = field(default_factory=dict)
    gallery_limit: int = 0
    total_instances: int = 0


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return fmean(kept) if kept else None


def _method_seconds(record: EvalRecord) -> float:
    return record.cost.get("wall_seconds", record.seconds)


def _row(
    family: str,
    method: str,
    records: list[EvalRecord],
    base_seconds: float | None,
    has_pass: bool,
) -> Row:
    ok = [r for r in records if r.status == "ok"]
    seconds = _mean(_method_seconds(r) for r in ok)
    ratio = None
    if seconds is not None and base_seconds:
        ratio = seconds / base_seconds
    return Row(
        family=family,
        method=method,
        n=len(records),
        failed=len(records) - len(ok),
        score=_mean(r.score for r in ok),
        # A failed record did not pass; a scorer without pass/fail (a judge) has no rate.
        success=sum(r.passed is True for r in records) / len(records) if has_pass else None,
        steps=_mean(float(r.steps) for r in ok if r.steps is not None),
        seconds=seconds,
        vgm_calls=_mean(r.cost.get("vgm_forward_passes") for r in ok),
        cost_ratio=ratio,
    )


def summary_rows(records: Sequence[EvalRecord], methods: Sequence[str]) -> list[Row]:
    """Rows per family and method, then an `all` block; cost ratios against `base`."""
    by_family: dict[str, dict[str, list[EvalRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        by_family[record.family][record.method].append(record)
        by_family[ALL][record.method].append(record)
    rows = []
    for family in [*sorted(f for f in by_family if f != ALL), ALL]:
        base = by_family[family].get("base", [])
        base_seconds = _mean(_method_seconds(r) for r in base if r.status == "ok")
        has_pass = any(r.passed is not None for rs in by_family[family].values() for r in rs)
        for method in methods:
            if by_family[family].get(method):
                records_fm = by_family[family][method]
                rows.append(_row(family, method, records_fm, base_seconds, has_pass))
    return rows


def ruler_summaries(
    records: Sequence[EvalRecord], methods: Sequence[str]
) -> dict[str, RulerSummary]:
    """The benchmark's table per method, from judged records of a RULER batch."""
    out = {}
    for method in methods:
        judged = [
            JudgedInstance(r.family, dict(r.sub_scores))
            for r in records
            if r.method == method and r.status == "ok" and r.suite.startswith("ruler:")
        ]
        if judged:
            out[method] = aggregate(judged)
    return out


def loss_curve_svg(curve: Sequence[float | None], width: int = 220, height: int = 70) -> str | None:
    """An inline SVG line of the loss per step (gaps where a step was non-finite)."""
    finite = [v for v in curve if v is not None]
    if len(finite) < 1:
        return None
    low, high = min(finite), max(finite)
    span = (high - low) or 1.0
    pad = 6
    step = (width - 2 * pad) / max(1, len(curve) - 1)
    segments: list[list[str]] = [[]]
    for i, value in enumerate(curve):
        if value is None:
            segments.append([])
            continue
        x = pad + i * step
        y = pad + (high - value) / span * (height - 2 * pad)
        segments[-1].append(f"{x:.1f},{y:.1f}")
    lines = "".join(
        f'<polyline fill="none" stroke="#c0392b" stroke-width="1.5" points="{" ".join(s)}"/>'
        for s in segments
        if s
    )
    dots = "".join(
        f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="1.8" fill="#c0392b"/>'
        for s in segments
        for p in s
    )
    label = (
        f'<text x="{width - pad}" y="{height - 2}" font-size="9" text-anchor="end">'
        f"loss, {len(curve)} evals: {finite[0]:.3g} → {finite[-1]:.3g}</text>"
    )
    return (
        f'<svg class="curve" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="loss per step">'
        f'<rect width="{width}" height="{height}" fill="#fafafa" stroke="#ddd"/>'
        f"{lines}{dots}{label}</svg>"
    )


def _prompt_of(folder: Path, record: EvalRecord) -> str | None:
    # The worker writes every (instance, method)'s trace.json with its prompt.
    path = folder / "runs" / record.method / record.instance_id / "trace.json"
    try:
        return str(json.loads(path.read_text()).get("prompt"))
    except (OSError, ValueError):
        return None


def build_report(folder: str | Path, gallery_limit: int = 200) -> Report:
    """Read a batch folder into a `Report` (no files written)."""
    folder = Path(folder)
    store = ResultsStore(folder)
    if not store.path.exists():
        raise FileNotFoundError(f"{folder} has no results.jsonl: is it a batch folder (--out)?")
    latest = store.latest()
    records = list(latest.values())
    manifest_path = folder / "batch.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    seen = list(dict.fromkeys([*manifest.get("methods", []), *(r.method for r in records)]))
    # Base first: every other method is read against it.
    methods = sorted(seen, key=lambda m: (m != "base", seen.index(m)))
    suites = sorted({r.suite for r in records})

    instance_ids = list(dict.fromkeys(r.instance_id for r in records))
    instances = []
    for instance_id in instance_ids[:gallery_limit]:
        cells = []
        family, prompt = "", None
        for method in methods:
            record = latest.get((instance_id, method))
            if record is not None:
                family = record.family
                if prompt is None and record.status == "ok":
                    prompt = _prompt_of(folder, record)
            curve = loss_curve_svg(record.loss_curve) if record and record.loss_curve else None
            cells.append(Cell(method, record, curve))
        instances.append(Instance(instance_id, family, prompt, cells))
    return Report(
        title=f"vlm-teacher eval: {', '.join(suites) or folder.name}",
        suite=", ".join(suites),
        methods=methods,
        rows=summary_rows(records, methods),
        instances=instances,
        ruler=ruler_summaries(records, methods),
        gallery_limit=gallery_limit,
        total_instances=len(instance_ids),
    )


def _fmt(value: float | None, digits: int = 3, suffix: str = "") -> str:
    return "–" if value is None else f"{value:.{digits}f}{suffix}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    lines += [
        "| family | method | n | score | success | steps | seconds | VGM calls | cost × base "
        "| failed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report.rows:
        family = f"**{row.family}**" if row.family == ALL else row.family
        lines.append(
            f"| {family} | {row.method} | {row.n} | {_fmt(row.score)} | {_pct(row.success)} | "
            f"{_fmt(row.steps, 1)} | {_fmt(row.seconds, 2)} | {_fmt(row.vgm_calls, 1)} | "
            f"{_fmt(row.cost_ratio, 2, '×')} | {row.failed} |"
        )
    for method, summary in report.ruler.items():
        lines += ["", f"## RULER-Bench ({method}), percent", ""]
        metrics = [*METRIC_ABBREV.values(), "Avg"]
        lines += ["| category | n | " + " | ".join(metrics) + " |"]
        lines += ["|---|---:|" + "---:|" * len(metrics)]
        for category, values in summary.categories.items():
            cells = " | ".join(_fmt(values.get(m), 2) for m in metrics)
            lines.append(f"| {category} | {summary.counts[category]} | {cells} |")
        cells = " | ".join(_fmt(summary.overall.get(m), 2) for m in metrics)
        lines.append(f"| **overall** | {sum(summary.counts.values())} | {cells} |")
    lines += ["", "Details, videos and loss curves: `report.html` in this folder.", ""]
    return "\n".join(lines)


def render_html(report: Report) -> str:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = _fmt
    env.filters["pct"] = _pct
    return env.get_template("report.html.j2").render(
        report=report, metrics=[*METRIC_ABBREV.values(), "Avg"], all_family=ALL
    )


def write_report(folder: str | Path, gallery_limit: int = 200) -> tuple[Path, Path]:
    """Write `report.md` and `report.html` into the batch folder; return their paths."""
    folder = Path(folder)
    report = build_report(folder, gallery_limit=gallery_limit)
    md_path, html_path = folder / "report.md", folder / "report.html"
    md_path.write_text(render_markdown(report), encoding="utf-8")
    html_path.write_text(render_html(report), encoding="utf-8")
    return md_path, html_path
