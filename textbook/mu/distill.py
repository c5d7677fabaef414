"""Distillation into a Mu student.

Sequence-level KD (Kim & Rush, arXiv 1606.07947) is the main path and needs no code here: have the
teacher generate the targets (`textbook gen settings` with a teacher LLM writes settings shards; any
LLM output written as shards with query/target or text columns works), then train on those shards.
Mu itself was distilled from Phi this way and then by logits.

Logit KD (Hinton et al., arXiv 1503.02531) from a larger Mu checkpoint: the student matches the
teacher's softened next-token distribution at every target position. Both must share a tokenizer,
since the distributions are over the same vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from textbook.errors import TextbookError
from textbook.mu.checkpoint import load_model, tokenizer_path
from textbook.mu.data import IGNORE
from textbook.mu.model import Mu


def _vocabulary(path: Path) -> dict:
    model = json.loads(path.read_text())["model"]
    return {"vocab": model.get("vocab"), "merges": model.get("merges")}


def load_teacher(run: str | Path, student_tokenizer: Path, device: torch.device | str) -> Mu:
    """The frozen teacher of a run; refuses a teacher whose tokenizer differs from the student's."""
    if _vocabulary(tokenizer_path(run)) != _vocabulary(Path(student_tokenizer)):
        raise TextbookError(
            f"the teacher {run} uses another tokenizer than the student: logit distillation needs the same one "
            f"(pass --tokenizer {tokenizer_path(run)}), or distill at sequence level from teacher-written shards"
        )
    teacher, _ = load_model(run, device)
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(teacher || student) on softened distributions, averaged over real target positions, times T^2.

    student/teacher logits (B, T, V) (the teacher's vocabulary may be padded differently: the
    common prefix is compared), labels (B, T) with IGNORE on padding.
    """
    v = min(student_logits.shape[-1], teacher_logits.shape[-1])
    keep = labels != IGNORE  # (B, T)
    s = F.log_softmax(student_logits[..., :v][keep].float() / temperature, dim=-1)  # (N, V)
    t = F.log_softmax(teacher_logits[..., :v][keep].float() / temperature, dim=-1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature**2
