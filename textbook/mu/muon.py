"""Muon whose Newton-Schulz iterations run in bf16 only where the device multiplies bf16 natively.

`torch.optim.Muon` always orthogonalises in bf16: fast on GPUs and on CPUs with AVX-512 (oneDNN's bf16
kernels), but on a CPU with AVX2 only (AMD Zen 3, most laptops) oneDNN falls back to a reference path.
Measured on this project's Zen 3 machine: a (3072, 512) @ (512, 2048) matmul runs at 0.56 GFLOP/s in
bf16 against 123 GFLOP/s in fp32, and one mu-small step at batch 256 took ~70 s instead of about one.
The update rule and the state (`momentum_buffer`) are torch's, so a checkpoint's optimizer state moves
between machines of either kind.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor


@functools.lru_cache(maxsize=None)  # asked every step, for every matrix: the answer never changes
def bf16_is_native(device: torch.device) -> bool:
    """Whether `device` multiplies bf16 matrices at least as fast as fp32 ones (roughly)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)  # AVX-512 BW/VL/DQ, AMX, Arm bf16
        return bool(probe()) if probe is not None else False
    return True  # mps, xpu: their own kernels


def orthogonalise(g: Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                  dtype: torch.dtype) -> Tensor:
    """The quintic Newton-Schulz iteration of Keller Jordan's Muon, as in torch.optim's, in `dtype`.

    A matrix at least `GRAM_ASPECT` times wider than tall (after the transpose; mu-small's feed-forward
    matrices are 4x) is iterated in Gram form in fp32/fp64: the same polynomial, fewer multiplications."""
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)  # spectral norm <= Frobenius norm <= 1
    if dtype in (torch.float32, torch.float64) and x.size(1) >= GRAM_ASPECT * x.size(0):
        x = _gram_newton_schulz(x, a, b, c, steps)
    else:
        for _ in range(steps):
            gram = x @ x.T
            x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x


# For an m x n matrix (m <= n) the direct iteration costs steps * (4 m^2 n + 2 m^3) FLOPs, the Gram form
# 4 m^2 n + (8 steps - 6) m^3: with 5 steps it is cheaper once n > 1.5 m, 1.8x at n = 4 m (a 4x MLP), 1.5x at
# n = 3 m (mu-small's K and V). Square matrices (Q, O) keep the direct form.
GRAM_ASPECT = 2


def _gram_newton_schulz(x: Tensor, a: float, b: float, c: float, steps: int) -> Tensor:
    """Each step maps x to p(x x^T) x with p(r) = a + b r + c r^2; every x_k is q_k x_0 with q_k a polynomial of
    g = x_0 x_0^T, and polynomials of one symmetric matrix commute. So the iteration runs on m x m matrices
    only: r_k = x_k x_k^T, q_{k+1} = p(r_k) q_k, r_{k+1} = p(r_k) r_k p(r_k); x is touched twice (g, and
    q x at the end). In bf16 the rounding of g would persist through every step: fp32/fp64 only."""
    r = x @ x.T  # (m, m)
    q = None
    for step in range(steps):
        p = torch.addmm(r, r, r, beta=b, alpha=c)
        p.diagonal().add_(a)
        q = p if q is None else p @ q
        if step < steps - 1:
            r = p @ r @ p
    return x if q is None else q @ x


class Muon(torch.optim.Muon):
    """torch.optim.Muon with the Newton-Schulz dtype chosen per device (`ns_dtype`; None: bf16 where native)."""

    def __init__(self, params, *, ns_dtype: torch.dtype | None = None, **kwargs):
        super().__init__(params, **kwargs)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = float(group["lr"]), group["momentum"], group["weight_decay"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                grad, state = param.grad, self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                dtype = self.ns_dtype or (torch.bfloat16 if bf16_is_native(param.device) else torch.float32)
                buf.lerp_(grad, 1 - momentum)
                update = grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = orthogonalise(update, group["ns_coefficients"], group["ns_steps"], group["eps"], dtype)
                param.mul_(1 - lr * decay)
                param.add_(update, alpha=-_scaled_lr(lr, group["adjust_lr_fn"], param.shape))
        return loss


def _scaled_lr(lr: float, adjust: str | None, shape: torch.Size) -> float:
    """torch.optim.Muon's rate adjustment: "match_rms_adamw" gives the update AdamW's RMS (Moonshot)."""
    rows, cols = shape[:2]
    if adjust is None or adjust == "original":
        return lr * max(1.0, rows / cols) ** 0.5
    if adjust == "match_rms_adamw":
        return lr * 0.2 * max(rows, cols) ** 0.5
    return lr
