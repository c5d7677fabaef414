"""Sentence-embedding distillation into Mu's encoder (`textbook train --task embed`, and `--embed-data` beside
another task).

Why: a 1-nearest-neighbour over all-MiniLM-L6-v2's sentence embeddings of the settings training queries,
with no training at all, answered the indirect real-style requests ("the cursor shoots across the
screen") far better than a Mu trained on them (54% against 35% of full calls). The knowledge those requests
need is in the sentence-transformer; the word vectors a Mu can start from (embeddings.py) carry only its
word-level part. Mu was distilled from Phi after pretraining; on a CPU the cheapest teacher to distil is
the sentence-transformer, and the cheapest signal is its sentence embedding: the encoder's mean-pooled
states learn to point where the teacher's embedding of the same text points (Reimers & Gurevych, EMNLP
2020, "Making monolingual sentence embeddings multilingual using knowledge distillation", with a cosine
in place of their MSE, so the encoder's scale stays free).

The targets come precomputed in an `embedding` column next to the text (examples/distill_corpus.py makes
such shards), so a training step costs one encoder pass and no teacher. They are centred on their mean
(the common direction of every sentence carries no meaning and would take most of a cosine's gradient)
and, when the teacher is wider than the model, reduced to the model's width by PCA; both are fitted on the
first rows of the shards in their listed order, so a resumed run fits the same space. There are no new
weights: mu-small's width is MiniLM's (384), and a checkpoint stays a plain Mu.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where a loss is computed: data.py reads EMBEDDING without it
    import torch

EMBEDDING = "embedding"  # the column of precomputed teacher embeddings (fixed-size list of float32)
FIT_ROWS = 20_000  # rows the centre and the PCA are fitted on


def target_space(sample: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(centre (D,), projection (D, width)) for teacher vectors `sample` (N, D): PCA when D > width, else
    the identity zero-padded to the model's width."""
    centre = sample.mean(axis=0)
    dims = sample.shape[1]
    if dims > width:
        _, _, vt = np.linalg.svd(sample - centre, full_matrices=False)
        projection = vt[:width].T
    else:
        projection = np.eye(dims, width)
    return centre.astype(np.float32), projection.astype(np.float32)


def pooled(memory: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the encoder states over real tokens: memory (B, S, D), src_mask (B, S) -> (B, D)."""
    mask = src_mask.unsqueeze(-1).to(memory.dtype)
    return (memory * mask).sum(1) / mask.sum(1).clamp(min=1)


def sentence_loss(model, src_ids: torch.Tensor, src_mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - cosine between the encoder's pooled states and the teacher's (centred, projected) embeddings (B, D)."""
    import torch.nn.functional as F

    memory = model(src_ids, src_mask, None)  # (B, S, D)
    return 1 - F.cosine_similarity(pooled(memory, src_mask).float(), targets.float(), dim=-1).mean()
