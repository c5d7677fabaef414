"""Model FLOPs for MFU (PaLM's definition, arXiv 2204.02311 appendix B: useful model FLOPs only).

Matmul FLOPs of a forward pass, x3 for forward + backward. Attention scores and values are counted
over the full (unmasked) length, the usual convention (nanoGPT, PaLM); Muon's Newton-Schulz work and
recomputation are not counted, so MFU is never flattered by overhead.
"""

from __future__ import annotations

from textbook.mu.config import MuConfig

# Dense bf16 tensor-core peaks from the vendors' datasheets (no sparsity).
PEAK_BF16 = {"H100": 989.4e12, "H200": 989.4e12, "A100": 312e12}


def forward_flops(cfg: MuConfig, batch: int, src_len: int, tgt_len: int, *, kv_dim: int | None = None) -> float:
    """FLOPs of one forward pass over a (batch, src_len) -> (batch, tgt_len) batch; kv_dim overrides GQA (MHA: d_model)."""
    d, f, v = cfg.d_model, cfg.d_ff, cfg.vocab_size
    kv = cfg.n_kv_heads * cfg.head_dim if kv_dim is None else kv_dim
    proj = 2 * (2 * d * d + 2 * d * kv)  # q, o and k, v projections per token
    mlp = 2 * 2 * d * f
    enc_token = cfg.n_encoder_layers * (proj + mlp + 2 * 2 * src_len * d)
    dec_token = cfg.n_decoder_layers * (
        proj + 2 * 2 * tgt_len * d  # self-attention
        + 2 * 2 * d * d + 2 * 2 * src_len * d  # cross-attention q, o and scores/values over the source
        + mlp
    ) + 2 * d * v  # tied output head
    cross_kv = cfg.n_decoder_layers * 2 * 2 * d * kv  # cross-attention k, v of every source token
    return batch * (src_len * (enc_token + cross_kv) + tgt_len * dec_token)


def training_flops(cfg: MuConfig, batch: int, src_len: int, tgt_len: int, *, kv_dim: int | None = None) -> float:
    return 3 * forward_flops(cfg, batch, src_len, tgt_len, kv_dim=kv_dim)


def peak_flops(device_name: str) -> float | None:
    """bf16 peak of a CUDA device by name; None when unknown (then no MFU is reported)."""
    return next((peak for key, peak in PEAK_BF16.items() if key in device_name), None)
