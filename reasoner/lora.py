"""The per-task LoRA on the frozen video transformer (peft, through diffusers' adapter API).

Lifecycle: `attach(cfg)` injects a fresh adapter, `reset()` re-initialises it
(lora_B = 0, so the model's output is the base output exactly), `remove()`
takes the LoRA layers out again, `save(path)` writes the adapter in the format
`WanPipeline.load_lora_weights` reads. Only the adapter's tensors ever require
grad; the base weights are never written to.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from diffusers import WanPipeline, WanTransformer3DModel
from peft import LoraConfig as PeftLoraConfig
from peft.tuners.lora import LoraLayer
from peft.utils import get_peft_model_state_dict

from reasoner.config import LoraConfig
from reasoner.errors import ConfigError

ADAPTER_NAME = "task"


class LoraAdapter:
    """One named adapter on a `WanTransformer3DModel`; at most one attached at a time."""

    def __init__(self, transformer: WanTransformer3DModel, seed: int = 0) -> None:
        self.transformer = transformer
        self.seed = seed
        self.config: LoraConfig | None = None

    @property
    def attached(self) -> bool:
        return ADAPTER_NAME in getattr(self.transformer, "peft_config", {})

    def attach(self, cfg: LoraConfig) -> None:
        """Inject a fresh adapter (replacing ours if attached), freshly initialised."""
        if self.attached:
            self.remove()
        for target in cfg.target_modules:
            if not any(
                name == target or name.endswith("." + target)
                for name, module in self.transformer.named_modules()
                if isinstance(module, torch.nn.Linear)
            ):
                raise ConfigError(f"lora.target_modules entry '{target}' matches no linear layer")
        peft_cfg = PeftLoraConfig(
            r=cfg.rank,
            lora_alpha=cfg.alpha,
            lora_dropout=cfg.dropout,
            target_modules=list(cfg.target_modules),
            init_lora_weights=True,
        )
        # peft's own init draws from the global RNG; `reset` overwrites it with
        # a seeded one, and the fork leaves the caller's RNG state as it was.
        device = self.transformer.device
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices, device_type=device.type):
            self.transformer.add_adapter(peft_cfg, adapter_name=ADAPTER_NAME)
        self.config = cfg
        for _, param in self._named_parameters():
            # Adapter weights stay float32 even on a bf16 model: Adam updates of
            # lr ~5e-5 would round away in bf16. peft casts the input to match.
            param.data = param.data.float()
        for name, param in self.transformer.named_parameters():
            param.requires_grad_(self._is_ours(name))
        self.reset()

    def _is_ours(self, name: str) -> bool:
        return f".{ADAPTER_NAME}." in name and ".lora_" in name

    def _named_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.transformer.named_parameters() if self._is_ours(n)]

    def _require_attached(self) -> None:
        if not self.attached:
            raise RuntimeError("no LoRA adapter is attached; call attach(cfg) first")

    @torch.no_grad()
    def reset(self) -> None:
        """Re-draw lora_A (seeded Kaiming-uniform, as peft does) and zero lora_B.

        With lora_B = 0 the adapter adds exactly 0, so outputs equal the base
        model's bit for bit; the same seed gives the same init every task.
        """
        self._require_attached()
        generator = torch.Generator().manual_seed(self.seed)
        for _, module in sorted(self.transformer.named_modules(), key=lambda item: item[0]):
            if not isinstance(module, LoraLayer) or ADAPTER_NAME not in module.lora_A:
                continue
            weight_a = module.lora_A[ADAPTER_NAME].weight
            # kaiming_uniform_(a=sqrt(5)) bound: gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)
            bound = 1.0 / math.sqrt(weight_a.shape[1])
            fresh = torch.empty(weight_a.shape, dtype=torch.float32)
            fresh.uniform_(-bound, bound, generator=generator)
            weight_a.copy_(fresh)
            module.lora_B[ADAPTER_NAME].weight.zero_()

    def remove(self) -> None:
        """Take our adapter out; with no adapter left, the original modules come back."""
        if not self.attached:
            return
        if set(self.transformer.peft_config) == {ADAPTER_NAME}:
            self.transformer.unload_lora()
        else:
            self.transformer.delete_adapters(ADAPTER_NAME)
        self.config = None

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """The adapter's tensors, the only ones that require grad."""
        self._require_attached()
        return [p for _, p in self._named_parameters()]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """A detached copy of the adapter's tensors (for keep-best / rollback)."""
        self._require_attached()
        return {n: p.detach().clone() for n, p in self._named_parameters()}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Copy tensors from `state_dict()` back in place (the optimizer keeps its references)."""
        params = dict(self._named_parameters())
        if set(state) != set(params):
            missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
            raise ValueError(
                f"adapter state mismatch: missing {missing[:3]}, unexpected {extra[:3]}"
            )
        for name, param in params.items():
            param.copy_(state[name])

    def save(self, path: str | Path) -> Path:
        """Write `pytorch_lora_weights.safetensors` into folder `path` (diffusers format).

        The peft config (rank, alpha, targets) is stored as metadata, so
        `pipe.load_lora_weights(path)` rebuilds the same scaling.
        """
        self._require_attached()
        path = Path(path)
        layers = get_peft_model_state_dict(self.transformer, adapter_name=ADAPTER_NAME)
        metadata = self.transformer.peft_config[ADAPTER_NAME].to_dict()
        WanPipeline.save_lora_weights(
            path,
            transformer_lora_layers={k: v.detach().float().cpu() for k, v in layers.items()},
            transformer_lora_adapter_metadata=metadata,
        )
        return path / "pytorch_lora_weights.safetensors"
