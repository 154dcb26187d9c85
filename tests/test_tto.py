"""The test-time optimization loop on tiny real Wan components and a check-based spec.

A tiny pixel-space Wan transformer (16x16, 5 frames) keeps a step at a few
milliseconds; one test runs the latent model with its VAE and a real tiny
Qwen3-VL scorer for the query path.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from pydantic import ValidationError
from tiny_vlm import QUESTIONS, tiny_scorer
from tiny_wan import one_torch_thread, tiny_config

from reasoner.errors import ConfigError
from reasoner.frames import sample_frames
from reasoner.reward import RewardFunction, RewardResult, compile_spec
from reasoner.spec import RewardSpec
from reasoner.tto import StepRecord, TestTimeOptimizer, TTOConfig
from reasoner.video_model import VideoReasoner

K = 5
PROMPT = "the white dot moves to the bottom right"
CONFIG = TTOConfig(lr=1e-2, max_steps=6, tau=None, num_frames=K)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def reach_spec(version: int = 1, x: float = 0.9) -> RewardSpec:
    return RewardSpec(
        version=version,
        rationale="the white dot must end near the corner",
        checks=[
            {
                "kind": "reach_by_end",
                "role": "goal",
                "object": {"color": "white", "tolerance": 0.5},
                "target": {"type": "point", "x": x, "y": 0.9},
            }
        ],
    )


@pytest.fixture(scope="module")
def reasoner() -> VideoReasoner:
    cfg = tiny_config("tiny-pixel", "wan_t2v", "identity", height=16, width=16, num_frames=5)
    return VideoReasoner.from_config(cfg)


@pytest.fixture(scope="module")
def reward() -> RewardFunction:
    return compile_spec(reach_spec(), None, num_frames=K)


def make(reasoner, reward, config: TTOConfig = CONFIG, seed: int = 0) -> TestTimeOptimizer:
    return TestTimeOptimizer(reasoner, reward, config, prompt=PROMPT, seed=seed)


def base_weights(reasoner: VideoReasoner) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone()
        for n, p in reasoner.transformer.named_parameters()
        if ".lora_" not in n
    }


def lora_weights(tto: TestTimeOptimizer) -> list[torch.Tensor]:
    return [p.detach().clone() for p in tto.params]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def losses(history: list[StepRecord]) -> list[float]:
    return [r.loss for r in history]


@pytest.fixture(scope="module")
def reference(reasoner, reward) -> tuple[list[StepRecord], list[torch.Tensor]]:
    """One uninterrupted run of 6 steps: the history and the final LoRA."""
    tto = make(reasoner, reward)
    tto.run_to_end()
    return tto.history, lora_weights(tto)


def test_loss_falls_and_only_the_lora_moves(reasoner, reward) -> None:
    before = base_weights(reasoner)
    tto = make(reasoner, reward)
    fresh = lora_weights(tto)
    history = tto.run_to_end()

    # 6 gradient steps, then a closing evaluation of the 6th step's result.
    assert [r.action for r in history] == ["step"] * 6 + ["stop"]
    assert [r.iterate for r in history] == list(range(7))
    assert history[-1].stop_reason == "max_steps" and tto.done
    values = losses(history)
    assert values[-1] < values[0] - 0.005
    assert sum(b < a for a, b in itertools.pairwise(values)) >= 5
    assert all(r.grad_norm is not None and r.grad_norm > 0 for r in history[:-1])
    assert history[0].terms[0].name.startswith("check[0]")
    assert history[0].terms[0].passed is not None

    assert not same(fresh, lora_weights(tto))
    after = base_weights(reasoner)
    assert all(torch.equal(before[n], after[n]) for n in before)

    # One transformer call per evaluation (one-step prediction, no guidance).
    assert tto.cost.vgm_forward_passes == 7
    assert tto.cost.optimization_steps == 6


def test_early_stop_triggers_when_loss_crosses_tau_and_not_before(
    reasoner, reward, reference
) -> None:
    values = losses(reference[0])
    # The first evaluation that is lower than every one before it.
    i = next(j for j in range(1, len(values)) if values[j] < min(values[:j]))
    tau = (values[i] + min(values[:i])) / 2
    # The paper's rule: the total loss alone (the next test covers the check verdicts).
    tto = make(reasoner, reward, CONFIG.model_copy(update={"tau": tau, "stop_needs_checks": False}))
    history = tto.run_to_end()

    assert [r.action for r in history] == ["step"] * i + ["stop"]
    assert history[-1].stop_reason == "threshold" and tto.stop_reason == "threshold"
    assert losses(history) == values[: i + 1]
    # Stopped before stepping: the LoRA is the evaluated iterate, not one step further.
    assert tto.iterate == i and tto.best_index == i
    assert not tto.done  # a threshold stop can be resumed (e.g. after a spec revision)


def test_tau_stop_waits_for_every_check_to_pass(reasoner) -> None:
    # A tau no loss exceeds, and a check no iterate passes (a point the white dot,
    # with a tolerance of 0.01, never reaches in 3 steps).
    strict_spec = RewardSpec(
        version=1,
        rationale="an out-of-reach target",
        checks=[
            {
                "kind": "reach_by_end",
                "role": "goal",
                "object": {"color": "white", "tolerance": 0.5},
                "target": {"type": "point", "x": 0.02, "y": 0.02},
                "tolerance": 0.01,
            }
        ],
    )
    reward = compile_spec(strict_spec, None, num_frames=K)
    config = CONFIG.model_copy(update={"tau": 1e9, "max_steps": 3})
    history = make(reasoner, reward, config).run_to_end()
    verdicts = [t.passed for r in history for t in r.terms if t.role == "check"]
    assert verdicts and not any(verdicts)
    assert [r.action for r in history] == ["step", "step", "step", "stop"]
    assert history[-1].stop_reason == "max_steps"

    paper = make(reasoner, reward, config.model_copy(update={"stop_needs_checks": False}))
    assert [r.stop_reason for r in paper.run_to_end()] == ["threshold"]


class NaNOnCalls:
    """A real compiled spec whose total turns non-finite on chosen calls.

    `mode="loss"` makes the loss NaN; `mode="grad"` keeps the loss value but adds
    sqrt(0 * x), whose gradient is 0 * inf = NaN.
    """

    def __init__(self, reward: RewardFunction, calls: set[int], mode: str = "loss") -> None:
        self.reward, self.calls, self.mode = reward, calls, mode
        self.count = 0

    @property
    def version(self) -> int:
        return self.reward.version

    def __call__(self, frames: torch.Tensor) -> RewardResult:
        result = self.reward(frames)
        hit = self.count in self.calls
        self.count += 1
        if not hit:
            return result
        if self.mode == "loss":
            total = result.total * math.nan
        else:
            total = result.total + torch.sqrt(frames.sum() * 0.0)
        return RewardResult(total=total, terms=result.terms)


@pytest.mark.parametrize("mode", ["loss", "grad"])
def test_non_finite_step_is_skipped_and_the_lora_restored(
    reasoner, reward, reference, mode
) -> None:
    tto = make(reasoner, reward, CONFIG.model_copy(update={"max_steps": 7}))
    tto.set_reward(NaNOnCalls(reward, calls={2}, mode=mode))
    tto.run(2)
    good = lora_weights(tto)
    (bad,) = tto.run(1)

    assert bad.action == "skip" and tto.nan_skips == 1
    assert bad.iterate == 2 and tto.iterate == 2
    assert same(good, lora_weights(tto))  # restored bit for bit
    if mode == "loss":
        assert math.isnan(bad.loss)
    else:
        assert bad.loss == reference[0][2].loss and math.isnan(bad.grad_norm)

    # The skip consumed one of the 7 attempts; the rest replays the clean run
    # exactly, because the optimizer's moments were restored too.
    tto.run_to_end()
    clean = [r for r in tto.history if r.action != "skip"]
    assert losses(clean) == losses(reference[0])
    assert same(lora_weights(tto), reference[1])


def test_weights_broken_by_a_step_are_rolled_back_with_the_moments(
    reasoner, reward, reference
) -> None:
    tto = make(reasoner, reward, CONFIG.model_copy(update={"max_steps": 7}))
    calls = []

    def corrupt_third_step(optimizer, args, kwargs) -> None:
        # A real optimizer hook: after the 3rd update, one weight overflows.
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                tto.params[0].view(-1)[0] = math.inf

    tto.optimizer.register_step_post_hook(corrupt_third_step)
    tto.run(2)
    good = lora_weights(tto)
    (bad,) = tto.run(1)
    assert bad.action == "skip" and math.isfinite(bad.loss) and math.isfinite(bad.grad_norm)
    assert same(good, lora_weights(tto))
    # Adam's moments and step count were rolled back too: the rest replays the clean run.
    tto.run_to_end()
    clean = [r for r in tto.history if r.action != "skip"]
    assert losses(clean) == losses(reference[0])
    assert same(lora_weights(tto), reference[1])


def test_persistent_nan_gives_up(reasoner, reward) -> None:
    config = CONFIG.model_copy(update={"max_nan_skips": 2})
    tto = make(reasoner, NaNOnCalls(reward, calls=set(range(100))), config)
    fresh = lora_weights(tto)
    history = tto.run(5)
    assert [r.action for r in history] == ["skip", "skip"]
    assert tto.stop_reason == "nan" and tto.done
    assert tto.run(3) == []
    assert same(fresh, lora_weights(tto))
    assert tto.best_index is None


def test_same_seed_same_history_other_seed_differs(reasoner, reward, reference) -> None:
    again = make(reasoner, reward)
    again.run_to_end()
    assert losses(again.history) == losses(reference[0])
    assert [r.grad_norm for r in again.history] == [r.grad_norm for r in reference[0]]
    assert same(lora_weights(again), reference[1])

    other = make(reasoner, reward, CONFIG.model_copy(update={"max_steps": 0}), seed=1)
    other.run_to_end()
    assert other.history[0].loss != reference[0][0].loss


def test_bursts_of_3_and_3_equal_one_run_of_6(reasoner, reward, reference) -> None:
    tto = make(reasoner, reward)
    first = tto.run(3)
    assert [r.action for r in first] == ["step"] * 3 and not tto.done
    second = tto.run(3)
    assert first + second == tto.history
    assert losses(tto.history) == losses(reference[0])
    assert [r.action for r in tto.history] == [r.action for r in reference[0]]
    assert same(lora_weights(tto), reference[1])
    assert tto.run(3) == []  # the step budget is spent


def test_set_reward_keeps_the_lora_and_records_spec_versions(reasoner, reward) -> None:
    tto = make(reasoner, reward)
    tto.run(2)
    weights = lora_weights(tto)
    revised = compile_spec(reach_spec(version=2, x=0.1), None, num_frames=K)
    tto.set_reward(revised)
    assert same(weights, lora_weights(tto))
    assert tto.best_index is None  # best is re-chosen under the new spec

    records = tto.run(2)
    assert [r.spec_version for r in tto.history] == [1, 1, 2, 2]
    # The first v2 evaluation scores the LoRA trained under v1, not a fresh one.
    with torch.no_grad():
        for p, w in zip(tto.params, weights, strict=True):
            p.copy_(w)
        latent = reasoner.predict_latent(tto.noise, tto.cond)
        by_hand = revised(sample_frames(reasoner.decode(latent), K)).total
    assert records[0].loss == float(by_hand)
    assert tto.best_index in (2, 3)


def test_final_video_uses_the_best_iterate_and_the_same_noise(reasoner, reward) -> None:
    tto = make(reasoner, reward, CONFIG.model_copy(update={"max_steps": 3}))
    noise = tto.noise.clone()
    tto.run_to_end()
    current = lora_weights(tto)
    result = tto.result(final_video=True)
    assert result.best_index == min(range(4), key=lambda i: result.history[i].loss)
    assert result.cost.samples == 1
    assert same(current, lora_weights(tto))  # the current iterate is put back

    with torch.no_grad():
        for p, w in zip(tto.params, tto._best[2], strict=True):
            p.copy_(w)
        by_hand = reasoner.sample(noise, reasoner.encode(PROMPT))
    assert result.video is not None and torch.equal(result.video, by_hand)
    assert result.video.shape == (5, 3, 16, 16)


def test_zero_steps_gives_the_base_models_video(reasoner, reward) -> None:
    reasoner.lora.reset()
    generator = torch.Generator().manual_seed(3)
    base = reasoner.sample(reasoner.initial_noise(generator), reasoner.encode(PROMPT))
    tto = make(reasoner, reward, CONFIG.model_copy(update={"max_steps": 0}), seed=3)
    tto.run_to_end()
    assert [r.action for r in tto.history] == ["stop"]
    assert torch.equal(tto.final_video(), base)


def test_time_budget_stops_the_loop(reasoner, reward) -> None:
    tto = make(reasoner, reward, CONFIG.model_copy(update={"time_budget_s": 1e-9}))
    assert tto.run(5) == []
    assert tto.stop_reason == "time_budget" and tto.done


def test_last_step_grad_mode_counts_every_sampler_call(reasoner, reward) -> None:
    config = CONFIG.model_copy(update={"grad_steps": "last", "max_steps": 2})
    tto = make(reasoner, reward, config)
    history = tto.run_to_end()
    assert all(r.grad_norm > 0 for r in history if r.action == "step")
    steps = reasoner.config.video_model.num_inference_steps
    assert tto.cost.vgm_forward_passes == 3 * steps


def test_state_dict_resumes_bit_identically(reasoner, reward, reference, tmp_path) -> None:
    tto = make(reasoner, reward)
    tto.run(2)
    torch.save(tto.state_dict(), tmp_path / "state.pt")
    tto.run(100)  # run on: the saved state must not alias live tensors

    resumed = make(reasoner, reward)
    resumed.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert resumed.iterate == 2 and len(resumed.history) == 2
    resumed.run_to_end()
    assert losses(resumed.history) == losses(reference[0])
    assert same(lora_weights(resumed), reference[1])

    wrong = make(reasoner, reward, seed=7)
    with pytest.raises(ValueError, match="different noise"):
        wrong.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))


def test_bad_config_is_rejected_with_a_fix(reasoner, reward) -> None:
    with pytest.raises(ValidationError):
        TTOConfig(lr=0.0)
    with pytest.raises(ValidationError):
        TTOConfig(learning_rate=1e-4)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"tto\.num_frames"):
        make(reasoner, reward, TTOConfig(num_frames=24))
    with pytest.raises(ValueError, match="steps must be"):
        make(reasoner, reward).run(-1)


def test_query_spec_on_the_latent_model_records_p_yes_and_falls() -> None:
    # Latent Wan + full VAE as the surrogate, scored by a tiny real Qwen3-VL.
    reasoner = VideoReasoner.from_config(tiny_config("tiny", "wan_t2v", "full"))
    spec = RewardSpec(
        rationale="goal on the last frames, one process rule",
        goal={"text": QUESTIONS[0], "window": {"kind": "last_n", "n": 2}},
        process=[{"text": QUESTIONS[1]}],
    )
    reward = compile_spec(spec, tiny_scorer("qwen3_vl"), num_frames=K)
    config = TTOConfig(lr=1e-2, max_steps=3, tau=None, num_frames=K)
    history = TestTimeOptimizer(reasoner, reward, config, prompt=PROMPT).run_to_end()

    values = losses(history)
    assert all(b < a for a, b in itertools.pairwise(values))
    for record in history:
        goal, process = record.terms
        assert (goal.name, process.name) == ("goal", "process[0]")
        # lam = 0.5 between one goal and one process query.
        assert record.loss == pytest.approx(0.5 * goal.loss + 0.5 * process.loss, rel=1e-5)
        assert goal.p_yes == pytest.approx(math.exp(-goal.loss), rel=1e-5)


def candidate_losses(reasoner, reward, seed: int, count: int) -> list[float]:
    """The spec loss of each of the seed's first `count` noises' one-step predictions."""
    reasoner.lora.reset()
    generator = torch.Generator().manual_seed(seed)
    cond = reasoner.encode(PROMPT)
    out = []
    with torch.no_grad():
        for _ in range(count):
            latent = reasoner.predict_latent(reasoner.initial_noise(generator), cond)
            frames = sample_frames(reasoner.decode(latent, which="surrogate"), K)
            out.append(float(reward(frames).total))
    return out


def test_noise_candidates_keep_the_draw_the_spec_scores_best(reasoner, reward) -> None:
    by_hand = candidate_losses(reasoner, reward, seed=3, count=4)
    best = min(range(4), key=by_hand.__getitem__)
    assert best != 0  # seed 3's first draw is not its best, so the pick shows

    tto = make(reasoner, reward, CONFIG.model_copy(update={"noise_candidates": 4}), seed=3)
    assert tto.noise_losses == pytest.approx(by_hand, rel=1e-6)
    assert tto.noise_index == best
    generator = torch.Generator().manual_seed(3)
    draws = [reasoner.initial_noise(generator) for _ in range(4)]
    assert torch.equal(tto.noise, draws[best])
    assert tto.cost.vgm_forward_passes == 4  # one forward pass per candidate, counted
    # The loop starts from the picked draw: its first evaluation is that candidate's loss.
    (first,) = tto.run(1)
    assert first.loss == pytest.approx(by_hand[best], rel=1e-6)

    # One candidate is the paper's single draw: the seed's first noise, nothing scored.
    single = make(reasoner, reward, seed=3)
    assert single.noise_losses == [] and torch.equal(single.noise, draws[0])
    assert single.cost.vgm_forward_passes == 0


def test_a_resumed_run_keeps_the_noise_it_picked(reasoner, reward, tmp_path) -> None:
    config = CONFIG.model_copy(update={"noise_candidates": 4})
    seed = next(s for s in range(20) if make(reasoner, reward, config, seed=s).noise_index)
    tto = make(reasoner, reward, config, seed=seed)
    tto.run(2)
    torch.save(tto.state_dict(), tmp_path / "state.pt")

    # Rebuilt so that it picks another draw (as a revised spec may): the state says which.
    rebuilt = make(reasoner, reward, CONFIG, seed=seed)
    assert rebuilt.noise_index == 0
    rebuilt.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert rebuilt.noise_index == tto.noise_index and torch.equal(rebuilt.noise, tto.noise)
    assert rebuilt.noise_losses == tto.noise_losses
