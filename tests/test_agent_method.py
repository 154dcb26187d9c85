"""The agent as a method of the batch interface: video, cost, resumable, model left clean."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from agent_support import FRAMES, SIZE, agent_config, drawn_task, reasoner, scorer
from tiny_wan import one_torch_thread

from agent.method import AgentMethod
from agent.offline_teacher import OfflineTeacher
from reasoner.methods import Condition
from tools.context import to_tensor


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def test_agent_method_returns_video_cost_and_details(tmp_path: Path) -> None:
    config = agent_config(
        teacher={"offline": {"burst": 2, "max_revisions": 0}}, budgets={"max_lora_steps": 4}
    )
    teacher = OfflineTeacher(config.teacher.offline)
    method = AgentMethod(config, reasoner(), scorer(), teacher, tmp_path)
    task = drawn_task()
    cond = Condition(task.instruction, to_tensor(task.first_frame), seed=3, key="drawn/3")
    output = method(cond)
    assert output.method == "agent"
    assert output.video.shape == (FRAMES, 3, SIZE, SIZE)
    assert output.details["exit_reason"] in ("accepted", "gave_up")
    assert len(output.details["history"]) >= 4  # one loss per evaluated iterate
    assert output.cost.optimization_steps == output.details["lora_steps"] == 4
    assert output.cost.teacher_calls == output.details["turns"] > 0
    assert output.cost.vgm_forward_passes > 4 and output.cost.samples >= 1
    assert (Path(output.details["run_dir"]) / output.details["trace"]).is_file()
    # The shared model is left with a fresh LoRA (zero effect) ...
    assert all(
        float(p.detach().abs().sum()) == 0.0
        for n, p in reasoner().transformer.named_parameters()
        if "lora_B" in n
    )
    # ... and calling again on the same condition reports the finished run.
    again = method(cond)
    assert torch.equal(again.video, output.video)
    assert again.cost.teacher_calls == 0
    assert again.details["exit_reason"] == output.details["exit_reason"]
    # A batch runner chooses the folder itself.
    batch = method(Condition(cond.prompt, cond.image, seed=3, key="x"), tmp_path / "batch" / "x")
    assert (tmp_path / "batch" / "x" / batch.details["trace"]).is_file()
