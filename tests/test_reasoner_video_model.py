"""VideoReasoner on tiny real Wan components: its maths against diffusers' own."""

from __future__ import annotations

import pytest
import torch
from diffusers import (
    FlowMatchEulerDiscreteScheduler,
    UniPCMultistepScheduler,
    WanImageToVideoPipeline,
    WanPipeline,
)
from tiny_wan import TINY_PIXEL, TINY_T2V, TINY_TI2V, one_torch_thread, seeded_image, tiny_config

from reasoner.video_model import VideoReasoner


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_torch_thread()


def _build(family=TINY_T2V, **overrides) -> VideoReasoner:
    source, kind, surrogate = family
    return VideoReasoner.from_config(tiny_config(source, kind, surrogate, **overrides))


def _inputs(reasoner: VideoReasoner, seed: int = 0):
    image = seeded_image(seed) if reasoner.is_ti2v else None
    cond = reasoner.encode("a red ball rolls to the left", image)
    noise = reasoner.initial_noise(torch.Generator().manual_seed(seed))
    return cond, noise, image


@pytest.mark.parametrize("family", [TINY_T2V, TINY_TI2V, TINY_PIXEL])
def test_one_step_prediction_is_the_schedulers_step_from_t1_to_clean(family) -> None:
    reasoner = _build(family)
    cond, noise, _ = _inputs(reasoner)
    with torch.no_grad():
        prediction = reasoner.predict_latent(noise, cond, grad="first")
        # v(z1, t=1000): the transformer call the pipelines make at the first step
        velocity = reasoner.velocity(noise, 1.0, cond)

    euler = FlowMatchEulerDiscreteScheduler(shift=5.0)
    euler.set_timesteps(sigmas=[1.0])
    assert float(euler.timesteps[0]) == 1000.0
    stepped = euler.step(velocity, euler.timesteps[0], noise, return_dict=False)[0]

    unipc = UniPCMultistepScheduler(
        prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0
    )
    unipc.set_timesteps(4)
    assert abs(float(unipc.sigmas[0]) - 1.0) < 1e-5  # Wan's UniPC starts at 1 - 1e-6
    unipc._step_index = 0
    x0 = unipc.convert_model_output(velocity, sample=noise)

    if reasoner.is_ti2v:  # the clean first frame is the condition itself
        assert torch.equal(prediction[:, :, :1], cond.image_latent)
        prediction, stepped, x0 = (t[:, :, 1:] for t in (prediction, stepped, x0))
    assert torch.equal(prediction, stepped)
    torch.testing.assert_close(prediction, x0, rtol=0, atol=1e-5)
    assert not torch.equal(prediction, noise)


def _diffusers_latents(pipeline_class, reasoner, cond, noise, expand=False, **call) -> torch.Tensor:
    """The latents diffusers' own pipeline samples from the same model, noise and prompt."""
    pipe = pipeline_class(
        tokenizer=reasoner.tokenizer,
        text_encoder=reasoner.text_encoder,
        vae=reasoner.vae,
        transformer=reasoner.transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=5.0),
        **({"expand_timesteps": True} if expand else {}),
    )
    return pipe(
        prompt_embeds=cond.prompt_embeds,
        latents=noise.clone(),
        height=32,
        width=32,
        num_frames=9,
        num_inference_steps=3,
        guidance_scale=1.0,
        output_type="latent",
        **call,
    ).frames


def test_sampler_matches_wan_pipeline_latents() -> None:
    reasoner = _build(TINY_T2V)
    cond, noise, _ = _inputs(reasoner)
    ours = reasoner.predict_latent(noise, cond, grad="last").detach()
    theirs = _diffusers_latents(WanPipeline, reasoner, cond, noise)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_ti2v_sampler_matches_wan_image_to_video_pipeline_with_expand_timesteps() -> None:
    reasoner = _build(TINY_TI2V)
    cond, noise, image = _inputs(reasoner)
    ours = reasoner.predict_latent(noise, cond, grad="last").detach()
    theirs = _diffusers_latents(
        WanImageToVideoPipeline, reasoner, cond, noise, expand=True, image=image[None]
    )
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_ti2v_without_an_image_matches_wan_pipeline_text_to_video() -> None:
    """Wan2.2-TI2V's text-to-video mode: no first frame, every token at the same t."""
    reasoner = _build(TINY_TI2V)
    cond = reasoner.encode("a red ball rolls to the left")
    assert cond.image_latent is None
    noise = reasoner.initial_noise(torch.Generator().manual_seed(5))
    ours = reasoner.predict_latent(noise, cond, grad="last").detach()
    theirs = _diffusers_latents(WanPipeline, reasoner, cond, noise, expand=True)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    with_image, _, _ = _inputs(reasoner)
    assert not torch.allclose(ours, reasoner.predict_latent(noise, with_image, grad="last"))


def test_full_sampler_is_deterministic_for_a_seed() -> None:
    reasoner = _build(TINY_TI2V)
    videos = []
    for seed in (3, 3, 4):
        cond, noise, _ = _inputs(reasoner, seed)
        videos.append(reasoner.sample(noise, cond))
    assert videos[0].shape == (9, 3, 32, 32)
    assert videos[0].min() >= 0.0 and videos[0].max() <= 1.0
    assert torch.equal(videos[0], videos[1])
    assert not torch.equal(videos[0], videos[2])


def test_pixel_space_ti2v_keeps_the_image_as_first_frame() -> None:
    reasoner = _build(TINY_PIXEL)
    cond, noise, image = _inputs(reasoner)
    frames = reasoner.decode(reasoner.predict_latent(noise, cond))
    assert frames.shape == (9, 3, 32, 32)
    torch.testing.assert_close(frames[0], image, rtol=0, atol=1e-6)


