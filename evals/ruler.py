"""RULER-Bench: rows in, videos out as `{model}/{task}/{index}.mp4`, a checklist judge.

RULER-Bench (He et al., 2025) gives each instance a prompt, an optional input
image and a checklist: questions each tagged with one of four metrics. A
multimodal LLM judge watches frames of the generated video (2 frames per second,
long side at most 512 px) and labels every question Good / Medium / Poor, worth
2 / 1 / 0. The benchmark then aggregates:

- per instance and metric: the mean label value of that metric's questions
  (0 when the checklist has none);
- per instance: the mean of its four metrics; the "vision rule" category has no
  instruction-following metric, so its instances average the other three;
- per category and metric, and per category: means over the category's
  instances, as a percentage of the maximum (x / 2 * 100);
- overall, per metric: the mean over categories (instruction following leaves
  out "vision rule"); overall average: the mean of the four overall metrics.

The judge is any OpenAI-compatible endpoint (`JudgeConfig`), so the original's
o3 or a local vLLM-served VLM can be swapped by config. Scores here are stored
on [0, 1] (label value / 2) and turned into percentages only when aggregated.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from reasoner.errors import ConfigError

METRICS: tuple[str, ...] = (
    "Instruction Following",
    "Visual Consistency",
    "Visual Fidelity",
    "Rule Coherence",
)
METRIC_ABBREV = {
    "Instruction Following": "IF",
    "Visual Consistency": "VC",
    "Visual Fidelity": "VF",
    "Rule Coherence": "RC",
}
LABEL_VALUES = {"Good": 2, "Medium": 1, "Poor": 0}
# The benchmark's one category without an instruction-following metric.
NO_IF_CATEGORY = "vision rule"

# Our judge instructions. The answer format is what the parser below accepts;
# the reasoning part is optional and kept in the record for inspection.
JUDGE_SYSTEM_PROMPT = """\
You grade a generated video against a checklist, as an expert in video quality and \
video understanding.

You receive the generation prompt, possibly an input image the video had to start \
from, possibly a reference image of the expected outcome and a note on the intended \
outcome, frames sampled from the video in order, and numbered checklist questions.

Label every question independently:
- "Good": the video clearly and fully satisfies it.
- "Medium": the video satisfies it partly, or with minor problems.
- "Poor": the video fails it, has major problems, or never shows what the question \
is about.

