"""The mini VGM's data, model plumbing and training script, at a tiny budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from agent.cli import app
from evals.mini.paths import REPO_CONFIG
from evals.mini.train_vgm import (
    LOSS_READ_EVERY,
    FlowExample,
    FlowExamples,
    Trainer,
    VgmTrainConfig,
    emphasis_weights,
    read_sampler,
)
from evals.mini.vgm_data import (
    DemoStream,
    StepBatches,
    build_mini_tokenizer,
    instruction_words,
    pixels_to_video,
    video_to_pixels,
)
from evals.mini.vgm_model import VgmArchitecture, batched_velocity, euler_sample
from evals.tasks import FAMILIES, SPLITS, iter_split
from reasoner.config import load_reasoner_config
from reasoner.errors import ConfigError
from reasoner.video_model import VideoReasoner

TINY_ARCH = VgmArchitecture(
    num_layers=1,
    num_attention_heads=2,
    attention_head_dim=8,
    ffn_dim=32,
    freq_dim=16,
    text_dim=16,
    text_heads=2,
    text_ff=32,
)


def tiny_recipe(**overrides: object) -> VgmTrainConfig:
    """Two optimizer steps per stage on 5-frame videos with a one-block model."""
    fields: dict[str, object] = {
        "architecture": TINY_ARCH,
        "num_frames": 5,
        "batch_size": 2,
        "flow_steps": 2,
        "warmup_steps": 1,
        "distill_pairs": 2,
        "teacher_steps": 2,
        "distill_steps": 2,
    }
    fields.update(overrides)
    return VgmTrainConfig.model_validate(fields)


def test_tokenizer_covers_every_held_out_instruction_word() -> None:
    tokenizer = build_mini_tokenizer(instruction_words(), model_max_length=48)
    unk = tokenizer.unk_token_id
    for task in iter_split("test", limit=25):
        ids = tokenizer(task.instruction).input_ids
        assert unk not in ids, task.instruction
        assert len(ids) <= 48
        # One piece per word: colour words reach the model as whole tokens.
        words = task.instruction.replace(".", " ").replace(",", " ").split()
        assert len(tokenizer.tokenize(task.instruction)) <= len(words) + 8


def test_demo_stream_is_a_pure_function_of_the_step() -> None:
    stream = DemoStream(batch_size=6, num_frames=5)
    first, again = stream.batch(3), DemoStream(batch_size=6, num_frames=5).batch(3)
    assert first.task_ids == again.task_ids
    assert torch.equal(first.videos, again.videos)
    families = [tid.split("/")[1] for tid in first.task_ids]
    assert families == [list(FAMILIES)[i % len(FAMILIES)] for i in range(18, 24)]
    assert all(int(tid.split("/")[2]) in SPLITS["train"] for tid in first.task_ids)
    assert first.videos.shape == (6, 3, 5, 32, 32)
    assert first.videos.min() >= -1 and first.videos.max() <= 1
    with pytest.raises(ValueError, match="outside the train split"):
        DemoStream(2, first_seed=SPLITS["test"].start)


def test_pixel_conversion_round_trips() -> None:
    task = next(iter_split("val", limit=1))
    assert (pixels_to_video(video_to_pixels(task.solution)) == task.solution).all()


def test_training_reads_the_sampler_of_the_config_it_serves() -> None:
    sigmas, shift = read_sampler(REPO_CONFIG)
    vm = load_reasoner_config(REPO_CONFIG).video_model
    assert (sigmas, shift) == (vm.sampler_sigmas, vm.flow_shift)
    assert vm.kind == "wan_ti2v" and vm.num_inference_steps == len(sigmas) <= 4


def test_bad_recipe_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown families"):
        tiny_recipe(families=["navigate", "sudoku"])
    with pytest.raises(ValueError, match="extra"):
        VgmTrainConfig.model_validate({"flow_step": 3})


def test_bad_device_is_rejected_before_anything_is_built(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--device 'gpu' is not a torch device"):
        Trainer(tiny_recipe(), tmp_path / "work", device="gpu")
    assert not (tmp_path / "work").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without GPU")
def test_cuda_without_gpu_says_to_train_on_the_cpu(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no CUDA GPU is visible; pass --device cpu"):
        Trainer(tiny_recipe(), tmp_path / "work", device="cuda")
    result = CliRunner().invoke(
        app, ["train", "vgm", "--device", "cuda", "--work-dir", str(tmp_path / "cli")]
    )
    assert result.exit_code == 2, result.output
    assert "no CUDA GPU is visible" in result.output
    assert not (tmp_path / "cli").exists()  # refused before the recipe ran


def test_every_training_tensor_follows_the_device(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The GPU path without a GPU: on the meta device (shapes only, no values) a CPU
    tensor that was not moved to the model's device makes most operations raise (not
    all: `torch.cat` lets a CPU tensor join a meta one), so this catches most leaks."""
    from transformers import masking_utils

    # UMT5's mask helper reads a value (`.all()`) to skip work; meta tensors have none.
    monkeypatch.setattr(masking_utils, "_ignore_bidirectional_mask_sdpa", lambda *a, **k: False)
    cfg = tiny_recipe()
    trainer = Trainer(
        cfg, tmp_path, threads=1, show_progress=False, log=lambda _: None, device="meta"
    )
    assert {p.device.type for p in trainer.trainable.parameters()} == {"meta"}
    stream = DemoStream(cfg.batch_size, cfg.families, 0, cfg.size, cfg.num_frames)
    trainer._flow_loss(FlowExamples(stream, cfg.seed, cfg.sigma_one_share)(0)).backward()
    shape = (2, 3, cfg.num_frames, cfg.size, cfg.size)
    pairs = {  # stored on the CPU, as the teacher's ODE leaves them
        "instructions": [t.instruction for t in iter_split("train", limit=2, num_frames=5)][:2],
        "first_frames": torch.zeros(2, 3, 1, cfg.size, cfg.size, dtype=torch.float16),
        "endpoints": torch.zeros(shape, dtype=torch.float16),
    }
    trainer._distill_loss(0, pairs).backward()
    out = euler_sample(
        trainer.transformer,
        torch.zeros(shape, device="meta"),
        [1.0, 0.5, 0.0],
        trainer._embed(pairs["instructions"]),
        torch.zeros(2, 3, 1, cfg.size, cfg.size, device="meta"),
    )
    assert out.device.type == "meta" and out.shape == shape


