"""Shared pieces of the agent tests: tiny real models, a drawn task, trace checks.

The reasoner is diffusers' `WanTransformer3DModel` in its tiny pixel-space
preset and the scorer a random-init `Qwen3VLForConditionalGeneration` (both
built from configs, no download); the task is drawn here, so these tests do
not depend on the mini-world suite.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tiny_vlm import tiny_scorer
from tiny_wan import tiny_config

from agent.config import AgentConfig
from agent.openai_teacher import OpenAITeacher
from agent.run import RunOutcome, run_task
from agent.state import EXIT_REASONS
from agent.teacher_config import TeacherConfig
from agent.trace import read_trace
from reasoner.video_model import VideoReasoner
from tools.context import TaskView

SIZE, FRAMES, K = 32, 9, 8
RED, BLUE = (220, 40, 40), (40, 80, 230)
INSTRUCTION = "Move the red square to the blue square."


@functools.cache
def reasoner() -> VideoReasoner:
    """A tiny text+image-to-video Wan in pixel space (no VAE): fast and real."""
    return VideoReasoner.from_config(
        tiny_config("tiny-pixel", "wan_ti2v", "identity", num_frames=FRAMES)
    )


def scorer():
    return tiny_scorer("qwen3_vl")


def drawn_task(seed: int = 0) -> TaskView:
    """A red square top-left and a blue square bottom-right on white."""
    frame = np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)
    frame[4:10, 4:10] = RED
    frame[22:28, 22:28] = BLUE
    return TaskView(
        task_id=f"drawn/{seed}",
        instruction=INSTRUCTION,
        first_frame=frame,
        num_frames=FRAMES,
        seed=seed,
    )


def agent_config(**sections: Any) -> AgentConfig:
    """The tiny setup; keyword sections are merged over the defaults."""
    data: dict[str, Any] = {
        "teacher": {"kind": "offline"},
        "reasoner": tiny_config("tiny-pixel", "wan_ti2v", "identity", num_frames=FRAMES),
        "scorer": {"source": "tiny:qwen3_vl", "vqa": {"max_pixels": 4 * 32 * 32}},
        "tto": {"num_frames": K, "lr": 5e-3, "tau": 0.05},
        "budgets": {"max_turns": 12, "max_lora_steps": 8, "wall_clock_s": 120},
        "tools": {"max_burst": 4, "min_image_side": 0},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return AgentConfig.model_validate(data)


def openai_teacher(url: str, **overrides: Any) -> OpenAITeacher:
    fields: dict[str, Any] = {
        "kind": "openai",
        "base_url": url,
        "model": "scripted",
        "timeout_s": 2.0,
        "max_attempts": 3,
        "retry_wait_s": 0.01,
        "retry_wait_max_s": 0.02,
        "max_malformed": 1,
    }
    fields.update(overrides)
    return OpenAITeacher(TeacherConfig(**fields))


def run_scripted(
    url: str,
    run_dir: Path,
    config: AgentConfig | None = None,
    task: TaskView | None = None,
    **teacher: Any,
) -> RunOutcome:
    return run_task(
        config or agent_config(),
        task or drawn_task(),
        run_dir,
        reasoner=reasoner(),
        scorer=scorer(),
        teacher=openai_teacher(url, **teacher),
    )


SPEC: dict[str, Any] = {
    "rationale": "The red square must end on the blue square and stay one piece.",
    "goal": {"text": "By the end, is the red square on the blue square?", "window": "last"},
    "process": [{"text": "Does the red square stay one piece?"}],
    "verifiers": [{"text": "Is the blue square still visible?"}],
    "checks": [
        {
            "kind": "reach_by_end",
            "role": "goal",
            "object": {"color": list(RED)},
            "target": {"type": "first_frame_color", "color": list(BLUE)},
        },
        {"kind": "stays_one_blob", "object": {"color": list(RED)}},
    ],
}


def tool_events(run_dir: Path) -> list[dict[str, Any]]:
    return [e for e in read_trace(run_dir) if e["event"] == "tool"]


def assert_complete_trace(outcome: RunOutcome) -> list[dict[str, Any]]:
    """A named exit, a trace from start to result, every tool call answered, a video."""
    events = read_trace(outcome.run_dir)
    assert events[0]["event"] == "start"
    assert [e["event"] for e in events[-2:]] == ["exit", "result"]
    assert events[-2]["reason"] == outcome.exit["reason"]
    assert outcome.exit["reason"] in EXIT_REASONS
    answered = [e["call_id"] for e in events if e["event"] == "tool"]
    asked = [c["id"] for e in events if e["event"] == "teacher" for c in e["tool_calls"]]
    # Every call was answered, in order; calls after an exit may stay unanswered.
    assert asked[: len(answered)] == answered
    if outcome.exit["reason"] in ("budget_turns", "teacher_failure", "no_tool_calls"):
        assert answered == asked  # these exits happen between turns
    video = np.load(outcome.video_path)
    assert video.shape == (FRAMES, SIZE, SIZE, 3) and video.dtype == np.uint8
    return events


def write_cli_config(folder: Path) -> Path:
    """An agent YAML of the tiny setup for command-line runs (offline teacher)."""
    config = {
        "teacher": {"kind": "offline", "offline": {"burst": 2, "max_revisions": 0}},
        "reasoner": {
            "video_model": {
                "kind": "wan_ti2v",
                "source": "tiny-pixel",
                "height": 32,
                "width": 32,
                "num_frames": 9,
                "num_inference_steps": 3,
                "max_sequence_length": 16,
            },
            "decoder": {"surrogate": "identity"},
            "lora": {"rank": 4, "alpha": 8.0},
        },
        "scorer": {"source": "tiny:qwen3_vl", "vqa": {"max_pixels": 4096}},
        "tto": {"num_frames": 8, "lr": 5.0e-3, "tau": 0.05},
        "budgets": {"max_turns": 12, "max_lora_steps": 4, "wall_clock_s": 300},
        "tools": {"min_image_side": 0},
        "out_dir": str(folder / "runs"),
    }
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