Reply with a short justification per question inside <think></think>, then the \
labels inside <answer></answer> as a JSON list in question order, for example \
<answer>["Good", "Poor", "Medium"]</answer>. The list has exactly one label per \
question and nothing else."""


class RulerError(ValueError):
    """A RULER row file or judge reply cannot be used; the message says what to fix."""


class ChecklistItem(BaseModel):
    """One checklist question and the metric it counts towards."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = Field(description="One of METRICS.")
    question: str = Field(min_length=1, description="The question the judge answers.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in METRICS:
            raise ValueError(f"unknown checklist metric {metric!r}; expected one of {METRICS}")
        return metric


class RulerRow(BaseModel):
    """One RULER-Bench instance, as its data file holds it.

    Unknown columns are ignored on purpose: this is the benchmark's data format,
    and a new column there must not break reading it here.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    prompt: str = Field(min_length=1, description="The generation prompt.")
    index: int = Field(ge=0, description="Instance number within its task.")
    task_name: str = Field(min_length=1, description="Task, e.g. 'chemistry'.")
    category: str = Field(min_length=1, description="Rule category, e.g. 'science'.")
    checklist: tuple[ChecklistItem, ...] = Field(min_length=1, description="Judge questions.")
    input_image_path: str | None = Field(default=None, description="Image-to-video input.")
    gt_image_path: str | None = Field(default=None, description="Reference outcome image.")
    implicit_explanation: str | None = Field(default=None, description="Intended outcome.")

    @field_validator("checklist", mode="before")
    @classmethod
    def _parse_checklist(cls, value: Any) -> Any:
        # The dataset stores the checklist as a JSON string of single-key objects
        # {metric: question}; its evaluation files hold the parsed list.
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, list):
            raise ValueError("checklist must be a list of {metric: question} objects")
        items = []
        for entry in value:
            if isinstance(entry, dict) and set(entry) == {"metric", "question"}:
                items.append(entry)
            elif isinstance(entry, dict) and len(entry) == 1:
                ((metric, question),) = entry.items()
                items.append({"metric": metric, "question": question})
            else:
                raise ValueError(f"checklist entry {entry!r} is not a {{metric: question}} object")
        return items

    @field_validator("task_name")
    @classmethod
    def _safe_task_name(cls, name: str) -> str:
        # It becomes a folder name of the output layout.
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_. -]*", name) or ".." in name:
            raise ValueError(f"task_name {name!r} is not a plain folder name")
        return name

    @field_validator("input_image_path", "gt_image_path", "implicit_explanation", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return value or None

    @property
    def instance_id(self) -> str:
        return f"{self.task_name}/{self.index}"


def load_rows(path: str | Path) -> list[RulerRow]:
    """Read RULER rows from a .jsonl (one row a line) or .json (a list) file."""
    path = Path(path)
    if not path.is_file():
        raise RulerError(f"RULER row file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        raw_rows = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        parsed = []
        for number, line in raw_rows:
            try:
                parsed.append((number, json.loads(line)))
            except json.JSONDecodeError as err:
                raise RulerError(f"{path}:{number}: not a JSON object ({err.msg})") from err
    elif path.suffix == ".json":
        data = json.loads(text)
        if not isinstance(data, list):
            raise RulerError(f"{path}: expected a JSON list of rows")
        parsed = list(enumerate(data, 1))
    else:
        raise RulerError(f"{path}: RULER rows must be a .jsonl or .json file")
    rows: list[RulerRow] = []
    for number, data in parsed:
        try:
            rows.append(RulerRow.model_validate(data))
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise RulerError(f"{path}: row {number}: {where}: {first['msg']}") from err
    seen: set[str] = set()
    for row in rows:
        if row.instance_id in seen:
            raise RulerError(f"{path}: two rows share task {row.task_name!r} index {row.index}")
        seen.add(row.instance_id)
    return rows


def resolve_data_path(root: Path, relative: str) -> Path:
    """A path named by a row, resolved inside the data folder (never outside it)."""
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root.resolve()):
        raise RulerError(f"row path {relative!r} points outside the data folder {root}")
    if not candidate.is_file():
        raise RulerError(f"row path {relative!r} does not exist under {root}")
    return candidate


def output_path(model: str, row: RulerRow) -> Path:
    """Where the benchmark expects a model's video: `{model}/{task}/{index}.mp4`."""
    return Path(model) / row.task_name / f"{row.index}.mp4"


# ----------------------------------------------------------------------------- frames
def judge_frame_indices(num_frames: int, video_fps: float, target_fps: float = 2.0) -> list[int]:
    """Every `int(video_fps / target_fps)`-th frame from the first, as the benchmark samples.

    A video slower than the target rate keeps every frame.
    """
    if num_frames < 1:
        raise ValueError("a video to judge needs at least one frame")
    if video_fps <= 0 or target_fps <= 0:
        raise ValueError(f"fps must be positive (video {video_fps}, target {target_fps})")
    step = max(1, int(video_fps / target_fps))
    return list(range(0, num_frames, step))


def fit_long_side(frame: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink (never enlarge) so the long side is at most `max_side`, keeping the ratio."""
    height, width = frame.shape[:2]
    if max(height, width) <= max_side:
        return frame
    scale = max_side / max(height, width)
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    # BOX filtering is area averaging, the usual choice for downscaling.
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.BOX))


def frames_for_judge(
    video: np.ndarray, video_fps: float, target_fps: float = 2.0, max_side: int = 512
) -> list[np.ndarray]:
    """The frames the judge sees: sampled at `target_fps`, long side ≤ `max_side`."""
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8:
        raise ValueError(f"expected a uint8 video (F, H, W, 3); got {video.dtype} {video.shape}")
    indices = judge_frame_indices(len(video), video_fps, target_fps)
    return [fit_long_side(video[i], max_side) for i in indices]


def image_part(frame: np.ndarray, fmt: str = "jpeg") -> dict[str, Any]:
    """An OpenAI chat image part holding `frame` as a base64 data URL."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format=fmt.upper(), quality=90)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": f"data:image/{fmt};base64,{encoded}"}}