def quiet_trainer(cfg: VgmTrainConfig, work_dir: Path) -> Trainer:
    """One thread, a checkpoint after every step, no output."""
    return Trainer(
        cfg, work_dir, threads=1, checkpoint_every=1, show_progress=False, log=lambda _: None
    )


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.transformer.state_dict().items()}


def test_two_steps_change_the_weights_and_export_a_loadable_model(tmp_path: Path) -> None:
    trainer = quiet_trainer(tiny_recipe(), tmp_path / "work")
    before = _weights(trainer)
    text_before = {k: v.clone() for k, v in trainer.text_encoder.state_dict().items()}
    trainer.train()
    after = _weights(trainer)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) > len(before) // 2  # the transformer learned
    text_after = {k: v.clone() for k, v in trainer.text_encoder.state_dict().items()}
    # The text encoder is trained with it (Wan's cross-attention needs roles in the text states).
    assert any(not torch.equal(v, text_after[k]) for k, v in text_before.items())
    assert len(trainer.history["flow"]) == 2 and len(trainer.history["distill"]) == 2
    assert (tmp_path / "work" / "distill_pairs.pt").is_file()
    # Stage 1's EMA is kept beside the checkpoint; stage 2 moved the weights on from it.
    flow_ema = torch.load(trainer.flow_ema_path(), weights_only=True)
    assert set(flow_ema) == set(trainer.trainable.state_dict())
    assert any(not torch.equal(flow_ema[k], v) for k, v in trainer.trainable.state_dict().items())

    folder = trainer.export(tmp_path / "model")
    cfg = load_reasoner_config(REPO_CONFIG).model_dump()
    cfg["video_model"].update(source=str(folder), num_frames=5)
    from reasoner.config import ReasonerConfig

    reasoner = VideoReasoner.from_config(ReasonerConfig.model_validate(cfg), attach_lora=False)
    for key, value in reasoner.transformer.state_dict().items():
        assert torch.equal(value, after[key])
    for key, value in reasoner.text_encoder.state_dict().items():
        assert torch.equal(value, text_after[key])  # the reasoner reads the trained encoder
    # The training forward is the reasoner's velocity field, batched.
    task = next(iter_split("val", families=["navigate"], limit=1, num_frames=5))
    image = torch.tensor(task.first_frame, dtype=torch.float32).permute(2, 0, 1) / 255
    cond = reasoner.encode(task.instruction, image)
    noise = reasoner.initial_noise(torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = batched_velocity(
            reasoner.transformer,
            noise.repeat(2, 1, 1, 1, 1),
            torch.tensor([0.5, 1.0]),
            cond.prompt_embeds.repeat(2, 1, 1),
            cond.image_latent.repeat(2, 1, 1, 1, 1),
        )
        torch.testing.assert_close(ours[1:], reasoner.velocity(noise, 1.0, cond))
        torch.testing.assert_close(ours[:1], reasoner.velocity(noise, 0.5, cond))


def test_resumed_training_ends_with_the_same_weights(tmp_path: Path) -> None:
    straight = quiet_trainer(tiny_recipe(), tmp_path / "a")
    straight.train()

    # Stop after the first flow step: a checkpoint of step 1 is all that is left.
    interrupted = quiet_trainer(tiny_recipe(), tmp_path / "b")
    stop = RuntimeError("stopped")

    def stop_after_first(name: str, step: int, *args: object) -> None:
        Trainer._save_checkpoint(interrupted, name, step, *args)  # type: ignore[arg-type]
        raise stop

    interrupted._save_checkpoint = stop_after_first  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="stopped"):
        interrupted.train()
    resumed = quiet_trainer(tiny_recipe(), tmp_path / "b")
    resumed.train()
    for key, value in straight.trainable.state_dict().items():
        torch.testing.assert_close(resumed.trainable.state_dict()[key], value, rtol=0, atol=0)
    assert resumed.history == straight.history

    with pytest.raises(ValueError, match="different recipe"):
        quiet_trainer(tiny_recipe(flow_lr=0.5), tmp_path / "b").train()


