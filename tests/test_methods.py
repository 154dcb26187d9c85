"""Every method behind one interface, each with a cost record, on tiny real Wan models."""

from __future__ import annotations

import re

import pytest
import torch
from tiny_wan import one_torch_thread, tiny_config

from prompts.loader import render
from reasoner.cost import CostRecord, TeacherUsage
from reasoner.frames import sample_frames
from reasoner.methods import (
    BaseMethod,
    BestOfN,
    Condition,
    MethodOutput,
    RuleRewriter,
    SolverMethod,
    TeacherMethod,
)
from reasoner.reward import compile_spec
from reasoner.spec import RewardSpec
from reasoner.tto import TestTimeOptimizer, TTOConfig
from reasoner.video_model import VideoReasoner

K = 5
STEPS = 3  # sampler steps of the tiny config: transformer calls per sample
COND = Condition(prompt="The white dot moves to the bottom right.", seed=0)
RULES = ["The dot ends in the bottom-right corner.", "The dot moves smoothly."]
TTO = TTOConfig(lr=1e-2, max_steps=4, tau=None, num_frames=K)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


@pytest.fixture(scope="module")
def reasoner() -> VideoReasoner:
    cfg = tiny_config("tiny-pixel", "wan_t2v", "identity", height=16, width=16, num_frames=5)
    return VideoReasoner.from_config(cfg)


def corner_spec(x: float = 0.9, y: float = 0.9) -> RewardSpec:
    return RewardSpec(
        rationale="the white dot must end at the target",
        checks=[
            {
                "kind": "reach_by_end",
                "role": "goal",
                "object": {"color": "white", "tolerance": 0.5},
                "target": {"type": "point", "x": x, "y": y},
            }
        ],
    )


class CornerSpecWriter:
    """A real, rule-based `SpecWriter`: it reads the target corner from the instruction."""

    def __init__(self) -> None:
        self.corners = {"top left": (0.1, 0.1), "top right": (0.9, 0.1), "bottom left": (0.1, 0.9)}
        self.calls = 0

    @property
    def usage(self) -> TeacherUsage:
        return TeacherUsage(calls=self.calls)

    def write_spec(self, prompt: str, image: torch.Tensor | None) -> RewardSpec:
        self.calls += 1
        corner = next((c for c in self.corners if c in prompt.lower()), None)
        return corner_spec(*self.corners[corner]) if corner else corner_spec()


def base_state(reasoner: VideoReasoner) -> dict[str, torch.Tensor]:
    return {
        n: p.detach().clone()
        for n, p in reasoner.transformer.named_parameters()
        if ".lora_" not in n
    }


@torch.no_grad()
def sample_by_hand(reasoner, prompt: str, seed: int, index: int = 0) -> torch.Tensor:
    """The `index`-th sample from the seed's generator, with the base model."""
    reasoner.lora.reset()
    generator = torch.Generator().manual_seed(seed)
    for _ in range(index + 1):
        noise = reasoner.initial_noise(generator)
    return reasoner.sample(noise, reasoner.encode(prompt))


def test_base_is_one_sample_of_the_seed(reasoner) -> None:
    out = BaseMethod(reasoner)(COND)
    assert out.method == "base"
    assert torch.equal(out.video, sample_by_hand(reasoner, COND.prompt, COND.seed))
    assert out.video.shape == (5, 3, 16, 16)
    assert (out.cost.samples, out.cost.vgm_forward_passes) == (1, STEPS)
    assert out.cost.teacher_calls == 0 and out.cost.wall_seconds > 0


def test_best_of_n_picks_the_lowest_spec_loss(reasoner) -> None:
    spec = corner_spec()
    out = BestOfN(reasoner, n=3, spec=spec, num_frames=K)(COND)
    reward = compile_spec(spec, None, num_frames=K)
    videos = [sample_by_hand(reasoner, COND.prompt, COND.seed, i) for i in range(3)]
    with torch.no_grad():
        by_hand = [float(reward(sample_frames(v, K)).total) for v in videos]
    assert out.details["scores"] == [-loss for loss in by_hand]
    picked = min(range(3), key=lambda i: by_hand[i])
    assert out.details["picked"] == picked and out.details["pick"] == "spec"
    assert torch.equal(out.video, videos[picked])
    assert (out.cost.samples, out.cost.vgm_forward_passes) == (3, 3 * STEPS)
    assert out.method == "best_of_n" and out.details["upper_bound"] is False

    one = BestOfN(reasoner, n=1, spec=spec, num_frames=K)(COND)
    assert torch.equal(one.video, videos[0])  # N = 1 is the base sample


def test_best_of_n_matches_a_budget(reasoner) -> None:
    writer = CornerSpecWriter()
    budget = CostRecord(vgm_forward_passes=2 * STEPS + 1)
    out = BestOfN(reasoner, budget=budget, spec_writer=writer, num_frames=K)(COND)
    assert out.details["n"] == 2 and out.cost.samples == 2
    assert out.cost.vgm_forward_passes <= budget.vgm_forward_passes
    assert out.cost.teacher_calls == 1 and writer.calls == 1


def test_best_of_n_oracle_is_labelled_an_upper_bound(reasoner) -> None:
    seen = []

    def brightest(cond: Condition, video: torch.Tensor) -> float:
        seen.append(cond.key)
        return float(video.mean())

    cond = Condition(prompt=COND.prompt, seed=1, key="task-7")
    out = BestOfN(reasoner, n=3, oracle=brightest)(cond)
    videos = [sample_by_hand(reasoner, cond.prompt, cond.seed, i) for i in range(3)]
    best = max(range(3), key=lambda i: float(videos[i].mean()))
    assert out.method == "best_of_n_oracle" and out.details["upper_bound"] is True
    assert out.details["picked"] == best and torch.equal(out.video, videos[best])
    assert seen == ["task-7"] * 3


