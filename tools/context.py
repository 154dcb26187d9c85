"""The run's context: its folder, its videos by id, the optimizer session, safe paths.

The graph state (plain data, checkpointed) is the record of what happened; the
context holds the live objects the tools work with — the reasoner and scorer
(shared across tasks), the current compiled spec, the test-time optimizer of
this task and decoded frames — and rebuilds them from the run folder and the
state when a killed run resumes (`sync`).

Run folder layout (every path a tool touches goes through `resolve`):

    images/          PNGs shown to the teacher (first frame, inspected frames)
    videos/<id>.npy  every video of the run, uint8 (F, H, W, 3), lossless
    session/         optimizer state after each burst (LoRA, moments, history)
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from tools.base import ToolError
from tools.paths import resolve_in

if TYPE_CHECKING:
    from reasoner.reward import RewardFunction
    from reasoner.spec import RewardSpec
    from reasoner.tto import TestTimeOptimizer, TTOConfig
    from reasoner.video_model import VideoReasoner
    from reasoner.vqa import VQAScorer


@dataclass(frozen=True)
class TaskView:
    """What the teacher (and so every tool) may know of a task: never its solution."""

    task_id: str
    instruction: str
    first_frame: np.ndarray | None  # uint8 (H, W, 3); None for a text-only task
    num_frames: int
    seed: int

    def __post_init__(self) -> None:
        f = self.first_frame
        if f is not None and (f.dtype != np.uint8 or f.ndim != 3 or f.shape[-1] != 3):
            raise ValueError(f"first_frame must be uint8 (H, W, 3), got {f.dtype} {f.shape}")


@dataclass(frozen=True)
class ToolSettings:
    """Knobs of the tools that are not the teacher's to choose."""

    max_burst: int = 10  # most LoRA steps one optimize call may ask for
    max_lora_steps: int = 40  # the run's whole LoRA step budget
    preview_frames: int = 3  # frames of a preview shown as images after a burst
    max_inspect_frames: int = 8  # most frames one inspect_frames call returns
    min_image_side: int = 224  # small frames are enlarged (nearest) so a VLM can see them
    # Spec fields the setup fixes over the teacher's choice, e.g. {"lam": 1.0} (None: keep).
    spec_overrides: Mapping[str, Any] = field(default_factory=dict)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """(F, 3, H, W) float in [0, 1] -> (F, H, W, 3) uint8, rounded."""
    array = frames.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).cpu().numpy()


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.array(frame, copy=True)).permute(2, 0, 1).float() / 255.0