def test_every_step_loss_is_logged_though_read_every_few_steps(tmp_path: Path) -> None:
    """Losses are read in groups (LOSS_READ_EVERY) and at checkpoints; none is lost."""
    steps = LOSS_READ_EVERY + 3
    recipe = tiny_recipe(flow_steps=steps, distill_steps=0, distill_pairs=0)
    trainer = Trainer(
        recipe,
        tmp_path,
        threads=1,
        checkpoint_every=steps - 1,
        show_progress=False,
        log=lambda _: None,
    )
    seen: list[float] = []
    flow_loss = trainer._flow_loss

    def recorded(example: FlowExample) -> torch.Tensor:
        loss = flow_loss(example)
        seen.append(loss.item())
        return loss

    trainer._flow_loss = recorded  # type: ignore[method-assign]
    assert trainer.train() is True
    assert trainer.history["flow"] == seen and len(seen) == steps


def test_emphasis_weights_favour_objects_and_changes() -> None:
    white, red, black = (1.0, 1.0, 1.0), (0.7, -0.7, -0.7), (-1.0, -1.0, -1.0)
    video = torch.ones(1, 3, 3, 2, 2)  # (B, C, F, H, W): all white
    video[0, :, :, 1, 1] = torch.tensor(black)[:, None]  # a wall, everywhere
    video[0, :, 0, 0, 1] = torch.tensor(red)  # an object that leaves (0, 1) ...
    video[0, :, 1:, 1, 0] = torch.tensor(red)[:, None]  # ... for (1, 0)
    video[0, :, 2, 0, 0] = torch.tensor(white)
    weights = emphasis_weights(video, factor=5.0)
    assert weights.shape == (1, 1, 2, 2, 2)
    # Per frame 1..2: (0,1) changed (5), (1,0) object (5), (0,0) and the wall (1).
    raw = torch.tensor([[1.0, 5.0], [5.0, 1.0]])
    expected = torch.stack([raw, raw]) / raw.mean()
    torch.testing.assert_close(weights[0, 0], expected)


def test_a_time_limit_stops_at_checkpoints_and_reruns_end_with_the_same_weights(
    tmp_path: Path,
) -> None:
    recipe = tiny_recipe(flow_steps=3, distill_steps=3)
    straight = quiet_trainer(recipe, tmp_path / "a")
    assert straight.train() is True

    # A clock that moves one second per reading: with a half-second limit every run
    # stops at its first chance, after one checkpoint (or before the teacher ODE).
    ticks = iter(range(10_000))
    logs: list[str] = []
    runs = 0
    while True:
        runs += 1
        assert runs < 20, "the time-limited reruns never finished"
        trainer = Trainer(
            recipe,
            tmp_path / "b",
            threads=1,
            checkpoint_every=1,
            show_progress=False,
            log=logs.append,
            time_limit_s=0.5,
            clock=lambda: float(next(ticks)),
        )
        if trainer.train():
            break
    # Flow steps 1 and 2, the end of stage 1, distillation steps 1 and 2: five stops.
    stops = [line for line in logs if line.startswith("time limit")]
    assert len(stops) == 5 and runs == 6
    assert "flow step 1/3" in stops[0] and "the end of stage 1" in stops[2]
    assert "distill step 2/3" in stops[4]
    for key, value in straight.trainable.state_dict().items():
        torch.testing.assert_close(trainer.trainable.state_dict()[key], value, rtol=0, atol=0)


