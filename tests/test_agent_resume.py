"""A run killed with SIGKILL resumes from its SQLite checkpoint and finishes.

The run is the real command line (`python -m agent.cli run`) in a subprocess,
with the offline teacher and tiny real models; the test watches the trace,
kills the process mid-run, starts the same command again, and compares the
tool history with the one before the kill and with an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from agent_support import write_cli_config
from tiny_wan import one_torch_thread

from agent.config import load_agent_config
from agent.launch import load_task, task_view
from agent.offline_teacher import OfflineTeacher
from agent.run import run_task
from agent.trace import read_trace

TASK = "mini/navigate/3"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def command(config: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "agent.cli",
        "run",
        "--config",
        str(config),
        "--task",
        TASK,
        "--threads",
        "1",
    ]


def history(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What the teacher asked and got back, without timings."""
    return [
        (e["name"], e["arguments"], e["ok"], e["result"], e["error"])
        for e in events
        if e["event"] == "tool"
    ]


@pytest.mark.slow
def test_sigkill_mid_run_resumes_from_the_checkpoint(tmp_path: Path) -> None:
    config = write_cli_config(tmp_path)
    run_dir = tmp_path / "runs" / "mini-navigate-3"
    trace = run_dir / "trace.jsonl"
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    process = subprocess.Popen(
        command(config), cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    before: list[dict[str, Any]] = []
    while time.monotonic() < deadline and process.poll() is None:
        if trace.exists():
            before = read_trace(run_dir)
            if sum(e["event"] == "tool" for e in before) >= 2:  # spec and first burst done
                break
        time.sleep(0.02)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert not any(e["event"] == "exit" for e in read_trace(run_dir)), "it ended before the kill"

    resumed = subprocess.run(command(config), cwd=REPO, env=env, capture_output=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    after = read_trace(run_dir)
    assert [e["event"] for e in after].count("start") == 1  # continued, not restarted
    assert after[-2]["event"] == "exit" and after[-1]["event"] == "result"
    assert history(after)[: len(history(before))] == history(before)

    # The same run without a kill, in this process, makes exactly the same calls.
    cfg = load_agent_config(config)
    from agent.components import build_reasoner, build_scorer

    reference = run_task(
        cfg,
        task_view(load_task(TASK, cfg)),
        tmp_path / "reference",
        reasoner=build_reasoner(cfg),
        scorer=build_scorer(cfg.scorer),
        teacher=OfflineTeacher(cfg.teacher.offline),
    )
    assert history(read_trace(reference.run_dir)) == history(after)
    assert after[-2]["reason"] == reference.exit["reason"]
