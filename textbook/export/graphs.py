"""The two NPU graphs of a Mu model, as torch modules that wrap it: encoder and one decoder step.

The layout is the one ONNX Runtime/Olive and Qualcomm use for Whisper on NPUs: the encoder runs once
and also emits every decoder layer's cross-attention K/V; the decoder step takes one token, its
position and a fixed-size self-attention KV cache (one tensor per layer) and returns the logits and
the cache with this position written in. Everything has a static shape; the graphs have no control
flow. Shapes: S source length, M cache length (max target length), G KV heads, K head size, V vocab.

The wrappers reuse Mu's own sub-modules (projections, norms, MLP, RoPE tables, tied embedding) and
re-express only the glue, for three reasons an NPU imposes and `tests/test_export.py` checks against
the model's own `forward`/`generate`:
- Masks are bounded. Static QDQ quantization calibrates every activation's range, and -inf (what
  SDPA's boolean mask becomes) makes that range infinite; a fixed -100 (Qualcomm's Whisper) is not
  exact either: it wins over visible keys whenever they all score below about -90, which trained
  models do. So each row is shifted until its best *visible* score is 0 (softmax is
  shift-invariant), floored at FLOOR, and masked keys are set to FLOOR: the softmax input lives in
  [FLOOR, 0], and a masked key weighs e^FLOOR (4e-18) of the best visible one.
- Grouped-query attention reshapes the queries to (G, H/G * T) instead of repeating K/V: no copy of
  the cache per query head (same math as Llama's repeat_kv order: query head h uses KV head h // (H/G)).
- Integers are int32 (token ids, position, cache slots): NPU integer units have no 64-bit arithmetic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FLOOR = -40.0


def attention(q: Tensor, k: Tensor, v: Tensor, keep: Tensor) -> Tensor:
    """q (1, H, T, K), k/v (1, G, N, K), keep (1, 1, 1, N) float 1 = visible -> (1, T, H*K)."""
    b, h, t, d = q.shape
    g = k.shape[1]
    q = q.reshape(b, g, (h // g) * t, d) * d**-0.5  # (1, G, H/G*T, K): each group's queries share its K/V
    scores = q @ k.transpose(-1, -2)  # (1, G, H/G*T, N)
    # Push masked scores below every visible one by the row's spread, so the row max is the visible max.
    spread = scores.amax(-1, keepdim=True) - scores.amin(-1, keepdim=True) + 1.0  # (1, G, H/G*T, 1)
    top = (scores + (keep - 1.0) * spread).amax(-1, keepdim=True)
    shifted = (scores - top).clamp_min(FLOOR)  # visible in [FLOOR, 0]
    shifted = shifted * keep + (1.0 - keep) * FLOOR  # masked exactly FLOOR
    out = shifted.softmax(-1) @ v  # (1, G, H/G*T, K)
    return out.reshape(b, h, t, d).transpose(1, 2).reshape(b, t, h * d)


def _heads(x: Tensor, n: int, d: int) -> Tensor:
    return x.view(x.shape[0], x.shape[1], n, d).transpose(1, 2)  # (1, T, n*K) -> (1, n, T, K)


class EncoderGraph(nn.Module):
    """(input_ids int32 (1, S), source_mask float (1, S)) -> cross_key_i, cross_value_i (1, G, S, K) per decoder layer,
    then sentence (1, D): the mean of the encoder's states over real tokens, what retrieval compares
    (textbook/mu/neighbours.py)."""

    def __init__(self, model: nn.Module, source_len: int):
        super().__init__()
        self.model = model
        self.register_buffer("cos", model.rope.cos[:source_len].clone(), persistent=False)  # (S, K/2)
        self.register_buffer("sin", model.rope.sin[:source_len].clone(), persistent=False)

    def forward(self, input_ids: Tensor, source_mask: Tensor) -> tuple[Tensor, ...]:
        m = self.model
        keep = source_mask[:, None, None, :]  # (1, 1, 1, S)
        x = m.embed(input_ids)  # (1, S, D)
        for layer in m.encoder_layers:
            q, k, v = layer.attn.qkv(layer.attn_norm.pre(x), self.cos, self.sin)
            x = x + layer.attn_norm.post(layer.attn.o_proj(attention(q, k, v, keep)))
            x = x + layer.mlp_norm.post(layer.mlp(layer.mlp_norm.pre(x)))
        memory = m.encoder_norm(x)  # (1, S, D)
        out: list[Tensor] = []
        for layer in m.decoder_layers:
            out += layer.cross_attn.project_kv(memory)  # (1, G, S, K) twice
        sentence = (memory * source_mask[:, :, None]).sum(1) / source_mask.sum(1, keepdim=True)  # (1, D)
        return (*out, sentence)


class DecoderStepGraph(nn.Module):
    """One greedy step with a fixed-size KV cache.

    Inputs: input_ids int32 (1, 1), position int32 (1,), source_mask float (1, S), then per layer
    past_key_i/past_value_i (1, G, M, K), then per layer cross_key_i/cross_value_i (1, G, S, K).
    Outputs: logits (1, V), then per layer present_key_i/present_value_i (1, G, M, K).
    """

    def __init__(self, model: nn.Module, cache_len: int):
        super().__init__()
        self.model = model
        self.layers = len(model.decoder_layers)
        self.register_buffer("cos", model.rope.cos[:cache_len].clone(), persistent=False)  # (M, K/2)
        self.register_buffer("sin", model.rope.sin[:cache_len].clone(), persistent=False)
        self.register_buffer("slots", torch.arange(cache_len, dtype=torch.int32), persistent=False)  # (M,)

    def forward(self, input_ids: Tensor, position: Tensor, source_mask: Tensor, *caches: Tensor) -> tuple[Tensor, ...]:
        m, n = self.model, self.layers
        past, cross = caches[: 2 * n], caches[2 * n :]
        write = (self.slots == position).view(1, 1, -1, 1)  # (1, 1, M, 1): this step's cache slot
        visible = (self.slots <= position).to(source_mask.dtype).view(1, 1, 1, -1)  # (1, 1, 1, M): causal
        keep = source_mask[:, None, None, :]  # (1, 1, 1, S)
        cos, sin = self.cos[position], self.sin[position]  # (1, K/2)
        x = m.embed(input_ids)  # (1, 1, D)
        present: list[Tensor] = []
        for i, layer in enumerate(m.decoder_layers):
            sa, ca = layer.self_attn, layer.cross_attn
            q, k, v = sa.qkv(layer.self_norm.pre(x), cos, sin)  # (1, H, 1, K), (1, G, 1, K) x2
            k_cache = torch.where(write, k, past[2 * i])  # (1, G, M, K)
            v_cache = torch.where(write, v, past[2 * i + 1])
            present += [k_cache, v_cache]
            x = x + layer.self_norm.post(sa.o_proj(attention(q, k_cache, v_cache, visible)))
            q = _heads(ca.q_proj(layer.cross_norm.pre(x)), ca.n_heads, ca.head_dim)  # (1, H, 1, K)
            x = x + layer.cross_norm.post(ca.o_proj(attention(q, cross[2 * i], cross[2 * i + 1], keep)))
            x = x + layer.mlp_norm.post(layer.mlp(layer.mlp_norm.pre(x)))
        # The tied head on a 2-D input exports as Gemm(transB=1) over the embedding matrix itself, so
        # the file holds one copy of it (a 3-D matmul would get a transposed, constant-folded second copy).
        logits = F.linear(m.decoder_norm(x[:, -1]), m.embed.weight)  # (1, V)
        return (logits, *present)


def encoder_io(layers: int) -> tuple[list[str], list[str]]:
    return ["input_ids", "source_mask"], [f"cross_{kv}_{i}" for i in range(layers) for kv in ("key", "value")] + ["sentence"]


def decoder_io(layers: int) -> tuple[list[str], list[str]]:
    past = [f"past_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
    cross = [f"cross_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
    present = [f"present_{kv}_{i}" for i in range(layers) for kv in ("key", "value")]
    return ["input_ids", "position", "source_mask", *past, *cross], ["logits", *present]
