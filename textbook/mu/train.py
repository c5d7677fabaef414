"""The training loop: gradient accumulation, clipping, bf16 autocast + torch.compile on GPU, DDP, WSD.

Several GPUs: `torchrun --nproc-per-node N -m textbook train ...` (DistributedDataParallel; each rank
takes every N-th batch). Logs go to a progress bar on stderr and to RUN/log.jsonl.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from textbook.config import public_dict
from textbook.contract import QUERY, TARGET, TRAIN, VALIDATION
from textbook.errors import TextbookError
from textbook.mu.builder import build_run
from textbook.mu.checkpoint import (
    WEIGHTS, checkpoint_dir, load_checkpoint, read_run_config, save_checkpoint, save_weights,
)
from textbook.mu.data import IGNORE, Batch, BatchStream, check_shards, required_columns
from textbook.mu.distill import kd_loss
from textbook.mu.distributed import Distributed
from textbook.mu.flops import peak_flops, training_flops
from textbook.mu.lora import merge_lora
from textbook.mu.model import Mu, attention_kernels, count_parameters
from textbook.mu.muon import bf16_is_native
from textbook.mu.optim import build_optimizers, decay_progress, set_lr, wsd
from textbook.mu.sentence import sentence_loss
from textbook.mu.trainconfig import TrainConfig
from textbook.rundir import RunDir
from textbook.shards import atomic_write_bytes, sha256_file
from textbook.progress import progress_bar
from textbook.report import Report


# Fields that may differ between a run and its --resume (they change no more than rounding: a run started in
# bf16 on a GPU or an AVX-512 CPU may go on in fp32 on a machine without native bf16).
_RESUME_FREE = {"resume", "device", "precision", "compile", "log_every", "checkpoint_every", "eval_batches", "out"}  # out: a run may move


def _claim(cfg: TrainConfig, run: Path, rundir: RunDir | None) -> None:
    """A --resume continues the run recorded in RUN/run.json only with the same settings (the fields in
    _RESUME_FREE aside); a new run replaces the record. Under torchrun rank 0 checks for all (rundir None)."""
    if rundir is None:
        return
    fingerprint = {k: v for k, v in public_dict(cfg).items() if k not in _RESUME_FREE}
    if cfg.resume and not rundir.path.is_file():  # a run from before run.json: its stored config is the record
        stored = read_run_config(run)["train"]
        default = {f.name: f.default for f in dataclasses.fields(TrainConfig)}  # a run from before a field existed
        rundir.claim({k: stored.get(k, default[k]) for k in fingerprint}, fresh=True)
    rundir.claim(fingerprint, "a training run", fresh=not cfg.resume)


@dataclass
class _Window:
    """Sums over the steps since the last log line."""

    tokens: int = 0
    flops: float = 0.0
    loss: torch.Tensor | float = 0.0  # summed on the device: reading it every step would stall a GPU
    steps: int = 0
    t0: float = dataclasses.field(default_factory=time.perf_counter)

    def add(self, tokens: int, flops: float, loss: torch.Tensor) -> None:
        self.tokens, self.flops, self.loss = self.tokens + tokens, self.flops + flops, self.loss + loss


@contextlib.contextmanager
def _numerics(device: torch.device, precision: str):
    """bf16 autocast where asked (by default where the device multiplies bf16 natively), and the attention
    kernels that suit the device."""
    bf16 = precision == "bf16" or (precision == "auto" and bf16_is_native(device))
    with attention_kernels(device), (torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()):
        yield


def cross_entropy(model, src_ids, src_mask, tgt_in, labels, keep_logits: bool = False):
    """Mean cross-entropy over real target tokens (and the logits when asked: distillation needs them).

    Compiled as one function on GPU so the fp32 upcast and log-softmax of the (B, T, V) logits fuse
    with the head instead of round-tripping through memory.
    """
    logits = model(src_ids, src_mask, tgt_in)  # (B, T, V)
    ce = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE)
    return (ce, logits) if keep_logits else (ce, None)


def _loss(forward, model, batch: Batch, teacher: Mu | None, cfg: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    if batch.vectors is not None:  # --task embed: the logged loss is the cosine distance
        loss = sentence_loss(model, batch.src_ids, batch.src_mask, batch.vectors)
        return loss, loss
    ce, logits = forward(model, batch.src_ids, batch.src_mask, batch.tgt_in, batch.labels, keep_logits=teacher is not None)
    if teacher is None:
        return ce, ce
    with torch.no_grad():
        teacher_logits = teacher(batch.src_ids, batch.src_mask, batch.tgt_in)
    kd = kd_loss(logits, teacher_logits, batch.labels, cfg.kd_temperature)
    return (1 - cfg.kd_weight) * ce + cfg.kd_weight * kd, ce


@torch.no_grad()
def validation_loss(model, stream: BatchStream, device: torch.device, precision: str, limit: int) -> float:
    """Token-weighted mean cross-entropy over up to `limit` batches of one pass."""
    total, count = 0.0, 0
    model.eval()
    for i, batch in enumerate(stream.one_pass()):
        if i >= limit:
            break
        batch = batch.to(device)
        with _numerics(device, precision):
            logits = model(batch.src_ids, batch.src_mask, batch.tgt_in)
        n = int((batch.labels != IGNORE).sum())
        total += float(F.cross_entropy(logits.float().flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE)) * n
        count += n
    model.train()
    return total / max(count, 1)


def _export_weights(run: Path, raw: torch.nn.Module, lora: bool) -> None:
    """RUN/model.safetensors: the plain model (LoRA merged) that eval and export load."""
    model = merge_lora(copy.deepcopy(raw)) if lora else raw
    save_weights(run / WEIGHTS, model.state_dict())


_TIMED_STEPS = 10


def _in_stable_phase(done: int, total: int, decay_fraction: float) -> bool:
    return done < total - round(decay_fraction * total)


@dataclass
class _TimeBox:
    """Fits a time-boxed run's step count (--max-minutes) to its budget.

    During the stable phase the learning rate is 1.0 whatever the total, so only the decay (still ahead)
    moves. Once the decay has begun, the end still moves with the pace, and the rest of the decay is
    re-planned from where it stands (`anchor`, see optim.wsd), so the rate never jumps: a run whose first
    minutes were slow (a busy machine) used to fix its end too early and leave a third of its budget unused.
    The pace is measured from the end of the first `_TIMED_STEPS` steps of this process (the first steps
    are slow) over every step since: a pace over the last few steps only let one slow window (a
    validation, a burst of long batches) cut a run short by 10%.
    """

    budget_s: float
    decay_fraction: float
    cap: int  # what --max-steps/--epochs allow
    start: float  # perf_counter() of the run's start, resumed time included
    first: int  # the step this process started from
    since: tuple[int, float]  # (step, perf_counter()) the pace is measured from
    anchor: tuple[int, float] | None = None  # where the decay was last re-planned (step, linear cool)

    def fit(self, done: int, total: int, now: float, log_every: int, mean=float) -> int:
        """The step count after step `done` (1-based); `mean` agrees the pace across ranks."""
        if done - self.first < _TIMED_STEPS:
            return total
        stable = _in_stable_phase(done, total, self.decay_fraction) and self.anchor is None
        warmed_up = done - self.first == _TIMED_STEPS
        if warmed_up or done % log_every == 0:
            per_step = mean((now - self.since[1]) / (done - self.since[0]))
            remaining = mean(self.budget_s - (now - self.start))  # agreed too: every rank must pick the same end
            fit = done + int(0.95 * remaining / per_step)  # 5%: checkpoints and validation
            if stable:
                earliest = math.ceil(done / (1 - self.decay_fraction)) + 1  # the decay has not begun yet
                total = min(self.cap, max(fit, earliest))
            elif min(self.cap, max(fit, done)) != total:
                # the next step's cool under the current plan, then a straight line from there to the new end
                self.anchor = (done, decay_progress(done, total, self.decay_fraction, self.anchor))
                total = min(self.cap, max(fit, done))
        if warmed_up:
            self.since = (done, now)
        return total


def train(cfg: TrainConfig, *, progress: bool = True, calls: list[str] | None = None) -> Report:
    """Train (or resume) a run; returns a summary. The library entry point of `textbook train`. `calls`, the
    catalogue's valid calls of a settings run, are kept as RUN/calls.json for constrained decoding."""
    if not cfg.data:
        raise TextbookError("no training data: pass --data DIR (a shard directory; repeat for several)")
    if cfg.resume and not Path(cfg.out).is_dir():
        raise TextbookError(f"{cfg.out} does not exist, so it is not a Mu run directory to resume: drop --resume "
                            "to start a new run, or pass the --out of the run to continue")
    _check_precision(cfg)
    # One launch per run directory; under torchrun the ranks of that launch share it, so rank 0 holds it.
    with RunDir(cfg.out) if int(os.environ.get("RANK", "0")) == 0 else contextlib.nullcontext() as rundir:
        facts = _train(cfg, progress, rundir, calls)
    return Report(facts, ["trained"] + [f"  {k}: {f'{v:.4f}' if isinstance(v, float) else v}"
                                        for k, v in facts.items() if k != "rank"])


def _check_precision(cfg: TrainConfig) -> None:
    """Refuse bf16 on a CPU that has no native bf16 matmul: there it is ~200x slower than fp32 (muon.py)."""
    kind = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.precision == "bf16" and kind == "cpu" and not bf16_is_native(torch.device("cpu")):
        raise TextbookError("--precision bf16: this CPU has no native bf16 matrix multiply (AVX2 only), so bf16 would "
                            "run about 200x slower than fp32; pass --precision auto (or fp32)")


def _trim_log(path: Path, step: int) -> None:
    """Keep the log lines of steps up to the checkpoint a run (re)starts from: lines written after it,
    before a kill, are written again by the resumed run and would otherwise appear twice."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (ValueError, KeyError, TypeError):  # a line cut short by the kill
            continue
    atomic_write_bytes(path, "".join(kept).encode())


def _train(cfg: TrainConfig, progress: bool, rundir: RunDir | None, calls: list[str] | None) -> dict[str, Any]:
    run = Path(cfg.out)
    if cfg.resume and checkpoint_dir(run) is None:
        # killed before its first checkpoint: nothing was kept, so resuming is starting over (the same
        # result), and a `--resume` retry loop never gets stuck on a run that died early
        cfg = dataclasses.replace(cfg, resume=False)
    if not cfg.resume and checkpoint_dir(run) is not None:
        raise TextbookError(f"{run} already holds a run: pass --resume to continue it, or choose another --out")
    check_shards([Path(d) for d in cfg.data], required_columns(cfg.task, cfg.text_column))  # before a tokenizer is trained on them
    check_shards([Path(d) for d in cfg.embed_data], required_columns("embed", cfg.text_column))
    _claim(cfg, run, rundir)
    dist = Distributed.start(cfg.device)
    torch.manual_seed(cfg.seed)
    built = build_run(cfg, run, dist, calls)
    raw, mcfg, tokenizer, teacher = built.model, built.model_cfg, built.tokenizer, built.teacher
    stream = BatchStream(
        list(cfg.data), tokenizer, mcfg, task=cfg.task, text_column=cfg.text_column, batch_size=cfg.batch_size,
        seed=cfg.seed, skip_long=cfg.skip_long, bpe_dropout=cfg.bpe_dropout, lexicon=built.lexicon,
        dedup=cfg.dedup if cfg.dedup is not None else cfg.task == "settings", rank=dist.rank, world=dist.world,
    )
    val = None
    if cfg.task == "settings":
        val = BatchStream(list(cfg.data), tokenizer, mcfg, task="settings", split=VALIDATION,
                          batch_size=cfg.batch_size, skip_long=True, require_rows=False, lexicon=built.lexicon)
        val = val if val.rows else None
    aux = None  # --embed-data: a second stream of texts with the teacher's embeddings
    if cfg.embed_data:
        if dist.world > 1:
            raise TextbookError("--embed-data runs in one process (it adds a second forward pass to each step): "
                                "drop it under torchrun, or train --task embed first and fine-tune without it")
        aux = BatchStream(list(cfg.embed_data), tokenizer, mcfg, task="embed", text_column=cfg.text_column,
                          batch_size=cfg.embed_batch_size, seed=cfg.seed)
    total = cfg.max_steps if cfg.epochs is None else math.ceil(cfg.epochs * stream.steps_per_epoch(cfg.grad_accum))
    optimizers = build_optimizers(raw, lr=cfg.lr, weight_decay=cfg.weight_decay, ns_steps=cfg.muon_ns_steps,
                                  encoder_lr_scale=cfg.encoder_lr_scale)
    state: dict[str, Any] = {"step": 0, "position": None, "tokens": 0, "elapsed_s": 0.0, "total": None}
    if cfg.resume:
        state = load_checkpoint(run, raw, optimizers)
    cap, total = total, state["total"] or total  # cap: what --max-steps/--epochs allow; total: what the time box fitted
    model = raw
    if dist.world > 1:
        model = torch.nn.parallel.DistributedDataParallel(
            raw, device_ids=[dist.device.index] if dist.device.type == "cuda" else None,
            find_unused_parameters=cfg.task == "embed")  # embed trains the encoder only
    forward = cross_entropy
    if cfg.compile if cfg.compile is not None else dist.device.type == "cuda":
        forward = torch.compile(cross_entropy, dynamic=True)  # dynamic: length bucketing makes many shapes

    peak = peak_flops(torch.cuda.get_device_name(dist.device)) if dist.device.type == "cuda" else None
    log_path = run / "log.jsonl"
    if dist.main:
        _trim_log(log_path, state["step"])
    batches = stream.iterate(state["position"])
    aux_batches = aux.iterate(state.get("embed_position")) if aux is not None else None
    bar = progress_bar(total, initial=state["step"], show=progress and dist.main, unit="step")
    window = _Window()
    start, loss_value, val_loss = time.perf_counter() - state["elapsed_s"], float("nan"), None
    model.train()
    step = state["step"]
    box = None
    if cfg.max_minutes:
        anchor = state.get("decay_anchor")
        box = _TimeBox(cfg.max_minutes * 60, cfg.decay_fraction, cap, start, step, (step, time.perf_counter()),
                       tuple(anchor) if anchor else None)
    while step < total:
        lr = set_lr(optimizers, wsd(step, total, cfg.warmup_steps, cfg.decay_fraction, cfg.decay_shape,
                                    box.anchor if box is not None else None))
        for micro in range(cfg.grad_accum):
            batch, position = next(batches)
            batch = batch.to(dist.device)
            sync = micro == cfg.grad_accum - 1 or dist.world == 1
            with (contextlib.nullcontext() if sync else model.no_sync()), _numerics(dist.device, cfg.precision):
                loss, ce = _loss(forward, model, batch, teacher, cfg)
                if aux_batches is not None:
                    extra, state["embed_position"] = next(aux_batches)
                    extra = extra.to(dist.device)
                    loss = loss + cfg.embed_weight * sentence_loss(model, extra.src_ids, extra.src_mask, extra.vectors)
                (loss / cfg.grad_accum).backward()
            flops = training_flops(mcfg, *batch.src_ids.shape, batch.tgt_in.shape[1])
            window.add(batch.tokens * dist.world, flops * dist.world, ce.detach() / cfg.grad_accum)
            state["tokens"] += batch.tokens * dist.world
        grad_norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), cfg.clip)
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        window.steps += 1
        if box is not None:
            total = state["total"] = bar.total = box.fit(step + 1, total, time.perf_counter(), cfg.log_every, dist.mean)
            state["decay_anchor"] = box.anchor  # for the checkpoint: a resumed run goes on with the same decay
        last = step + 1 == total
        if (step + 1) % cfg.log_every == 0 or last:
            if dist.device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - window.t0
            loss_value = dist.mean(float(window.loss) / window.steps)
            record = {
                "step": step + 1, "loss": round(loss_value, 5), "lr": lr, "grad_norm": round(float(grad_norm), 4),
                "tokens": state["tokens"], "tokens_per_s": round(window.tokens / seconds, 1),
                "mfu": round(window.flops / seconds / (peak * dist.world), 4) if peak else None,
                "elapsed_s": round(time.perf_counter() - start, 1),
            }
            bar.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr:.2e}", tok_s=f"{record['tokens_per_s']:.0f}")
            if dist.main:
                with log_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
            window = _Window()
        if (step + 1) % cfg.checkpoint_every == 0 or last:
            if val is not None and dist.main:
                val_loss = validation_loss(raw, val, dist.device, cfg.precision, cfg.eval_batches)
                with log_path.open("a") as fh:
                    fh.write(json.dumps({"step": step + 1, "val_loss": round(val_loss, 5)}) + "\n")
                bar.write(f"step {step + 1}: validation loss {val_loss:.4f}")
            state.update(step=step + 1, position=position, elapsed_s=time.perf_counter() - start)
            if dist.main:
                save_checkpoint(run, raw, optimizers, state)
                _export_weights(run, raw, cfg.lora_rank > 0)
            dist.barrier()
        bar.update(1)
        step += 1
    bar.close()
    indexed = _index(cfg, run, raw, tokenizer, built.lexicon, progress) if dist.main else None
    dist.stop()
    if rundir is not None:
        rundir.finish(steps=total)
    return {
        "run": str(run), "steps": total, "tokens": state["tokens"], "elapsed_s": round(time.perf_counter() - start, 1),
        "loss": loss_value, "val_loss": val_loss, "parameters": count_parameters(mcfg)["total"],
        "trainable": built.trainable, "device": str(dist.device), "world": dist.world, "rank": dist.rank,
        "skipped_long": stream.skipped, "duplicates_skipped": stream.duplicates, "indexed": indexed,
    }


def _index(cfg: TrainConfig, run: Path, model: Mu, tokenizer, lexicon, progress: bool) -> int | None:
    """RUN/neighbours.npz: the retrieval index of a settings run (neighbours.py), made from the final weights."""
    if cfg.task != "settings" or not cfg.index_size:
        return None
    from textbook.mu.eval import read_rows
    from textbook.mu.neighbours import INDEX_FILE, build

    table = read_rows([Path(d) for d in cfg.data], TRAIN)
    pairs = list(zip(table[QUERY].to_pylist(), table[TARGET].to_pylist()))
    if cfg.lora_rank:  # the index must come from the weights eval and export load: LoRA merged
        model = merge_lora(copy.deepcopy(model))
    index = build(model, tokenizer, lexicon, [(q or "", t) for q, t in pairs], size=cfg.index_size, seed=cfg.seed,
                  weights_sha256=sha256_file(run / WEIGHTS), progress=progress)
    index.save(run / INDEX_FILE)
    return len(index)