# ----------------------------------------------------------------------------- judge
class JudgeConfig(BaseModel):
    """Which model judges RULER videos, and how patiently."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Judge model name at the endpoint (the benchmark used o3).")
    base_url: str = Field(description="OpenAI-compatible endpoint, ending in /v1.")
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable holding the API key; unset: the placeholder 'EMPTY'.",
    )
    fps: float = Field(default=2.0, gt=0, description="Frames per second shown to the judge.")
    max_side: int = Field(default=512, ge=16, description="Long side of judged frames, in px.")
    image_format: str = Field(default="jpeg", description="'jpeg' or 'png' for frames sent.")
    timeout_s: float = Field(default=300.0, gt=0, description="Seconds one request may take.")
    max_attempts: int = Field(
        default=4, ge=1, le=20, description="HTTP attempts on timeouts, 429 and 5xx."
    )
    retry_wait_s: float = Field(default=2.0, ge=0, description="First backoff wait, doubling.")
    retry_wait_max_s: float = Field(default=60.0, ge=0, description="Longest backoff wait.")
    max_format_retries: int = Field(
        default=2, ge=0, le=10, description="Re-asks when a reply's labels cannot be parsed."
    )
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Sampling temperature; None: endpoint default."
    )
    max_tokens: int | None = Field(default=None, ge=16, description="Reply token limit.")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"judge.base_url {url!r} must start with http:// or https://")
        return url

    @field_validator("image_format")
    @classmethod
    def _known_format(cls, fmt: str) -> str:
        if fmt not in ("jpeg", "png"):
            raise ConfigError(f"judge.image_format {fmt!r}: use 'jpeg' or 'png'")
        return fmt


class JudgeUnavailable(RuntimeError):
    """The judge endpoint did not answer after its retries."""


class JudgeFormatError(RulerError):
    """The judge kept answering without a usable label list."""


@dataclass(frozen=True)
class Verdict:
    """The judge's labels for one video, and what they are worth."""

    labels: tuple[str, ...]
    reasoning: str
    metric_scores: dict[str, float]
    """Per metric, the mean label value / 2, in [0, 1] (0 when no question has it)."""
    score: float
    """Instance average in [0, 1] (three metrics for the vision-rule category)."""
    usage: dict[str, int]


def parse_labels(text: str, expected: int) -> tuple[tuple[str, ...], str]:
    """The label list of a judge reply (and its reasoning); `RulerError` says what is wrong."""
    body = text.strip()
    body = re.sub(r"^```[a-zA-Z]*\n?", "", body)
    body = re.sub(r"\n?```$", "", body)
    answer = re.search(r"<answer>(.*?)</answer>", body, re.DOTALL)
    if answer is None:
        raise RulerError("the reply has no <answer>...</answer> part")
    try:
        labels = json.loads(answer.group(1).strip())
    except json.JSONDecodeError as err:
        raise RulerError(f"<answer> is not a JSON list ({err.msg})") from err
    if not isinstance(labels, list) or len(labels) != expected:
        got = len(labels) if isinstance(labels, list) else type(labels).__name__
        raise RulerError(f"<answer> must list exactly {expected} labels; got {got}")
    bad = [label for label in labels if label not in LABEL_VALUES]
    if bad:
        raise RulerError(f"labels must be Good, Medium or Poor; got {bad[:3]}")
    think = re.search(r"<think>(.*?)</think>", body, re.DOTALL)
    return tuple(labels), think.group(1).strip() if think else ""