def png_bytes(frame: np.ndarray, min_side: int = 0) -> bytes:
    """PNG of one uint8 (H, W, 3) frame, enlarged by an integer factor to >= min_side."""
    image = Image.fromarray(frame)
    factor = max(1, -(-min_side // max(1, min(frame.shape[:2]))))
    if factor > 1:
        image = image.resize((image.width * factor, image.height * factor), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class RunContext:
    """Live objects of one run; see the module docstring."""

    def __init__(
        self,
        run_dir: Path,
        task: TaskView,
        reasoner: VideoReasoner,
        scorer: VQAScorer | None,
        tto_config: TTOConfig,
        settings: ToolSettings | None = None,
        reward_options: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.task = task
        self.reasoner = reasoner
        self.scorer = scorer
        self.tto_config = tto_config
        self.settings = settings or ToolSettings()
        # compile_spec options (include, normalize_yes_no, query_pass_p) from the config.
        self.reward_options = dict(reward_options or {})
        # Mirrors of the state, set by `sync` before every tool call.
        self.videos: dict[str, dict[str, Any]] = {}
        self.specs: list[dict[str, Any]] = []
        self.lora_steps = 0
        self.deadline: float | None = None  # time.monotonic() when the wall clock runs out
        # Live objects.
        self.spec: RewardSpec | None = None
        self.reward: RewardFunction | None = None
        self.session: TestTimeOptimizer | None = None
        self._session_file: str | None = None
        self._frames: dict[str, np.ndarray] = {}

    # -- paths ---------------------------------------------------------------

    def resolve(self, name: str) -> Path:
        """A path inside the run folder; refuses `..`, absolute paths and escaping links."""
        return resolve_in(self.run_dir, name)

    def save_image(self, name: str, frame: np.ndarray) -> str:
        """Save a uint8 frame as PNG under images/; returns its run-relative path."""
        rel = f"images/{name}.png"
        path = self.resolve(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(png_bytes(frame, self.settings.min_image_side))
        return rel

    # -- videos --------------------------------------------------------------

    def add_video(self, video_id: str, frames: np.ndarray, **meta: Any) -> dict[str, Any]:
        """Store a uint8 (F, H, W, 3) video under its id; returns its record for the state."""
        rel = f"videos/{video_id}.npy"
        path = self.resolve(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, frames, allow_pickle=False)
        self._frames[video_id] = frames
        record = {"path": rel, "frames": int(frames.shape[0]), **meta}
        self.videos[video_id] = record
        return record

    def video(self, video_id: str) -> np.ndarray:
        """Frames of a video of this run; a `ToolError` naming the known ids otherwise."""
        if video_id not in self.videos:
            known = ", ".join(sorted(self.videos)) or "none yet (run optimize first)"
            raise ToolError(f"unknown video id {video_id!r}; videos of this run: {known}")
        if video_id not in self._frames:
            path = self.resolve(self.videos[video_id]["path"])
            self._frames[video_id] = np.load(path, allow_pickle=False)
        return self._frames[video_id]

    def next_id(self, kind: str) -> str:
        """A fresh id like `preview-3`: ids are ours, never a model's."""
        n = sum(1 for v in self.videos.values() if v.get("kind") == kind) + 1
        return f"{kind}-{n}"

    # -- spec and session ------------------------------------------------------

    def compile(self, spec: RewardSpec) -> RewardFunction:
        from reasoner.reward import compile_spec

        return compile_spec(
            spec,
            self.scorer,
            num_frames=self.tto_config.num_frames,
            first_frame=None if self.task.first_frame is None else to_tensor(self.task.first_frame),
            **self.reward_options,
        )

    def set_spec(self, spec: RewardSpec) -> None:
        """Make `spec` current: compile it and hand it to the session (LoRA kept)."""
        reward = self.compile(spec)
        self.spec, self.reward = spec, reward
        if self.session is not None:
            self.session.set_reward(reward)

    def require_spec(self) -> tuple[RewardSpec, RewardFunction]:
        if self.spec is None or self.reward is None:
            raise ToolError("no reward spec yet: call write_reward_spec first")
        return self.spec, self.reward

    def ensure_session(self) -> TestTimeOptimizer:
        """The task's optimizer; made on first use with the current spec (fresh LoRA)."""
        if self.session is None:
            from reasoner.tto import TestTimeOptimizer

            _, reward = self.require_spec()
            self.session = TestTimeOptimizer(
                self.reasoner,
                reward,
                self.tto_config,
                prompt=self.task.instruction,
                image=self.condition_image(),
                seed=self.task.seed,
            )
        return self.session

    def render(self, which: str) -> tuple[torch.Tensor, int]:
        """Full-quality video (F, 3, H, W) of the 'best' or 'current' iterate, and its number.

        Before any optimization both are the fresh LoRA, i.e. the base model's video.
        """
        session = self.ensure_session()
        best = which == "best" and session.best_index is not None
        iterate = (
            session.history[session.best_index].iterate  # type: ignore[index]
            if best
            else session.iterate
        )
        # The optimizer renders the iterate its `keep` setting names; set it for this call.
        kept = session.config
        session.config = kept.model_copy(update={"keep": "best" if best else "last"})
        try:
            return session.final_video(), iterate
        finally:
            session.config = kept

    @torch.no_grad()
    def base_video(self) -> torch.Tensor:
        """The base model's video (F, 3, H, W) from the task's noise: no LoRA effect."""
        if self.session is not None:
            raise RuntimeError("base_video would reset the LoRA of a running optimizer")
        self.reasoner.lora.reset()  # a fresh LoRA adds exactly zero
        generator = torch.Generator(device="cpu").manual_seed(self.task.seed)
        cond = self.reasoner.encode(self.task.instruction, self.condition_image())
        noise = self.reasoner.initial_noise(generator)
        return self.reasoner.sample(noise, cond)

    def condition_image(self) -> torch.Tensor | None:
        """The first frame as the video model's image condition (text+image models only)."""
        if not self.reasoner.is_ti2v or self.task.first_frame is None:
            return None
        return to_tensor(self.task.first_frame)

    def save_session(self, burst: int) -> str:
        """Write the optimizer's state after a burst; returns its run-relative path."""
        assert self.session is not None
        rel = f"session/burst-{burst:04d}.pt"
        path = self.resolve(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a kill mid-write leaves the previous state intact.
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.session.state_dict(), tmp)
        tmp.replace(path)
        self._session_file = rel
        self._prune_sessions(keep_from=burst - 1)
        return rel

    def _prune_sessions(self, keep_from: int) -> None:
        """Delete the states of bursts before `keep_from`.

        A resume loads the state its checkpoint names: the previous burst's until
        this burst's result is checkpointed, so that one stays. Older ones are
        never read again, and keeping one per burst filled a disk in a batch of
        2000 runs (3.8 MB each with the mini model).
        """
        for old in self.resolve("session").glob("burst-*.pt"):
            number = old.stem.removeprefix("burst-")
            if number.isdigit() and int(number) < keep_from:
                old.unlink(missing_ok=True)

    # -- resume ----------------------------------------------------------------

    def sync(self, state: dict[str, Any]) -> None:
        """Bring the live objects in line with a (possibly resumed) state.

        In a running process this is cheap: nothing changed behind our back. After
        a restart the spec is recompiled from the history and the optimizer state
        is loaded from the file the state names, so a tool call that was cut off
        by a kill runs again from exactly the state it started from.
        """
        from reasoner.spec import RewardSpec

        self.videos = dict(state.get("videos") or {})
        self.specs = list(state.get("specs") or [])
        self.lora_steps = int(state.get("lora_steps") or 0)
        if self.specs:
            latest = self.specs[-1]["spec"]
            if self.spec is None or self.spec.model_dump(mode="json") != latest:
                self.set_spec(RewardSpec.model_validate(latest))
        elif self.spec is not None:  # a spec no checkpoint recorded: forget it
            self.spec, self.reward, self.session = None, None, None
        session_file = state.get("session_file")
        if session_file != self._session_file:
            self.session = None  # rebuilt from the spec, then loaded from the file
            if session_file is not None:
                session = self.ensure_session()
                # onto this run's device: a run saved on a GPU resumes on a CPU and back
                saved = torch.load(
                    self.resolve(session_file),
                    map_location=self.reasoner.device,
                    weights_only=True,
                )
                session.load_state_dict(saved)
                # A revision after the last burst: losses under the old spec no longer
                # pick the best iterate (what set_reward did in the original process).
                if session.history and session.history[-1].spec_version != self.spec.version:
                    session.set_reward(self.reward)
            self._session_file = session_file
