"""The per-task LoRA: what trains, what must not change, and the round trips."""

from __future__ import annotations

import copy

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline
from peft.tuners.lora import LoraLayer
from tiny_wan import TINY_T2V, TINY_TI2V, one_torch_thread, seeded_image, tiny_config

from reasoner.config import FFN_TARGETS, LoraConfig
from reasoner.frames import sample_frames
from reasoner.video_model import VideoReasoner


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def _build(family=TINY_TI2V, **overrides) -> VideoReasoner:
    return VideoReasoner.from_config(tiny_config(*family, **overrides))


def _inputs(reasoner: VideoReasoner):
    image = seeded_image() if reasoner.is_ti2v else None
    cond = reasoner.encode("push the blue box onto the red square", image)
    noise = reasoner.initial_noise(torch.Generator().manual_seed(0))
    target = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return cond, noise, target


def _loss(reasoner, cond, noise, target, grad="first"):
    frames = reasoner.decode(reasoner.predict_latent(noise, cond, grad=grad), "surrogate")
    return (sample_frames(frames, 5) - target).square().mean()


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items() if "lora_" not in k}


def test_gradients_reach_every_lora_tensor_through_one_step_prediction_and_surrogate() -> None:
    reasoner = _build(lora={"target_modules": [*LoraConfig().target_modules, *FFN_TARGETS]})
    cond, noise, target = _inputs(reasoner)
    params = reasoner.lora.trainable_parameters()
    # 2 blocks x (8 attention + 2 MLP projections) x (A, B)
    assert len(params) == 2 * 10 * 2
    optimizer = torch.optim.Adam(params, lr=1e-2)

    _loss(reasoner, cond, noise, target).backward()
    names = [n for n, p in reasoner.transformer.named_parameters() if p.requires_grad]
    grads = dict(zip(names, (p.grad for p in params), strict=True))
    assert all(g is not None for g in grads.values())
    # lora_B starts at zero, so only B gets gradient on the first step ...
    assert all(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n)
    assert all(torch.all(g == 0) for n, g in grads.items() if "lora_A" in n)
    optimizer.step()
    optimizer.zero_grad()

    # ... and once B moved, every tensor (A and B) gets it.
    _loss(reasoner, cond, noise, target).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_only_lora_trains_and_base_weights_stay_bit_identical() -> None:
    reasoner = _build()
    cond, noise, target = _inputs(reasoner)
    modules = {
        "transformer": reasoner.transformer,
        "vae": reasoner.vae,
        "text_encoder": reasoner.text_encoder,
        "surrogate": reasoner.surrogate.module,
    }
    before = {name: _snapshot(m) for name, m in modules.items()}
    trainable = {n for n, p in reasoner.transformer.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    for name in ("vae", "text_encoder", "surrogate"):
        assert not any(p.requires_grad for p in modules[name].parameters())

    lora_before = reasoner.lora.state_dict()
    optimizer = torch.optim.AdamW(reasoner.lora.trainable_parameters(), lr=1e-2, weight_decay=0.1)
    losses = []
    for _ in range(3):
        optimizer.zero_grad()
        loss = _loss(reasoner, cond, noise, target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    for name, module in modules.items():
        after = _snapshot(module)
        assert after.keys() == before[name].keys()
        assert all(torch.equal(after[k], before[name][k]) for k in after), name
    lora_after = reasoner.lora.state_dict()
    assert any(not torch.equal(lora_after[k], lora_before[k]) for k in lora_after)
    assert losses[-1] < losses[0]


def test_reset_and_remove_restore_the_base_output_exactly() -> None:
    reasoner = _build(TINY_T2V)
    cond, noise, target = _inputs(reasoner)
    with torch.no_grad():
        with_fresh_lora = reasoner.predict_latent(noise, cond)
    reasoner.lora.remove()
    assert not any(isinstance(m, LoraLayer) for m in reasoner.transformer.modules())
    with torch.no_grad():
        base = reasoner.predict_latent(noise, cond)
    assert torch.equal(with_fresh_lora, base)

    reasoner.lora.attach(reasoner.config.lora)
    fresh = reasoner.lora.state_dict()
    optimizer = torch.optim.Adam(reasoner.lora.trainable_parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        _loss(reasoner, cond, noise, target).backward()
        optimizer.step()
    with torch.no_grad():
        trained = reasoner.predict_latent(noise, cond)
    assert not torch.allclose(trained, base)

    reasoner.lora.reset()
    with torch.no_grad():
        assert torch.equal(reasoner.predict_latent(noise, cond), base)
    # the same seed gives the same initialisation every task
    assert all(torch.equal(v, fresh[k]) for k, v in reasoner.lora.state_dict().items())

    reasoner.lora.remove()
    with torch.no_grad():
        assert torch.equal(reasoner.predict_latent(noise, cond), base)


def test_state_dict_round_trip_restores_a_trained_adapter_in_place() -> None:
    reasoner = _build(TINY_T2V)
    cond, noise, target = _inputs(reasoner)
    params = reasoner.lora.trainable_parameters()
    optimizer = torch.optim.Adam(params, lr=1e-2)
    _loss(reasoner, cond, noise, target).backward()
    optimizer.step()
    best = reasoner.lora.state_dict()
    with torch.no_grad():
        best_output = reasoner.predict_latent(noise, cond)
    optimizer.zero_grad()
    _loss(reasoner, cond, noise, target).backward()
    optimizer.step()

    reasoner.lora.load_state_dict(best)
    assert all(a is b for a, b in zip(params, reasoner.lora.trainable_parameters(), strict=True))
    with torch.no_grad():
        assert torch.equal(reasoner.predict_latent(noise, cond), best_output)
    with pytest.raises(ValueError, match="mismatch"):
        reasoner.lora.load_state_dict({})


def test_saved_adapter_loads_with_diffusers_load_lora_weights_and_reproduces_output(
    tmp_path,
) -> None:
    reasoner = _build(TINY_T2V, lora={"rank": 4, "alpha": 2.0})  # scale 0.5 must survive
    cond, noise, target = _inputs(reasoner)
    base_transformer = copy.deepcopy(reasoner.transformer)
    base_transformer.unload_lora()

    optimizer = torch.optim.Adam(reasoner.lora.trainable_parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        _loss(reasoner, cond, noise, target).backward()
        optimizer.step()
    weights = reasoner.lora.save(tmp_path / "adapter")
    assert weights.is_file()

    pipe = WanPipeline(
        tokenizer=reasoner.tokenizer,
        text_encoder=reasoner.text_encoder,
        vae=reasoner.vae,
        transformer=base_transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
    )
    pipe.load_lora_weights(tmp_path / "adapter")
    timestep = torch.tensor([1000.0])
    with torch.no_grad():
        ours = reasoner.velocity(noise, 1.0, cond)
        theirs = pipe.transformer(noise, timestep, cond.prompt_embeds, return_dict=False)[0]
    torch.testing.assert_close(theirs, ours, rtol=0, atol=1e-6)
    with torch.no_grad():
        pipe.transformer.disable_lora()
        without = pipe.transformer(noise, timestep, cond.prompt_embeds, return_dict=False)[0]
    assert not torch.allclose(without, ours)


def test_attach_replaces_the_adapter_and_leaves_the_global_rng_alone() -> None:
    reasoner = _build(TINY_T2V)
    state = torch.get_rng_state()
    reasoner.lora.attach(LoraConfig(rank=2, alpha=2.0, target_modules=["attn1.to_q"]))
    reasoner.lora.reset()
    assert torch.equal(torch.get_rng_state(), state)
    assert reasoner.lora.num_parameters() == 2 * (24 * 2 + 2 * 24)  # 2 blocks x (A + B)
    assert set(reasoner.transformer.peft_config) == {"task"}


def test_bfloat16_model_keeps_float32_adapter_weights() -> None:
    reasoner = _build(TINY_T2V, dtype="bfloat16")
    assert reasoner.transformer.blocks[0].attn1.to_q.base_layer.weight.dtype == torch.bfloat16
    assert reasoner.transformer.blocks[0].norm2.weight.dtype == torch.float32  # kept in fp32
    assert all(p.dtype == torch.float32 for p in reasoner.lora.trainable_parameters())
    cond, noise, target = _inputs(reasoner)
    _loss(reasoner, cond, noise, target).backward()
    assert all(p.grad is not None for p in reasoner.lora.trainable_parameters())


def test_a_saved_adapter_fused_as_distill_lora_becomes_the_new_base(tmp_path) -> None:
    teacher = _build(TINY_T2V, lora={"rank": 4, "alpha": 2.0})
    cond, noise, target = _inputs(teacher)
    optimizer = torch.optim.Adam(teacher.lora.trainable_parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        _loss(teacher, cond, noise, target).backward()
        optimizer.step()
    weights = teacher.lora.save(tmp_path / "distill")
    with torch.no_grad():
        adapted = teacher.velocity(noise, 1.0, cond)
        teacher.lora.remove()
        base = teacher.velocity(noise, 1.0, cond)

    fused = VideoReasoner.from_config(
        tiny_config(*TINY_T2V, distill_lora=str(weights)), attach_lora=False
    )
    assert not any(isinstance(m, LoraLayer) for m in fused.transformer.modules())
    with torch.no_grad():
        velocity = fused.velocity(noise, 1.0, cond)
    torch.testing.assert_close(velocity, adapted, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(velocity, base)