def score_labels(row: RulerRow, labels: Sequence[str]) -> tuple[dict[str, float], float]:
    """Per-metric scores in [0, 1] and the instance average, the benchmark's way."""
    if len(labels) != len(row.checklist):
        raise ValueError(f"{len(labels)} labels for {len(row.checklist)} checklist questions")
    by_metric: dict[str, list[int]] = {metric: [] for metric in METRICS}
    for item, label in zip(row.checklist, labels, strict=True):
        by_metric[item.metric].append(LABEL_VALUES[label])
    metric_scores = {
        metric: (sum(values) / len(values) / 2.0 if values else 0.0)
        for metric, values in by_metric.items()
    }
    counted = [m for m in METRICS if not _skips_metric(row.category, m)]
    return metric_scores, sum(metric_scores[m] for m in counted) / len(counted)


def _skips_metric(category: str, metric: str) -> bool:
    return category == NO_IF_CATEGORY and metric == "Instruction Following"


class RulerJudge:
    """Labels a video's checklist through an OpenAI-compatible chat endpoint."""

    def __init__(self, config: JudgeConfig, data_root: Path | None = None) -> None:
        import openai  # deferred: importing the client costs time the CLI's --help should not

        self.config = config
        self.data_root = data_root
        key = os.environ.get(config.api_key_env, "") if config.api_key_env else ""
        if config.api_key_env and not key:
            raise ConfigError(
                f"judge.api_key_env names {config.api_key_env!r}, but that environment "
                "variable is empty; export the key or drop api_key_env for a local endpoint"
            )
        # Retries are ours (tenacity, below), so the client makes exactly one attempt.
        self._client = openai.OpenAI(
            base_url=config.base_url,
            api_key=key or "EMPTY",
            timeout=config.timeout_s,
            max_retries=0,
        )

    def messages(self, row: RulerRow, frames: Sequence[np.ndarray]) -> list[dict[str, Any]]:
        """The chat request for one video: context, frames in order, numbered questions."""
        fmt = self.config.image_format
        content: list[dict[str, Any]] = []
        if row.input_image_path:
            content.append({"type": "text", "text": "Input image:"})
            content.append(image_part(self._image(row.input_image_path), fmt))
        content.append({"type": "text", "text": f"Generation prompt:\n{row.prompt}"})
        if row.gt_image_path:
            content.append({"type": "text", "text": "Reference image of the expected outcome:"})
            content.append(image_part(self._image(row.gt_image_path), fmt))
        if row.implicit_explanation:
            content.append(
                {"type": "text", "text": f"Intended outcome:\n{row.implicit_explanation}"}
            )
        content.append({"type": "text", "text": f"Video to grade ({len(frames)} frames):"})
        content.extend(image_part(frame, fmt) for frame in frames)
        questions = "\n".join(
            f"Question {n}: {item.question}" for n, item in enumerate(row.checklist, 1)
        )
        content.append({"type": "text", "text": f"Checklist questions:\n{questions}"})
        return [
            {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
            {"role": "user", "content": content},
        ]

    def _image(self, relative: str) -> np.ndarray:
        if self.data_root is None:
            raise RulerError("this row names an image, but the judge was given no data folder")
        path = resolve_data_path(self.data_root, relative)
        with Image.open(path) as image:
            return fit_long_side(np.asarray(image.convert("RGB")), self.config.max_side)

    def judge(self, row: RulerRow, video: np.ndarray, video_fps: float) -> Verdict:
        """Label `video` (uint8 (F, H, W, 3) at `video_fps`) against `row`'s checklist."""
        frames = frames_for_judge(video, video_fps, self.config.fps, self.config.max_side)
        messages = self.messages(row, frames)
        usage = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}
        problems: list[str] = []
        for _ in range(self.config.max_format_retries + 1):
            text, used = self._complete(messages)
            for key in usage:
                usage[key] += used[key]
            try:
                labels, reasoning = parse_labels(text, len(row.checklist))
            except RulerError as err:
                problems.append(str(err))
                # Show the judge its reply and what was wrong with it, once per retry.
                messages = [
                    *messages,
                    {"role": "assistant", "content": text},
                    {
                        "role": "user",
                        "content": f"That reply cannot be used: {err}. Answer again in the "
                        "required format.",
                    },
                ]
                continue
            metric_scores, score = score_labels(row, labels)
            return Verdict(labels, reasoning, metric_scores, score, usage)
        raise JudgeFormatError(
            f"judge {self.config.model!r} gave no usable labels in "
            f"{self.config.max_format_retries + 1} replies: {'; '.join(problems)}"
        )

    def _complete(self, messages: list[dict[str, Any]]) -> tuple[str, dict[str, int]]:
        import openai
        from tenacity import (
            Retrying,
            retry_if_exception,
            stop_after_attempt,
            wait_exponential,
        )

        def transient(err: BaseException) -> bool:
            if isinstance(err, openai.APIConnectionError):  # includes timeouts
                return True
            return isinstance(err, openai.APIStatusError) and (
                err.status_code == 429 or err.status_code >= 500
            )

        extra: dict[str, Any] = {}
        if self.config.temperature is not None:
            extra["temperature"] = self.config.temperature
        if self.config.max_tokens is not None:
            extra["max_tokens"] = self.config.max_tokens
        retrying = Retrying(
            stop=stop_after_attempt(self.config.max_attempts),
            wait=wait_exponential(
                multiplier=self.config.retry_wait_s, max=self.config.retry_wait_max_s
            ),
            retry=retry_if_exception(transient),
            reraise=True,
        )
        try:
            response = retrying(
                self._client.chat.completions.create,
                model=self.config.model,
                messages=messages,
                **extra,
            )
        except (openai.APIConnectionError, openai.APIStatusError) as err:
            raise JudgeUnavailable(
                f"judge endpoint {self.config.base_url} failed after "
                f"{self.config.max_attempts} attempts: {type(err).__name__}: {err}"
            ) from err
        if not response.choices or response.choices[0].message.content is None:
            text = ""
        else:
            text = response.choices[0].message.content
        used = response.usage
        return text, {
            "calls": 1,
            "prompt_tokens": used.prompt_tokens if used else 0,
            "completion_tokens": used.completion_tokens if used else 0,
        }


