"""Retrieval for settings models: the training requests nearest a request choose its setting, the decoder writes the call.

Why. After the demonstration's 14.5-minute fine-tune on a 2-core CPU the decoder is still learning, while the
encoder's mean-pooled states (the sentence embedding `--task embed` distils from all-MiniLM-L6-v2) already put
requests for the same call together. Measured in session 16 on one fine-tuned run (README, "Retrieval"): the
nearest of 40,000 training requests named the right call more often than the decoder did, on the own test split
and on real-style requests alike. So a settings answer is made in two steps, as retrieval-augmented classifiers
make theirs (k-nearest-neighbour voting over a fine-tuned encoder; cf. kNN-LM, Khandelwal et al., ICLR 2020):

1. the request's pooled encoder state is compared by cosine with those of up to `size` training requests; the
   K nearest vote, each with weight exp(similarity / T), for the *head* of their call (its setting and the kind of
   action: calls.py `head_of`), and the head with the most weight wins;
2. the decoder writes the call constrained to that head's valid calls: on or off, more or less, and a value
   ("set brightness to 30") are read from the request by the model, never copied from a neighbour. A head with
   no valid call falls back to every valid call.

The answer's confidence stays the model's probability of the call among all valid calls (`--min-confidence`).
K, T and the heads were chosen on a development set written for that (tests/data/settings/dev.jsonl), never on the
real-style evaluation set.

The index is RUN/neighbours.npz (and a copy in the export): unit vectors (N, D) float16, each one's head, and the
SHA-256 of the weights that made them; numpy reads it without pickle. This module needs numpy only (the exported
runner uses it); `build` imports torch.
"""

from __future__ import annotations

import os
import random
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textbook.errors import TextbookError

INDEX_FILE = "neighbours.npz"
FORMAT = "textbook-neighbours/1"  # heads as calls.py `head_of` writes them: another format would match no call
K = 5  # neighbours that vote
TEMPERATURE = 0.02  # vote weight exp(similarity / T): a neighbour 0.02 less similar weighs e times less
BATCH = 512  # requests per encoder pass while indexing


@dataclass(frozen=True, slots=True)
class Neighbours:
    vectors: np.ndarray  # (N, D) float32, unit rows
    head_ids: np.ndarray  # (N,) int32 into heads
    heads: tuple[str, ...]
    weights_sha256: str  # of the model.safetensors the vectors were made with

    def __len__(self) -> int:
        return len(self.head_ids)

    def vote(self, queries: np.ndarray) -> list[str]:
        """The winning head for each row of `queries` (B, D), pooled encoder states (any length)."""
        q = np.asarray(queries, dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        return self.pick(q @ self.vectors.T)

    def pick(self, sims: np.ndarray) -> list[str]:
        """The winning head for each row of cosine similarities (B, N) to the indexed requests. (Under PyTorch the
        caller multiplies with torch: numpy's BLAS threads spin after a product and slowed torch's decoding steps
        from 50 to 120 ms a request on 2 cores.)"""
        k = min(K, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (B, k), unordered
        winners = []
        for row, idx in zip(sims, top):
            weight: dict[int, float] = {}
            for j in idx:
                head = int(self.head_ids[j])
                weight[head] = weight.get(head, 0.0) + float(np.exp((row[j] - row[idx].max()) / TEMPERATURE))
            winners.append(self.heads[max(weight, key=weight.get)])
        return winners

    def save(self, path: Path) -> None:
        """Atomically (temp file + rename): a killed build leaves no half-written index."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            np.savez(fh, vectors=self.vectors.astype(np.float16), head_ids=self.head_ids.astype(np.int32),
                     heads=np.array(self.heads, dtype=str), weights_sha256=np.array(self.weights_sha256),
                     format=np.array(FORMAT))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, weights_sha256: str | None = None, remedy: str = "") -> "Neighbours":
        """Read an index; with `weights_sha256`, refuse one made with other weights (its vectors would not match).
        `remedy` is what the error tells the user to do first (an export: export again)."""
        remedy = f"{remedy} (or delete it: answers are then decoded without retrieval)" if remedy else \
            "delete it (answers are then decoded without retrieval)"
        try:
            with np.load(path, allow_pickle=False) as data:
                if "format" not in data.files or str(data["format"]) != FORMAT:
                    raise TextbookError(f"{path} is from another version of textbook: {remedy}")
                index = cls(data["vectors"].astype(np.float32), data["head_ids"].astype(np.int32),
                            tuple(str(h) for h in data["heads"]), str(data["weights_sha256"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # cut short, an array missing, pickled
            raise TextbookError(f"{path} is damaged ({exc}): {remedy}") from None
        if index.vectors.ndim != 2 or len(index.head_ids) != len(index.vectors) or (
                len(index.head_ids) and not 0 <= index.head_ids.min() <= index.head_ids.max() < len(index.heads)):
            raise TextbookError(f"{path} is damaged (its arrays disagree): {remedy}")
        if weights_sha256 is not None and index.weights_sha256 != weights_sha256:
            raise TextbookError(f"{path} was built for other weights than this model's: {remedy}")
        return index


def load_neighbours(directory: str | Path, weights_sha256: str | None = None, remedy: str = "") -> Neighbours | None:
    """The index stored with a run or an export, or None when there is none."""
    path = Path(directory) / INDEX_FILE
    return Neighbours.load(path, weights_sha256, remedy) if path.is_file() else None


def build(model, tokenizer, lexicon, pairs: list[tuple[str, str]], *, size: int, seed: int, weights_sha256: str,
          progress: bool = False) -> Neighbours:
    """Index up to `size` distinct (query, call) pairs, drawn with `seed`: each query's pooled encoder state."""
    import torch

    from textbook.mu.calls import head_of
    from textbook.mu.eval import encode_queries, pad_rows
    from textbook.mu.model import attention_kernels
    from textbook.mu.sentence import pooled
    from textbook.progress import progress_bar

    distinct = list(dict(pairs).items())  # the first call seen for each query
    random.Random(seed).shuffle(distinct)
    distinct = distinct[:size]
    if not distinct:
        raise TextbookError("no training requests to index: the shards have no train rows")
    cfg = model.cfg
    sources = [ids[: cfg.max_source_len] for ids in encode_queries(tokenizer, [q for q, _ in distinct], cfg, lexicon)]
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # little padding per batch
    vectors = np.zeros((len(sources), cfg.d_model), dtype=np.float32)
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad(), attention_kernels(device):
        for start in progress_bar(iterable=range(0, len(order), BATCH), show=progress, unit="batch", desc="index"):
            idx = order[start : start + BATCH]
            src, mask = pad_rows([sources[i] for i in idx], cfg.pad_id, device)
            pooled_states = pooled(model.encode(src, mask), mask).float()
            vectors[idx] = torch.nn.functional.normalize(pooled_states, dim=-1).cpu().numpy()
    heads = sorted({head_of(call) for _, call in distinct})
    number = {h: i for i, h in enumerate(heads)}
    head_ids = np.array([number[head_of(call)] for _, call in distinct], dtype=np.int32)
    return Neighbours(vectors, head_ids, tuple(heads), weights_sha256)
