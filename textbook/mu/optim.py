"""Muon for hidden matrices, AdamW for everything else, and the warmup-stable-decay schedule.

Muon (Keller Jordan 2024; `torch.optim.Muon`, in bf16 only where that is fast: muon.py) orthogonalises the momentum of 2-D weight matrices
with Newton-Schulz iterations (coefficients 3.4445, -4.7750, 2.0315; 5 steps; Nesterov 0.95). It is
meant for the hidden matrices only: the embedding (which is also our output head: tied), norms and
biases are not linear maps between hidden states and stay with AdamW, as in modded-nanogpt and
Moonshot's "Muon is Scalable for LLM Training". With adjust_lr_fn="match_rms_adamw" (Moonshot) Muon's
update has AdamW's RMS, so both share one learning rate and weight decay.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from textbook.mu.muon import Muon


def route_parameters(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """Split trainable parameters: the weight of every nn.Linear goes to Muon, all else to AdamW.

    AdamW gets: the shared embedding/output head (an nn.Embedding), LayerNorm weights, biases, and
    LoRA factors (plain Parameters, not nn.Linear: low-rank factors are not hidden matrices, and
    orthogonalising A and B separately does not orthogonalise their product).
    """
    routes: dict[str, list[tuple[str, nn.Parameter]]] = {"muon": [], "adamw": []}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            full = f"{module_name}.{name}" if module_name else name
            is_hidden_matrix = isinstance(module, nn.Linear) and name == "weight" and param.ndim == 2
            routes["muon" if is_hidden_matrix else "adamw"].append((full, param))
    return routes


ENCODER_SIDE = ("embed.", "encoder_layers.", "encoder_norm.")  # what reads the query (the embedding is shared)


def build_optimizers(
    model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.95), ns_steps: int = 5,
    encoder_lr_scale: float = 1.0,
) -> list[torch.optim.Optimizer]:
    """Muon and AdamW over `model`'s trainable parameters. `encoder_lr_scale` < 1 gives the embedding and the
    encoder a smaller rate than the decoder: a fine-tune of a distilled encoder then keeps more of what it knew
    (discriminative fine-tuning, Howard & Ruder, ULMFiT 2018). At 1.0 there is one group per kind, so the
    optimizer state has the layout of earlier checkpoints."""
    routes = route_parameters(model)

    def split(params: list[tuple[str, nn.Parameter]], **extra) -> list[dict]:
        if encoder_lr_scale == 1.0:
            return [{"params": [p for _, p in params], "base_lr": lr, **extra}]
        inner = [p for name, p in params if name.startswith(ENCODER_SIDE)]
        outer = [p for name, p in params if not name.startswith(ENCODER_SIDE)]
        return [{"params": inner, "base_lr": lr * encoder_lr_scale, **extra}, {"params": outer, "base_lr": lr, **extra}]

    optimizers: list[torch.optim.Optimizer] = []
    if routes["muon"]:
        groups = [g for g in split(routes["muon"]) if g["params"]]
        optimizers.append(Muon(groups, lr=lr, weight_decay=weight_decay, momentum=0.95, nesterov=True,
                                           adjust_lr_fn="match_rms_adamw", ns_steps=ns_steps))
    decay = [(n, p) for n, p in routes["adamw"] if p.ndim >= 2]  # the embedding (and LoRA factors)
    no_decay = [(n, p) for n, p in routes["adamw"] if p.ndim < 2]  # norms and biases: decaying them only hurts
    groups = [g for g in split(decay, weight_decay=weight_decay) + split(no_decay, weight_decay=0.0) if g["params"]]
    if groups:
        fused = all(p.is_cuda for g in groups for p in g["params"])
        optimizers.append(torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused or None))
    return optimizers


def wsd(step: int, total: int, warmup: int, decay_fraction: float = 0.2, shape: str = "linear",
        anchor: tuple[int, float] | None = None) -> float:
    """Warmup-stable-decay multiplier for 0-based `step` of `total` (MiniCPM, arXiv 2404.06395).

    Linear warmup over `warmup` steps, then 1.0, then a decay to 0 over the last `decay_fraction` of
    the steps (the cooldown of modded-nanogpt): linear, or "sqrt" = 1 - sqrt(progress), the shape that
    beat linear in Hägele et al. 2024 (arXiv 2405.18392): it leaves the peak fast and spends more of
    the cooldown at low rates. The stable phase lets a run be extended or branched without restarting; the decay is
    where the loss drops.

    `anchor` = (step, cool) re-plans a decay already under way for a new `total` (a time box that moved its end):
    from `step`, where the linear cooldown stood at `cool`, it falls linearly to 0 at `total`, so the rate never
    jumps (`decay_progress` gives the cool of the current plan).
    """
    warm = (step + 1) / warmup if warmup > 0 else 1.0
    cool = decay_progress(step, total, decay_fraction, anchor)
    if shape == "sqrt" and cool < 1.0:
        cool = 1.0 - math.sqrt(max(0.0, 1.0 - cool))
    return max(0.0, min(1.0, warm, cool))  # min: a short run's warmup and decay overlap without a jump


def decay_progress(step: int, total: int, decay_fraction: float, anchor: tuple[int, float] | None = None) -> float:
    """The linear cooldown's value at `step`: 1.0 before the decay, falling to 0 at `total` (before the shape)."""
    if anchor is not None and step >= anchor[0]:
        return anchor[1] * (total - step) / max(1, total - anchor[0])
    decay_steps = max(1, round(decay_fraction * total)) if decay_fraction > 0 else 0
    return min(1.0, (total - step) / decay_steps) if decay_steps else 1.0


def set_lr(optimizers: list[torch.optim.Optimizer], multiplier: float) -> float:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * multiplier
    return max(group["lr"] for opt in optimizers for group in opt.param_groups)  # the peak group's, for the log