# ----------------------------------------------------------------------------- aggregation
@dataclass(frozen=True)
class JudgedInstance:
    """What aggregation needs of one judged video."""

    category: str
    metric_scores: dict[str, float]
    """Per metric in [0, 1], as `score_labels` returns them."""


@dataclass(frozen=True)
class RulerSummary:
    """The benchmark's table for one model, in percent (0–100)."""

    categories: dict[str, dict[str, float]]
    """Per category: IF/VC/VF/RC (IF absent for vision rule) and Avg."""
    overall: dict[str, float]
    """IF/VC/VF/RC averaged over categories, and Avg (their mean)."""
    counts: dict[str, int]
    """Judged instances per category."""


def aggregate(instances: Iterable[JudgedInstance]) -> RulerSummary:
    """Category and overall scores exactly as RULER-Bench defines them (see module doc)."""
    per_metric: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    per_instance: dict[str, list[float]] = defaultdict(list)
    for inst in instances:
        counted = [m for m in METRICS if not _skips_metric(inst.category, m)]
        for metric in counted:
            per_metric[inst.category][metric].append(inst.metric_scores[metric])
        per_instance[inst.category].append(
            sum(inst.metric_scores[m] for m in counted) / len(counted)
        )
    if not per_instance:
        raise ValueError("no judged instances to aggregate")

    def pct(values: list[float]) -> float:
        return 100.0 * sum(values) / len(values)

    categories: dict[str, dict[str, float]] = {}
    for category in sorted(per_instance):
        row = {METRIC_ABBREV[m]: pct(v) for m, v in per_metric[category].items()}
        row["Avg"] = pct(per_instance[category])
        categories[category] = row
    overall: dict[str, float] = {}
    for metric in METRICS:
        abbrev = METRIC_ABBREV[metric]
        values = [row[abbrev] for row in categories.values() if abbrev in row]
        overall[abbrev] = sum(values) / len(values) if values else math.nan
    overall["Avg"] = sum(overall[METRIC_ABBREV[m]] for m in METRICS) / len(METRICS)
    counts = {category: len(values) for category, values in per_instance.items()}
    return RulerSummary(categories=categories, overall=overall, counts=counts)
