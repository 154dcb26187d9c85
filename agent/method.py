"""The agent behind the methods' one interface, for batch evaluation.

    method = AgentMethod(config, reasoner, scorer, teacher, out_dir="runs/agent")
    output = method(Condition(prompt, image, seed, key="mini/maze/3"))

Each condition runs in its own folder — `out_dir/<key>` (else the seed), or the
`run_dir` a batch runner passes (`evals.batch.methods.BatchMethod`) — with its
trace and checkpoint; calling again on a finished folder reports the earlier
result instead of running again, so a batch can be resumed. `details` carries
the keys the batch summary reads: `exit_reason`, `history` (one `loss` per
LoRA step evaluation) and `trace` (relative to the run folder).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from agent.config import AgentConfig
from agent.run import run_name, run_task
from agent.teacher import Teacher
from reasoner.cost import CostMeter
from reasoner.methods import Condition, MethodOutput
from tools.context import TaskView, to_uint8

if TYPE_CHECKING:
    from reasoner.video_model import VideoReasoner
    from reasoner.vqa import VQAScorer


class AgentMethod:
    """Test-time optimization steered by the teacher agent (`reasoner.methods.Method`)."""

    name = "agent"

    def __init__(
        self,
        config: AgentConfig,
        reasoner: VideoReasoner,
        scorer: VQAScorer | None,
        teacher: Teacher,
        out_dir: str | Path,
    ) -> None:
        self.config = config
        self.reasoner = reasoner
        self.scorer = scorer
        self.teacher = teacher
        self.out_dir = Path(out_dir)

    def __call__(self, cond: Condition, run_dir: Path | None = None) -> MethodOutput:
        vm = self.config.reasoner.video_model
        frame = None if cond.image is None else to_uint8(cond.image[None])[0]
        task = TaskView(
            task_id=cond.key or f"seed-{cond.seed}",
            instruction=cond.prompt,
            first_frame=frame,
            num_frames=vm.num_frames,
            seed=cond.seed,
        )
        run_dir = Path(run_dir) if run_dir is not None else self.out_dir / run_name(task.task_id)
        with CostMeter(self.reasoner.transformer, [self.teacher]) as meter:
            outcome = run_task(
                self.config,
                task,
                run_dir,
                reasoner=self.reasoner,
                scorer=self.scorer,
                teacher=self.teacher,
            )
        state = outcome.state
        # Full-quality renders: one per verify, plus the final one unless it reused one.
        renders = len(state["verifications"]) + (
            0 if outcome.result["source"] in state["videos"] else 1
        )
        frames = np.load(outcome.video_path)
        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
        return MethodOutput(
            video=video,
            cost=meter.record(optimization_steps=state["lora_steps"], samples=renders),
            method=self.name,
            details={
                "exit_reason": outcome.exit["reason"],
                "exit_detail": outcome.exit["detail"],
                "history": [
                    {"loss": record["loss"], "spec_version": record["spec_version"]}
                    for burst in state["bursts"]
                    for record in burst["records"]
                ],
                "run_dir": str(run_dir),
                "trace": "trace.jsonl",
                "lora_steps": state["lora_steps"],
                "turns": state["turns"],
                "specs": [s["spec"] for s in state["specs"]],
                "scores": outcome.result.get("scores"),
            },
        )
