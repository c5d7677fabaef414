"""Mu: an encoder-decoder transformer (Dual LayerNorm, RoPE, grouped-query attention, tied embeddings).

Shapes in comments: B batch, S source length, T target length, D d_model, H query heads, G KV heads
(GQA: H // G query heads share one K/V head), K head size, L decoder layers, M the KV cache length
(max_target_len), V vocabulary.

Dual LayerNorm (Mu; "Peri-LN", arXiv 2502.02732; "sandwich" LN in CogView): every sub-layer is
`x + post_norm(sublayer(pre_norm(x)))`, both norms inside the residual branch, so the residual stream
stays un-normalised (like pre-LN) while each update has a fixed scale (the post norm).

Export contract (issue 6): `encode` and `decode_step` are the two graphs. `decode_step` takes a
fixed-size self-attention KV cache (written with a one-hot `where`, no scatter on a data-dependent
index) and the cross-attention K/V that `cross_kv` computes once from the encoder output. No forward
method has Python control flow that depends on tensor values.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from textbook.mu.config import MuConfig

Allowed = Callable[[list[int]], list[int]]  # a decoding prefix -> the token ids that may follow it (calls.py)


def attention_kernels(device: torch.device):
    """The SDPA kernels to run with: on CPU the math kernel, elsewhere PyTorch's own choice.

    Settings queries are ~10 tokens; for such short sequences the CPU flash kernel's per-head tiling
    costs more than it saves. Measured on this project's 2-core CPU, mu-small forward + backward in bf16,
    batch 256: flash (PyTorch's CPU default) 1.61 s, math 1.15 s.
    """
    if device.type != "cpu":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


class Rotary(nn.Module):
    """RoPE tables (Su et al., arXiv 2104.09864), rotate-half layout as in GPT-NeoX and Llama."""

    def __init__(self, head_dim: int, max_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))  # (K/2,)
        angles = torch.outer(torch.arange(max_len, dtype=torch.float32), inv_freq)  # (max_len, K/2)
        # Not persistent: derived from the config, so checkpoints hold weights only.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, positions: Tensor) -> tuple[Tensor, Tensor]:
        return self.cos[positions], self.sin[positions]  # (T, K/2) each


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (i, i + K/2) of x (B, heads, T, K) by position-dependent angles."""
    x1, x2 = x.chunk(2, dim=-1)  # (B, heads, T, K/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
    """q (B, H, T, K), k/v (B, G, S, K), mask broadcastable to (B, H, T, S), True = may attend -> (B, T, H*K)."""
    groups = q.shape[1] // k.shape[1]
    # Each K/V head serves `groups` consecutive query heads (the layout of Llama's repeat_kv). An explicit
    # repeat rather than SDPA's enable_gqa: every ONNX exporter and NPU runtime understands it.
    k = k.repeat_interleave(groups, dim=1)  # (B, H, S, K)
    v = v.repeat_interleave(groups, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)  # (B, H, T, K)
    return out.transpose(1, 2).flatten(2)  # (B, T, H*K)


class Projections(nn.Module):
    """The Q/K/V/O projections of an attention block; grouped-query: fewer K/V heads than Q heads."""

    def __init__(self, cfg: MuConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.q_proj = nn.Linear(cfg.d_model, cfg.n_heads * cfg.head_dim, bias=False)
        self.k_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.v_proj = nn.Linear(cfg.d_model, cfg.n_kv_heads * cfg.head_dim, bias=False)
        self.o_proj = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)


class SelfAttention(Projections):
    """Bidirectional (encoder) or causal (decoder) attention with RoPE on queries and keys."""

    def qkv(self, x: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape  # x (B, T, D)
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, K)
        k = self.k_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, T, K)
        v = self.v_proj(x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, T, K)
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None = None, is_causal: bool = False) -> Tensor:
        q, k, v = self.qkv(x, cos, sin)
        return self.o_proj(attend(q, k, v, mask, is_causal))  # (B, T, D)

    def step(
        self, x: Tensor, cos: Tensor, sin: Tensor, k_cache: Tensor, v_cache: Tensor, slot: Tensor, visible: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One new position: x (B, 1, D); caches (B, G, M, K); slot (1, 1, M, 1) marks where it goes."""
        q, k, v = self.qkv(x, cos, sin)  # (B, H, 1, K), (B, G, 1, K), (B, G, 1, K)
        k_cache = torch.where(slot, k.to(k_cache.dtype), k_cache)  # (B, G, M, K)
        v_cache = torch.where(slot, v.to(v_cache.dtype), v_cache)
        out = attend(q, k_cache.to(q.dtype), v_cache.to(q.dtype), visible)  # visible (1, 1, 1, M): positions <= now
        return self.o_proj(out), k_cache, v_cache


class CrossAttention(Projections):
    """Decoder queries over the encoder output; no RoPE (source and target positions are not comparable)."""

    def project_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        b, s, _ = memory.shape  # memory (B, S, D)
        k = self.k_proj(memory).view(b, s, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, S, K)
        v = self.v_proj(memory).view(b, s, self.n_kv_heads, self.head_dim).transpose(1, 2)  # (B, G, S, K)
        return k, v

    def forward(self, x: Tensor, k: Tensor, v: Tensor, src_mask: Tensor | None) -> Tensor:
        b, t, _ = x.shape  # x (B, T, D); k/v (B, G, S, K); src_mask (B, 1, 1, S) or None
        q = self.q_proj(x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # (B, H, T, K)
        return self.o_proj(attend(q, k.to(q.dtype), v.to(q.dtype), src_mask))  # (B, T, D)


class MLP(nn.Module):
    def __init__(self, cfg: MuConfig):
        super().__init__()
        self.up = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.gelu(self.up(x)))  # (B, T, D) -> (B, T, F) -> (B, T, D)


class DualNorm(nn.Module):
    """`post(sublayer(pre(x)))`: the residual branch of Dual LayerNorm; the caller adds x."""

    def __init__(self, cfg: MuConfig):
        super().__init__()
        self.pre = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=False)
        self.post = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=False)


class EncoderLayer(nn.Module):
    def __init__(self, cfg: MuConfig):
        super().__init__()
        self.attn, self.attn_norm = SelfAttention(cfg), DualNorm(cfg)
        self.mlp, self.mlp_norm = MLP(cfg), DualNorm(cfg)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, src_mask: Tensor | None) -> Tensor:
        x = x + self.attn_norm.post(self.attn(self.attn_norm.pre(x), cos, sin, mask=src_mask))  # bidirectional
        return x + self.mlp_norm.post(self.mlp(self.mlp_norm.pre(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: MuConfig):
        super().__init__()
        self.self_attn, self.self_norm = SelfAttention(cfg), DualNorm(cfg)
        self.cross_attn, self.cross_norm = CrossAttention(cfg), DualNorm(cfg)
        self.mlp, self.mlp_norm = MLP(cfg), DualNorm(cfg)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cross_k: Tensor, cross_v: Tensor, src_mask: Tensor | None) -> Tensor:
        # Causal without a padding mask: targets are right-padded, so a real position never sees a pad
        # (pads come after it) and pad positions carry no loss. This keeps the flash kernel eligible.
        x = x + self.self_norm.post(self.self_attn(self.self_norm.pre(x), cos, sin, is_causal=True))
        x = x + self.cross_norm.post(self.cross_attn(self.cross_norm.pre(x), cross_k, cross_v, src_mask))
        return x + self.mlp_norm.post(self.mlp(self.mlp_norm.pre(x)))

    def step(
        self, x: Tensor, cos: Tensor, sin: Tensor, k_cache: Tensor, v_cache: Tensor, slot: Tensor, visible: Tensor,
        cross_k: Tensor, cross_v: Tensor, src_mask: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        h, k_cache, v_cache = self.self_attn.step(self.self_norm.pre(x), cos, sin, k_cache, v_cache, slot, visible)
        x = x + self.self_norm.post(h)
        x = x + self.cross_norm.post(self.cross_attn(self.cross_norm.pre(x), cross_k, cross_v, src_mask))
        return x + self.mlp_norm.post(self.mlp(self.mlp_norm.pre(x))), k_cache, v_cache


def key_mask(src_mask: Tensor | None) -> Tensor | None:
    """(B, S) True = real token -> (B, 1, 1, S), broadcast over heads and query positions."""
    return None if src_mask is None else src_mask[:, None, None, :].bool()


class Mu(nn.Module):
    def __init__(self, cfg: MuConfig):
        super().__init__()
        self.cfg = cfg
        # One matrix for encoder input, decoder input and the output head (Mu shares them).
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder_layers = nn.ModuleList(EncoderLayer(cfg) for _ in range(cfg.n_encoder_layers))
        self.encoder_norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=False)
        self.decoder_layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.n_decoder_layers))
        self.decoder_norm = nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=False)
        self.rope = Rotary(cfg.head_dim, max(cfg.max_source_len, cfg.max_target_len), cfg.rope_theta)
        self.apply(self._init)

    def _init(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.cfg.init_std)

    # -- encoder ------------------------------------------------------------------------------------
    def encode(self, src_ids: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """src_ids (B, S), src_mask (B, S) True = real token (None = no padding) -> memory (B, S, D)."""
        cos, sin = self.rope(torch.arange(src_ids.shape[1], device=src_ids.device))
        x, mask = self.embed(src_ids), key_mask(src_mask)
        for layer in self.encoder_layers:
            x = layer(x, cos, sin, mask)
        return self.encoder_norm(x)

    def cross_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Every decoder layer's cross-attention K and V, computed once: 2 x (L, B, G, S, K)."""
        pairs = [layer.cross_attn.project_kv(memory) for layer in self.decoder_layers]
        return torch.stack([k for k, _ in pairs]), torch.stack([v for _, v in pairs])

    # -- decoder ------------------------------------------------------------------------------------
    def logits(self, h: Tensor) -> Tensor:
        return F.linear(self.decoder_norm(h), self.embed.weight)  # (B, T, D) -> (B, T, V), the tied head

    def decode(self, tgt_ids: Tensor, memory: Tensor, src_mask: Tensor | None = None) -> Tensor:
        """Teacher forcing: tgt_ids (B, T) (starting with BOS) over memory (B, S, D) -> logits (B, T, V)."""
        cos, sin = self.rope(torch.arange(tgt_ids.shape[1], device=tgt_ids.device))
        x, mask = self.embed(tgt_ids), key_mask(src_mask)
        for layer in self.decoder_layers:
            k, v = layer.cross_attn.project_kv(memory)
            x = layer(x, cos, sin, k, v, mask)
        return self.logits(x)

    def forward(self, src_ids: Tensor, src_mask: Tensor | None, tgt_ids: Tensor | None) -> Tensor:
        """Logits (B, T, V); with tgt_ids None the encoder's memory (B, S, D) (sentence distillation, which
        goes through forward so DistributedDataParallel sees it)."""
        memory = self.encode(src_ids, src_mask)
        return memory if tgt_ids is None else self.decode(tgt_ids, memory, src_mask)

    def empty_cache(self, batch: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
        c = self.cfg
        shape = (c.n_decoder_layers, batch, c.n_kv_heads, c.max_target_len, c.head_dim)  # (L, B, G, M, K)
        return torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype)

    def decode_step(
        self, token: Tensor, position: Tensor, k_cache: Tensor, v_cache: Tensor,
        cross_k: Tensor, cross_v: Tensor, src_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One decoding step with static shapes.

        token (B, 1) int64, position (1,) int64 (the index of `token` in the target), caches (L, B, G, M, K),
        cross_k/cross_v (L, B, G, S, K) from `cross_kv`, src_mask (B, S) -> logits (B, V) and both caches updated.
        """
        slots = torch.arange(k_cache.shape[3], device=token.device)
        slot = (slots == position).view(1, 1, -1, 1)  # (1, 1, M, 1): where this step's K/V are written
        visible = (slots <= position).view(1, 1, 1, -1)  # (1, 1, 1, M): causal over the filled cache
        cos, sin = self.rope(position)  # (1, K/2)
        x, mask = self.embed(token), key_mask(src_mask)  # (B, 1, D)
        new_k, new_v = [], []
        for i, layer in enumerate(self.decoder_layers):
            x, k, v = layer.step(x, cos, sin, k_cache[i], v_cache[i], slot, visible, cross_k[i], cross_v[i], mask)
            new_k.append(k)
            new_v.append(v)
        return self.logits(x)[:, -1], torch.stack(new_k), torch.stack(new_v)

    @torch.no_grad()
    def generate(self, src_ids: Tensor, src_mask: Tensor | None = None, max_new_tokens: int | None = None,
                 allowed: Allowed | None = None) -> list[list[int]]:
        """Greedy decoding with the KV cache; returns each row's tokens up to (not including) EOS.
        `allowed(prefix) -> token ids` (textbook.mu.calls.CallTrie.allowed) restricts each step's choice."""
        return self.generate_scored(src_ids, src_mask, max_new_tokens, allowed)[0]

    def generate_scored(self, src_ids: Tensor, src_mask: Tensor | None = None, max_new_tokens: int | None = None,
                        allowed: Allowed | Sequence[Allowed] | None = None, *, scored_by: Allowed | None = None,
                        memory: Tensor | None = None) -> tuple[list[list[int]], list[float]]:
        """`generate`, and each row's log-probability of what it emitted, EOS included: the sum over its steps
        of log-softmax of the chosen token, over the allowed tokens only when `allowed` is given (the
        probability of this call among the valid ones, along the greedy path).

        `allowed` may be one function per row (retrieval restricts each row to its own setting's calls:
        textbook/mu/neighbours.py), and one with a `bias(prefix, tokens)` method adds a prior to the allowed tokens'
        logits before the choice (calls.py Steer); `scored_by` then says over which tokens the log-probability is
        taken (all valid calls, without the prior), so the score stays the model's own. `memory` is the encoder's
        output when the caller already has it."""
        steps = min(max_new_tokens or self.cfg.max_target_len, self.cfg.max_target_len)
        eos = self.cfg.eos_id
        rows_allowed = None if allowed is None else list(allowed) if isinstance(allowed, Sequence) else [allowed] * src_ids.shape[0]
        scoring = rows_allowed if scored_by is None else [scored_by] * src_ids.shape[0]
        memory = self.encode(src_ids, src_mask) if memory is None else memory
        cross_k, cross_v = self.cross_kv(memory)
        k_cache, v_cache = self.empty_cache(src_ids.shape[0], src_ids.device, memory.dtype)
        token = torch.full((src_ids.shape[0], 1), self.cfg.bos_id, dtype=torch.long, device=src_ids.device)
        done = torch.zeros(src_ids.shape[0], dtype=torch.bool, device=src_ids.device)
        logprob = torch.zeros(src_ids.shape[0], dtype=torch.float32, device=src_ids.device)
        out: list[Tensor] = []
        prefixes: list[list[int]] = [[] for _ in range(src_ids.shape[0])]
        for pos in range(steps):
            position = torch.tensor([pos], device=src_ids.device)
            logits, k_cache, v_cache = self.decode_step(token, position, k_cache, v_cache, cross_k, cross_v, src_mask)
            scores = logits if scoring is None else _constrain(logits, [f(prefix) for f, prefix in zip(scoring, prefixes)])
            if rows_allowed is not None:
                choices = [f(p) for f, p in zip(rows_allowed, prefixes)]
                logits = scores.clone() if scoring is rows_allowed else _constrain(logits, choices)
                for row, (f, p, ids) in enumerate(zip(rows_allowed, prefixes, choices)):  # a prior on the choice: calls.py Steer
                    bias = f.bias(p, ids) if hasattr(f, "bias") else None
                    if bias is not None:
                        logits[row, ids] += torch.tensor(bias, dtype=logits.dtype, device=logits.device)
            token = logits.argmax(-1, keepdim=True)  # (B, 1)
            chosen = torch.log_softmax(scores.float(), dim=-1).gather(-1, token)[:, 0]
            logprob += chosen.masked_fill(done, 0.0)
            token = token.masked_fill(done[:, None], eos)  # finished rows repeat EOS
            out.append(token)
            if scoring is not None:
                prefixes = [prefix + [t] for prefix, t in zip(prefixes, token[:, 0].tolist())]
            done |= token[:, 0] == eos
            if bool(done.all()):  # the generation loop, not a graph: stopping early is fine here
                break
        rows = torch.cat(out, dim=1).tolist()
        return [row[: row.index(eos)] if eos in row else row for row in rows], logprob.tolist()


def _constrain(logits: Tensor, allowed: list[list[int]]) -> Tensor:
    """(B, V) logits with every token outside each row's allowed list at -inf."""
    rows = torch.tensor([i for i, ids in enumerate(allowed) for _ in ids], device=logits.device)
    cols = torch.tensor([t for ids in allowed for t in ids], device=logits.device)
    masked = torch.full_like(logits, float("-inf"))
    masked[rows, cols] = logits[rows, cols]
    return masked


def count_parameters(cfg: MuConfig) -> dict[str, int]:
    """Parameter counts by part, on the meta device (nothing allocated: works for mu-330m anywhere)."""
    with torch.device("meta"):
        model = Mu(cfg)
    parts = {"embedding": model.embed, "encoder": model.encoder_layers, "decoder": model.decoder_layers}
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in parts.items()}
    counts["total"] = sum(p.numel() for p in model.parameters())  # tied head counted once
    return counts