def test_ti2v_first_frame_tokens_carry_timestep_zero() -> None:
    reasoner = _build(TINY_PIXEL)
    latents = torch.zeros(reasoner.latent_shape)
    cond, _, _ = _inputs(reasoner)
    timesteps = reasoner._timesteps(0.5, latents, cond)
    per_frame = (32 // 2) * (32 // 2)
    assert timesteps.shape == (1, 9 * per_frame)
    assert torch.all(timesteps[0, :per_frame] == 0)
    assert torch.all(timesteps[0, per_frame:] == 500)


def test_grad_modes_share_the_forward_but_not_the_graph() -> None:
    reasoner = _build(TINY_T2V)
    cond, noise, _ = _inputs(reasoner)
    params = reasoner.lora.trainable_parameters()
    with torch.no_grad():  # make lora_B non-zero so every LoRA tensor gets gradient
        for p in params:
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))

    grads, outputs = {}, {}
    for mode in ("last", "all"):
        latent = reasoner.predict_latent(noise, cond, grad=mode)
        latent.square().mean().backward()
        outputs[mode] = latent.detach()
        grads[mode] = [p.grad.clone() for p in params]
        for p in params:
            p.grad = None
    torch.testing.assert_close(outputs["last"], outputs["all"], rtol=0, atol=1e-6)
    assert all(g.abs().sum() > 0 for g in grads["all"])
    # backprop through every step sees more than through the last one
    assert any(not torch.allclose(a, b) for a, b in zip(grads["last"], grads["all"], strict=True))


def test_full_decoder_matches_pipeline_postprocessing_and_checkpointing_keeps_grads() -> None:
    reasoner = _build(TINY_T2V)
    latent = torch.randn(reasoner.latent_shape, generator=torch.Generator().manual_seed(1))
    vae = reasoner.vae
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)
    with torch.no_grad():
        reference = vae.decode(latent * std + mean).sample
    reference = (reference / 2 + 0.5).clamp(0, 1)[0].permute(1, 0, 2, 3)

    grads = []
    for checkpointed in (True, False):
        reasoner.full_decoder.checkpointed = checkpointed
        x = latent.clone().requires_grad_()
        frames = reasoner.decode(x, which="full")
        torch.testing.assert_close(frames.detach(), reference, rtol=0, atol=1e-6)
        frames.mean().backward()
        grads.append(x.grad)
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


def test_classifier_free_guidance_combines_two_transformer_calls() -> None:
    reasoner = _build(TINY_T2V, guidance_scale=3.0, negative_prompt="blurry")
    cond, noise, _ = _inputs(reasoner)
    assert cond.negative_prompt_embeds is not None
    with torch.no_grad():
        guided = reasoner.velocity(noise, 1.0, cond)
        reasoner.config.video_model.guidance_scale = 1.0
        conditional = reasoner.velocity(noise, 1.0, cond)
        cond.prompt_embeds, cond.negative_prompt_embeds = cond.negative_prompt_embeds, None
        unconditional = reasoner.velocity(noise, 1.0, cond)
    expected = unconditional + 3.0 * (conditional - unconditional)
    torch.testing.assert_close(guided, expected)


def test_text_embeddings_are_zero_past_the_prompt() -> None:
    reasoner = _build(TINY_T2V)
    embeds = reasoner.encode_text("red ball")
    used = len(reasoner.tokenizer("red ball").input_ids)
    assert embeds.shape == (1, 16, 16)
    assert torch.all(embeds[0, used:] == 0)
    assert torch.all(embeds[0, :used].abs().sum(-1) > 0)


def test_encode_rejects_wrong_images_with_a_fix() -> None:
    t2v, ti2v = _build(TINY_T2V), _build(TINY_TI2V)
    with pytest.raises(ValueError, match="wan_ti2v"):
        t2v.encode("x", seeded_image())
    with pytest.raises(ValueError, match="resize"):
        ti2v.encode("x", seeded_image(size=48))


def test_model_saved_to_a_folder_loads_back_as_source(tmp_path) -> None:
    reasoner = VideoReasoner.from_config(tiny_config(*TINY_TI2V), attach_lora=False)
    cond, noise, _ = _inputs(reasoner)
    with torch.no_grad():
        expected = reasoner.predict_latent(noise, cond)
    reasoner.save_pretrained(tmp_path / "model")

    loaded = VideoReasoner.from_config(
        tiny_config(str(tmp_path / "model"), "wan_ti2v", "full"), attach_lora=False
    )
    cond2, noise2, _ = _inputs(loaded)
    torch.testing.assert_close(cond2.prompt_embeds, cond.prompt_embeds)
    with torch.no_grad():
        torch.testing.assert_close(loaded.predict_latent(noise2, cond2), expected)

    reasoner.lora.attach(reasoner.config.lora)
    with pytest.raises(RuntimeError, match="remove the LoRA"):
        reasoner.save_pretrained(tmp_path / "again")


@pytest.mark.parametrize("mode", ["first", "all"])
def test_block_gradient_checkpointing_gives_the_same_lora_gradients(mode) -> None:
    grads = []
    for checkpointing in (False, True):
        reasoner = _build(TINY_TI2V, gradient_checkpointing=checkpointing)
        assert reasoner.transformer.gradient_checkpointing is checkpointing
        cond, noise, _ = _inputs(reasoner)
        params = reasoner.lora.trainable_parameters()
        with torch.no_grad():
            for i, p in enumerate(params):
                p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(i)))
        reasoner.decode(reasoner.predict_latent(noise, cond, grad=mode)).mean().backward()
        grads.append([p.grad for p in params])
    assert all(g.abs().sum() > 0 for g in grads[1])
    for plain, checkpointed in zip(grads[0], grads[1], strict=True):
        torch.testing.assert_close(checkpointed, plain)