def test_max_minutes_on_the_command_line_stops_before_writing_the_model(tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe().model_dump(mode="json")))
    args = ["train", "vgm", "--config", str(recipe), "--threads", "1"]
    args += ["--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "model")]
    first = CliRunner().invoke(app, [*args, "--max-minutes", "0"])
    assert first.exit_code == 0, first.output
    assert "time limit" in first.output and "the end of stage 1" in first.output
    assert not (tmp_path / "model").exists()
    assert (tmp_path / "work" / "flow_ema.pt").is_file()
    second = CliRunner().invoke(app, [*args, "--max-minutes", "0"])  # no flow step left to run
    assert second.exit_code == 0, second.output
    assert (tmp_path / "model" / "transformer").is_dir() and "wrote" in second.output


def test_worker_processes_render_the_same_batches_and_train_the_same_weights(
    tmp_path: Path,
) -> None:
    stream = DemoStream(2, ["navigate", "pairs"], num_frames=5)
    ahead = StepBatches(stream.batch, 3, 7, workers=2)
    for step in range(3, 7):
        batch, expected = ahead(step), stream.batch(step)
        assert batch.task_ids == expected.task_ids
        assert torch.equal(batch.videos, expected.videos)
    with pytest.raises(ValueError, match="next one is 1"):
        StepBatches(stream.batch, 1, 4)(2)
    # The noise is drawn with the batch: the workers draw what the loop would.
    examples = FlowExamples(stream, seed=3, sigma_one_share=0.5)
    drawn = StepBatches(examples, 0, 3, workers=2)
    for step in range(3):
        example, expected_example = drawn(step), examples(step)
        assert torch.equal(example.noise, expected_example.noise)
        assert torch.equal(example.sigmas, expected_example.sigmas)
        assert example.noise.shape == example.batch.videos.shape

    recipe = tiny_recipe(flow_steps=4, distill_steps=0, distill_pairs=0)
    weights = []
    for workers in (0, 2):
        trainer = Trainer(
            recipe,
            tmp_path / str(workers),
            threads=1,
            checkpoint_every=2,
            show_progress=False,
            log=lambda _: None,
            data_workers=workers,
        )
        assert trainer.train() is True
        weights.append(trainer.trainable.state_dict())
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=0, atol=0)
    with pytest.raises(ValueError, match="data_workers"):
        Trainer(recipe, tmp_path / "bad", data_workers=-1)


def test_stage_two_starts_every_pair_from_the_noise_of_its_teacher_solve(tmp_path: Path) -> None:
    """The pairs keep no noise: stage 2 redraws it, and each pair's redrawn noise must be
    the one the teacher's ODE ran from (two chunks of pairs, looked up in shuffled order)."""
    recipe = tiny_recipe(distill_pairs=4, distill_steps=1)
    trainer = quiet_trainer(recipe, tmp_path / "work")
    assert trainer.train() is True
    pairs = torch.load(tmp_path / "work" / "distill_pairs.pt", weights_only=False)
    trainer.trainable.load_state_dict(torch.load(trainer.flow_ema_path(), weights_only=True))
    order = torch.tensor([3, 0, 2, 1])
    shape = tuple(pairs["endpoints"].shape[1:])
    noise = trainer._pair_noise(order, shape, num_pairs=4)
    teacher_sigmas = torch.linspace(1.0, 0.0, recipe.teacher_steps + 1).tolist()
    with torch.no_grad():
        solved = euler_sample(
            trainer.transformer,
            noise,
            teacher_sigmas,
            trainer._embed([pairs["instructions"][i] for i in order.tolist()]),
            pairs["first_frames"][order].float(),
        )
    # The endpoints are stored in float16.
    torch.testing.assert_close(solved, pairs["endpoints"][order].float(), rtol=0, atol=2e-3)
    # A noise of another pair would not match: the check can fail.
    assert not torch.allclose(noise[0], noise[1])


def test_checkpoint_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="checkpoint_every must be at least 1"):
        Trainer(tiny_recipe(), tmp_path / "work", checkpoint_every=0)
    result = CliRunner().invoke(
        app, ["train", "vgm", "--checkpoint-every", "0", "--work-dir", str(tmp_path / "cli")]
    )
    assert result.exit_code == 2 and "--checkpoint-every" in result.output
    assert not (tmp_path / "cli").exists()


def test_tf32_is_switched_on_for_a_gpu_only() -> None:
    from evals.mini.device import use_tf32_matmuls

    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32
    try:
        matmul.allow_tf32 = cudnn.allow_tf32 = False
        use_tf32_matmuls(torch.device("cpu"))
        assert not matmul.allow_tf32 and not cudnn.allow_tf32
        use_tf32_matmuls(torch.device("cuda", 0))
        assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved
