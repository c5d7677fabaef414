"""Run directories: weights in safetensors, everything else in JSON. Nothing is ever unpickled.

    RUN/config.json         model config (the model is rebuilt from it), training config, parameter counts
    RUN/tokenizer.json      the tokenizer the model was trained with
    RUN/lexicon.json        the words queries are spell-corrected against (MuConfig.spell_correct)
    RUN/model.safetensors   the latest weights (LoRA already merged): what eval and export read
    RUN/checkpoint/         resume state: model.safetensors, optimizer.safetensors, state.json
    RUN/log.jsonl           one line per logged step

The checkpoint directory is written beside the old one and swapped in with renames, so a kill at
any moment leaves a complete checkpoint (the old or the new) on disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load, save as st_save
from torch import nn

from textbook.errors import TextbookError
from textbook.mu.config import MuConfig
from textbook.mu.model import Mu
from textbook.shards import atomic_write_bytes, atomic_write_json

CONFIG, TOKENIZER, WEIGHTS, CKPT = "config.json", "tokenizer.json", "model.safetensors", "checkpoint"
LEXICON = "lexicon.json"


def save_weights(path: Path, state: dict[str, torch.Tensor]) -> None:
    atomic_write_bytes(path, st_save({k: v.detach().contiguous().cpu() for k, v in state.items()}))


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise TextbookError(f"{path} is missing: the run has no saved weights yet (train it, or pick another run)")
    return st_load(path.read_bytes())


# -- optimizer state: tensors to safetensors, the rest to JSON ------------------------------------
def _flatten_optimizers(optimizers: list[torch.optim.Optimizer]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors: dict[str, torch.Tensor] = {}
    meta: list[dict] = []
    for i, opt in enumerate(optimizers):
        sd = opt.state_dict()
        scalars: dict[str, dict[str, Any]] = {}
        for pid, entry in sd["state"].items():
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"{i}.{pid}.{key}"] = value
                else:
                    scalars.setdefault(str(pid), {})[key] = value
        meta.append({"type": type(opt).__name__, "param_groups": sd["param_groups"], "scalars": scalars})
    return tensors, meta


def _restore_optimizers(optimizers: list[torch.optim.Optimizer], tensors: dict[str, torch.Tensor], meta: list[dict]) -> None:
    if [m["type"] for m in meta] != [type(o).__name__ for o in optimizers]:
        raise TextbookError("the checkpoint's optimizers do not match this run's: resume with the same flags")
    for i, (opt, m) in enumerate(zip(optimizers, meta)):
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            idx, pid, name = key.split(".", 2)
            if int(idx) == i:
                state.setdefault(int(pid), {})[name] = value
        for pid, scalars in m["scalars"].items():
            state.setdefault(int(pid), {}).update(scalars)
        opt.load_state_dict({"state": state, "param_groups": m["param_groups"]})


# -- checkpoints ----------------------------------------------------------------------------------
def save_checkpoint(run: Path, model: nn.Module, optimizers: list[torch.optim.Optimizer], state: dict[str, Any]) -> None:
    """Atomically replace RUN/checkpoint with the model, optimizer, RNG and trainer `state`."""
    tmp, final, old = run / f"{CKPT}.tmp", run / CKPT, run / f"{CKPT}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(tmp / WEIGHTS, model.state_dict())
    tensors, meta = _flatten_optimizers(optimizers)
    rng = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng |= {f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    save_weights(tmp / "optimizer.safetensors", tensors | rng)
    atomic_write_json(tmp / "state.json", {**state, "optimizers": meta})
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def checkpoint_dir(run: Path) -> Path | None:
    for candidate in (run / CKPT, run / f"{CKPT}.old"):  # .old survives a kill between the two renames
        if (candidate / "state.json").is_file():
            return candidate
    return None


def load_checkpoint(run: Path, model: nn.Module, optimizers: list[torch.optim.Optimizer]) -> dict[str, Any]:
    """Restore model, optimizers and RNG from RUN/checkpoint; return the trainer state."""
    directory = checkpoint_dir(run)
    if directory is None:
        raise TextbookError(f"{run} has no checkpoint to resume from: drop --resume to start a new run")
    model.load_state_dict(load_weights(directory / WEIGHTS))
    state = json.loads((directory / "state.json").read_text())
    tensors = load_weights(directory / "optimizer.safetensors")
    torch.set_rng_state(tensors.pop("rng.cpu"))
    cuda = [tensors.pop(k) for k in sorted(k for k in list(tensors) if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    _restore_optimizers(optimizers, tensors, state.pop("optimizers"))
    return state


# -- runs -----------------------------------------------------------------------------------------
def read_run_config(run: str | Path) -> dict[str, Any]:
    path = Path(run) / CONFIG
    if not path.is_file():
        raise TextbookError(f"{run} is not a Mu run directory (no {CONFIG}): pass the --out of a `textbook train` run")
    return json.loads(path.read_text())


def write_run_config(run: Path, payload: dict[str, Any]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run / CONFIG, payload)


def load_model(run: str | Path, device: str | torch.device = "cpu") -> tuple[Mu, MuConfig]:
    """Rebuild a model from the run's own config.json and load RUN/model.safetensors into it."""
    run = Path(run)
    cfg = MuConfig.from_dict(read_run_config(run)["model"])
    model = Mu(cfg)
    try:
        model.load_state_dict(load_weights(run / WEIGHTS))
    except RuntimeError as exc:
        raise TextbookError(f"{run / WEIGHTS} does not fit the model in {run / CONFIG}: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval(), cfg


def tokenizer_path(run: str | Path) -> Path:
    path = Path(run) / TOKENIZER
    if not path.is_file():
        raise TextbookError(f"{run} has no {TOKENIZER}: the run is incomplete, retrain or copy its tokenizer there")
    return path


def load_lexicon(run: str | Path, cfg: MuConfig):
    """The run's spelling lexicon, or None when its model reads queries uncorrected."""
    from textbook.mu.lexicon import Lexicon

    return Lexicon.load(Path(run) / LEXICON) if cfg.spell_correct else None