def test_best_of_n_rejects_ambiguous_settings(reasoner) -> None:
    with pytest.raises(ValueError, match="exactly one of `n`"):
        BestOfN(reasoner, n=2, budget=CostRecord(vgm_forward_passes=9), spec=corner_spec())
    with pytest.raises(ValueError, match="exactly one of `spec`"):
        BestOfN(reasoner, n=2)
    with pytest.raises(ValueError, match="oracle pick uses no spec"):
        BestOfN(reasoner, n=2, spec=corner_spec(), oracle=lambda c, v: 0.0)
    with pytest.raises(ValueError, match="must be > 0"):
        BestOfN(reasoner, budget=CostRecord(), spec=corner_spec())


def test_solver_samples_the_rewritten_prompt(reasoner) -> None:
    rewriter = RuleRewriter(RULES)
    out = SolverMethod(reasoner, rewriter)(COND)
    expected = COND.prompt + " " + " ".join(RULES)
    assert out.details["prompts"] == [expected]
    assert torch.equal(out.video, sample_by_hand(reasoner, expected, COND.seed))
    assert (out.cost.teacher_calls, out.cost.samples) == (1, 1)


def test_iterative_solver_refines_from_its_critique(reasoner) -> None:
    rewriter = RuleRewriter(RULES)
    out = SolverMethod(reasoner, rewriter, rounds=2, critique_frames=3)(COND)
    first, second = out.details["prompts"]
    (critique,) = out.details["critiques"]
    video_1 = sample_by_hand(reasoner, first, COND.seed)
    # The critique measured the first video's frames.
    brightness = float(sample_frames(video_1, 3).mean())
    assert re.search(rf"Mean brightness {brightness:.3f}", critique)
    request = render("solver", "refine", instruction=COND.prompt, prompt=first, critique=critique)
    assert second == request  # every rule is already in the request: nothing appended
    assert torch.equal(out.video, sample_by_hand(reasoner, second, COND.seed))
    # rewrite + critique + rewrite; two samples from the same noise.
    assert (out.cost.teacher_calls, out.cost.samples) == (3, 2)
    assert out.cost.vgm_forward_passes == 2 * STEPS


def test_teacher_equals_the_loop_and_resets_the_lora(reasoner) -> None:
    writer = CornerSpecWriter()
    out = TeacherMethod(reasoner, TTO, spec_writer=writer)(COND)
    assert out.method == "teacher" and writer.calls == 1
    assert out.cost.teacher_calls == 1 and out.cost.optimization_steps == 4
    # 5 one-step evaluations + the full sampler's calls for the final video.
    assert out.cost.vgm_forward_passes == 5 + STEPS
    assert out.details["spec"]["version"] == 1 and len(out.details["history"]) == 5

    # The same loop run by hand gives the same video.
    reward = compile_spec(corner_spec(), None, num_frames=K)
    tto = TestTimeOptimizer(reasoner, reward, TTO, prompt=COND.prompt, seed=COND.seed)
    tto.run_to_end()
    assert torch.equal(out.video, tto.final_video())

    # Afterwards the LoRA is fresh again: lora_B all zero.
    TeacherMethod(reasoner, TTO, spec=corner_spec())(COND)
    lora_b = [p for n, p in reasoner.transformer.named_parameters() if ".lora_B." in n]
    assert lora_b and all(bool((p == 0).all()) for p in lora_b)


def test_every_method_leaves_the_base_model_untouched_and_costs_sum(reasoner) -> None:
    before = base_state(reasoner)
    base_video = BaseMethod(reasoner)(COND).video
    methods = [
        BaseMethod(reasoner),
        BestOfN(reasoner, n=2, spec=corner_spec(), num_frames=K),
        SolverMethod(reasoner, RuleRewriter(RULES), rounds=2),
        TeacherMethod(reasoner, TTO, spec=corner_spec()),
    ]
    conditions = [COND, Condition(prompt="The white dot moves to the top left.", seed=5)]
    outputs: list[MethodOutput] = []
    for method in methods:
        for cond in conditions:
            outputs.append(method(cond))
            after = base_state(reasoner)
            assert all(torch.equal(before[n], after[n]) for n in before), method.name
            assert torch.equal(BaseMethod(reasoner)(COND).video, base_video), method.name

    total = sum(out.cost for out in outputs)
    # Samples per task: base 1, best-of-2 2, 2-round solver 2, teacher 1.
    assert total.samples == 2 * (1 + 2 + 2 + 1)
    assert total.optimization_steps == 2 * 4
    assert total.teacher_calls == 2 * 3  # only the solver's rewriter talks
    assert total.vgm_forward_passes == sum(o.cost.vgm_forward_passes for o in outputs)
    assert total.wall_seconds == pytest.approx(sum(o.cost.wall_seconds for o in outputs))


def test_solver_and_teacher_validate_their_settings(reasoner) -> None:
    with pytest.raises(ValueError, match="rounds"):
        SolverMethod(reasoner, RuleRewriter(RULES), rounds=0)
    with pytest.raises(ValueError, match="exactly one of `spec` or `spec_writer`"):
        TeacherMethod(reasoner, TTO)
    with pytest.raises(ValueError, match="critique expects frames"):
        RuleRewriter(RULES).critique("p", torch.zeros(3, 16, 16))
    with pytest.raises(ValueError, match="empty prompt"):
        SolverMethod(reasoner, RuleRewriter([]))(Condition(prompt="   "))
