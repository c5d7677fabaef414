"""Training throughput of Mu against a plain PyTorch nn.Transformer of the same shapes, in one run.

Each variant runs real training steps (forward, backward, optimizer) on random tokens with no padding:
Mu with its Muon + AdamW routing, the reference with fused AdamW. Reported per variant: tokens/s
(source + target tokens) of the whole step, MFU of the whole step and of forward + backward alone
(model FLOPs only, textbook/mu/flops.py: the reference's are counted with multi-head K/V), optimizer
milliseconds per step and peak GPU memory; then Mu's ratios to the reference.

    python benchmarks/train_throughput.py                                   # CPU: mu-small, settings-sized sequences
    python benchmarks/train_throughput.py --device cuda --preset mu-330m --batch 16 --src-len 512 --tgt-len 512 \
        --grad-accum 4 --compile both --json out.json                      # GPU: bf16 autocast
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch import nn

from textbook.mu.config import preset
from textbook.mu.flops import peak_flops, training_flops
from textbook.mu.model import Mu, attention_kernels, count_parameters
from textbook.mu.muon import bf16_is_native
from textbook.mu.optim import build_optimizers
from textbook.mu.train import cross_entropy


class Reference(nn.Module):
    """nn.Transformer with Mu's shapes: pre-LN (norm_first), GELU, no biases, tied embedding and head, MHA."""

    def __init__(self, cfg):
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.transformer = nn.Transformer(
            d_model=cfg.d_model, nhead=cfg.n_heads, num_encoder_layers=cfg.n_encoder_layers,
            num_decoder_layers=cfg.n_decoder_layers, dim_feedforward=cfg.d_ff, dropout=0.0,
            activation="gelu", batch_first=True, norm_first=True, bias=False,
        )

    def forward(self, src_ids, src_mask, tgt_ids):
        causal = nn.Transformer.generate_square_subsequent_mask(tgt_ids.shape[1], device=tgt_ids.device)
        h = self.transformer(self.embed(src_ids), self.embed(tgt_ids), tgt_mask=causal, tgt_is_causal=True)
        return F.linear(h, self.embed.weight)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(name, model, optimizers, cfg, args, device, kv_dim=None):
    forward = torch.compile(cross_entropy) if name.endswith("compiled") else cross_entropy  # as textbook train does
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    gen = torch.Generator().manual_seed(0)
    src = torch.randint(3, cfg.vocab_size, (args.batch, args.src_len), generator=gen).to(device)
    tgt = torch.randint(3, cfg.vocab_size, (args.batch, args.tgt_len), generator=gen).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step():
        t0 = time.perf_counter()
        for _ in range(args.grad_accum):
            with attention_kernels(device), autocast:  # the trainer's kernel choice, for both models
                loss, _ = forward(model, src, None, tgt, tgt)
            (loss / args.grad_accum).backward()
        _sync(device)
        t1 = time.perf_counter()
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        _sync(device)
        return t1 - t0, time.perf_counter() - t1

    t_compile = time.perf_counter()
    for _ in range(args.warmup):
        step()
    t_compile = time.perf_counter() - t_compile
    times = [step() for _ in range(args.steps)]
    fwd_bwd = sum(t for t, _ in times) / len(times)
    opt = sum(t for _, t in times) / len(times)
    tokens = args.batch * (args.src_len + args.tgt_len) * args.grad_accum
    flops = training_flops(cfg, args.batch, args.src_len, args.tgt_len, kv_dim=kv_dim) * args.grad_accum
    peak = peak_flops(torch.cuda.get_device_name(device)) if device.type == "cuda" and args.bf16 else None
    return {
        "variant": name,
        "tokens_per_s": tokens / (fwd_bwd + opt),
        "mfu_step": flops / (fwd_bwd + opt) / peak if peak else None,
        "mfu_fwd_bwd": flops / fwd_bwd / peak if peak else None,
        "step_ms": 1000 * (fwd_bwd + opt),
        "optimizer_ms": 1000 * opt,
        "warmup_s": t_compile,
        "peak_mem_gb": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="mu-small")
    parser.add_argument("--vocab-size", type=int, default=None, help="override the preset's vocabulary")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--src-len", type=int, default=24)
    parser.add_argument("--tgt-len", type=int, default=24)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--compile", choices=["off", "on", "both"], default="off")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto", help="auto: bf16 autocast where the device has native bf16 (textbook.mu.muon.bf16_is_native)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    args.bf16 = args.precision == "bf16" or (args.precision == "auto" and bf16_is_native(device))
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    cfg = preset(args.preset)
    cfg = cfg.replace(vocab_size=args.vocab_size or cfg.vocab_size,
                      max_source_len=max(cfg.max_source_len, args.src_len), max_target_len=max(cfg.max_target_len, args.tgt_len))
    modes = {"off": [""], "on": [" compiled"], "both": ["", " compiled"]}[args.compile]
    results = []
    for suffix in modes:
        for kind in ["mu"] + ([] if args.no_reference else ["reference"]):
            torch.manual_seed(0)
            if kind == "mu":
                model = Mu(cfg).to(device)
                optimizers = build_optimizers(model, lr=1e-4, weight_decay=0.01)
                kv_dim = None
            else:
                model = Reference(cfg).to(device)
                optimizers = [torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda" or None)]
                kv_dim = cfg.d_model
            params = sum(p.numel() for p in model.parameters())
            result = measure(kind + suffix, model, optimizers, cfg, args, device, kv_dim)
            result["parameters"] = params
            results.append(result)
            print(json.dumps(result), flush=True)
            del model, optimizers
            if device.type == "cuda":
                torch.cuda.empty_cache()

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(f"\n{args.preset} ({count_parameters(cfg)['total'] / 1e6:.1f}M) on {name}, torch {torch.__version__}, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}, batch {args.batch} x grad-accum {args.grad_accum}, "
          f"src {args.src_len} + tgt {args.tgt_len} tokens")
    print(f"{'variant':<20}{'tokens/s':>12}{'MFU step':>10}{'MFU f+b':>10}{'step ms':>10}{'optim ms':>10}{'mem GB':>8}")
    for r in results:
        mfu = lambda v: f"{v:.1%}" if v is not None else "-"  # noqa: E731
        mem = f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] is not None else "-"
        print(f"{r['variant']:<20}{r['tokens_per_s']:>12,.0f}{mfu(r['mfu_step']):>10}{mfu(r['mfu_fwd_bwd']):>10}"
              f"{r['step_ms']:>10.1f}{r['optimizer_ms']:>10.1f}{mem:>8}")
    by_name = {r["variant"]: r for r in results}
    for suffix in modes:
        mu, ref = by_name.get("mu" + suffix), by_name.get("reference" + suffix)
        if mu and ref:
            print(f"mu / reference{suffix}: tokens/s x{mu['tokens_per_s'] / ref['tokens_per_s']:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "torch": torch.__version__, "args": vars(args), "results": results}, fh, indent=2)


if __name__ == "__main__":
    main()
