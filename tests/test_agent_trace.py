"""The readable trace and the prompts: small pieces the graph relies on."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jinja2
import pytest

from agent.trace import TRACE_FILE, TraceWriter, read_trace
from prompts.loader import load_prompts, render


def test_trace_lines_are_json_without_nan(tmp_path: Path) -> None:
    trace = TraceWriter(tmp_path)
    assert trace.write("tool", loss=math.nan, terms=[{"p": math.inf}, {"p": 0.5}]) == 1
    assert trace.write("exit", reason="accepted") == 2
    lines = (tmp_path / TRACE_FILE).read_text().splitlines()
    assert json.loads(lines[0])["loss"] is None  # strict JSON, not NaN
    assert json.loads(lines[0])["terms"] == [{"p": None}, {"p": 0.5}]
    assert [e["event"] for e in read_trace(tmp_path)] == ["tool", "exit"]


def test_truncate_drops_uncommitted_and_torn_lines(tmp_path: Path) -> None:
    trace = TraceWriter(tmp_path)
    for i in range(4):
        trace.write("tool", i=i)
    # A kill in the middle of a write leaves a line without its newline.
    with (tmp_path / TRACE_FILE).open("a") as f:
        f.write('{"event": "tool", "i"')
    reopened = TraceWriter(tmp_path)
    assert reopened.lines == 5
    reopened.truncate(2)
    assert [e["i"] for e in read_trace(tmp_path)] == [0, 1]
    reopened.truncate(10)  # more than there are: keeps the complete ones
    assert reopened.lines == 2
    assert reopened.write("tool", i=9) == 3


def test_prompts_render_strictly() -> None:
    text = render(
        "teacher",
        "task",
        task_id="mini/maze/1",
        instruction="Guide the green agent to the blue exit.",
        num_frames=17,
        width=32,
        height=32,
        has_frame=True,
    )
    assert "Guide the green agent" in text and "attached" in text and "17 frames of 32x32" in text
    with pytest.raises(jinja2.UndefinedError):
        render("teacher", "task", task_id="x")
    system = render(
        "teacher",
        "system",
        tau=0.22,
        max_turns=30,
        max_lora_steps=40,
        wall_clock_s=900,
        examples=load_prompts("teacher")["examples"],
    )
    assert "40 LoRA steps" in system and "By the end of the video" in system
    with pytest.raises(ValueError, match="letters"):
        load_prompts("../secrets")
