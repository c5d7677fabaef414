"""LoRA (Hu et al., arXiv 2106.09685) on a trained Mu: per-task adapters, merged back for export.

Mu was fine-tuned per task with LoRA. Here every attention projection and MLP matrix of a loaded
checkpoint gets a low-rank update `W x + (alpha / r) B A x`; only A and B train. `merge_lora` folds
B A into W so the exported graph is the plain model (no extra ops on the NPU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "up", "down")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        self.scale = alpha / rank
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))  # (r, in)
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear and peft; B = 0 so training starts at W

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + F.linear(F.linear(x, self.lora_a), self.lora_b) * self.scale

    def merged(self) -> nn.Linear:
        linear = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        linear = linear.to(self.base.weight.device, self.base.weight.dtype)
        with torch.no_grad():
            linear.weight.copy_(self.base.weight + (self.lora_b @ self.lora_a) * self.scale)
            if self.base.bias is not None:
                linear.bias.copy_(self.base.bias)
        return linear


def apply_lora(model: nn.Module, rank: int, alpha: float | None = None, targets: tuple[str, ...] = TARGETS) -> int:
    """Freeze `model` and wrap its target Linear layers in place; returns the number of trainable parameters."""
    if rank < 1:
        raise ValueError("LoRA rank must be >= 1")
    for param in model.parameters():
        param.requires_grad_(False)
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if name in targets and isinstance(child, nn.Linear):
                setattr(parent, name, LoRALinear(child, rank, float(alpha if alpha is not None else rank)))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def merge_lora(model: nn.Module) -> nn.Module:
    """Replace every LoRALinear by a plain Linear holding W + scale * B A (in place; returns model)."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, LoRALinear):
                setattr(parent, name, child.merged())
    return model
