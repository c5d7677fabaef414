"""Retrieval for settings models: the training requests nearest a request choose its setting, the decoder writes the call.

Why. After the demonstration's 14.5-minute fine-tune on a 2-core CPU the decoder is still learning, while the
encoder's mean-pooled states (the sentence embedding `--task embed` distils from all-MiniLM-L6-v2) already put
requests for the same call together. Measured in session 16 on one fine-tuned run (README, "Retrieval"): the
nearest of 40,000 training requests named the right call more often than the decoder did, on the own test split
and on real-style requests alike. So a settings answer is made in two steps, as retrieval-augmented classifiers
make theirs (k-nearest-neighbour voting over a fine-tuned encoder; cf. kNN-LM, Khandelwal et al., ICLR 2020):

1. the request is compared with up to `size` training requests by a similarity that is mostly the cosine of the
   encoder's pooled states and a fifth (`LEXICAL`) the cosine of their words (words.py: the exact words a short
   fine-tune blurs); the K nearest vote, each with weight exp(similarity / T), for the *head* of their call (its
   setting and the kind of action: calls.py `head_of`), and the head with the most weight wins;
2. the decoder writes the call constrained to that head's valid calls. Where the head has several calls the
   voters of the winning head also say which one they chose, action and value, and the decoder's log-probability
   of each token where the calls part is added to log(share + FLOOR) (calls.py `Steer`): the decoder reads "not"
   and "don't", which a sentence vector barely registers; the neighbours know that "too small" means bigger and
   that "weekly" is every_week. A number the request writes that is one of the head's values ("brightness to 72")
   takes the voters' share of its action from their values (`NUMBER`). A request with negation words (`NEGATION`:
   "don't", "not", "no", "never", ...) takes that share only from the winning head's requests that negate as often
   as it does: its nearest neighbours are mostly the same words without the negation, or with one where it has
   two, and their action is the wrong one as often as not ("i don't want bluetooth to not be on": "i don't want
   bluetooth on" is the nearest), while the nearest of those negated twice say ON. A head with no valid call falls
   back to every valid call.

The answer's confidence stays the model's probability of the call among all valid calls (`--min-confidence`).
K, T, the heads, LEXICAL and FLOOR were chosen on a development set written for that
(tests/data/settings/dev.jsonl), FLOOR also on the own validation split's negations, never on the real-style
evaluation set.

The index is RUN/neighbours.npz (and a copy in the export): unit vectors (N, D) float16, each one's head, exact
call and number of negation words, the requests' word index (words.py) and the SHA-256 of the weights that made
them; numpy reads it without pickle. This module needs numpy only (the exported runner uses it); `build` imports
torch.
"""

from __future__ import annotations

import os
import random
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from textbook.errors import TextbookError
from textbook.mu.words import Words

INDEX_FILE = "neighbours.npz"
REBUILD = "rebuild it: run the run's `textbook train` command again with --resume"  # a finished run then only indexes
FORMAT = "textbook-neighbours/4"  # /2 added each request's exact action and the word index (session 17), /3 its exact
# call (session 21), /4 its number of negation words (session 22)
K = 5  # neighbours that vote
TEMPERATURE = 0.02  # vote weight exp(similarity / T): a neighbour 0.02 less similar weighs e times less
LEXICAL = 0.2  # the word similarity's part of a neighbour's similarity (words.py), the encoder's the rest
FLOOR = 0.1  # an action no voter chose keeps this prior (calls.py Steer): the decoder overrides a unanimous vote when 2.4 nats surer
BATCH = 512  # requests per encoder pass while indexing
# Words that negate what follows. Until session 20 a negated request took its direction from its nearest neighbours,
# which mostly negate less or not at all; then from the decoder alone (one run's own validation requests: call
# 85.1 -> 87.0%, negations 69 -> 79%, McNemar p = 0.0009); since session 22 from the winning head's requests that
# negate as often (own validation requests 89.8 -> 91.2% and 88.8 -> 90.1% on two runs, negations 78 -> 84%).
NEGATION = re.compile(r"\b(?:not|no|never|cannot|without|(?:do|does|did|is|are|was|were|wo|ca|could|should|would|have|has)(?:n't|n’t|nt))\b")
NUMBER = re.compile(r"\d+(?:\.\d+)?")  # "72", "1.5"; "72%" and "125dpi" too


def negations_in(text: str) -> int:
    """How many negation words `text` has (capped to fit the index's int8): the same count for queries and index."""
    return min(len(NEGATION.findall(text)), 127)


@dataclass(frozen=True, slots=True)
class Choice:
    head: str  # the winning head (calls.py head_of)
    shares: dict[str, float]  # its voters' weight by exact call, summing to 1; {} when none negates as the request does
    numbers: tuple[str, ...] = ()  # the numbers the request writes (calls.py CallTries.steer); () if negated


@dataclass(frozen=True, slots=True)
class Neighbours:
    vectors: np.ndarray  # (N, D) float32, unit rows
    head_ids: np.ndarray  # (N,) int32 into heads
    heads: tuple[str, ...]
    call_ids: np.ndarray  # (N,) int32 into calls
    calls: tuple[str, ...]  # each indexed request's exact call, value included
    negations: np.ndarray  # (N,) int8: each one's number of negation words (NEGATION)
    words: Words  # the same N requests' words
    weights_sha256: str  # of the model.safetensors the vectors were made with

    def __len__(self) -> int:
        return len(self.head_ids)

    def vote(self, queries: np.ndarray, texts: list[str]) -> list[Choice]:
        """Each request's choice from its pooled encoder state (a row of `queries` (B, D), any length) and its text
        as the encoder reads it (tokenizer.py source_text)."""
        q = np.asarray(queries, dtype=np.float32)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        return self.choose(q @ self.vectors.T, texts)

    def choose(self, cosines: np.ndarray, texts: list[str]) -> list[Choice]:
        """Each request's choice from its cosine similarities (B, N) to the indexed requests' vectors and its text.
        (Under PyTorch the caller multiplies with torch: numpy's BLAS threads spin after a product and slowed
        torch's decoding steps from 50 to 120 ms a request on 2 cores.)"""
        sims = (1.0 - LEXICAL) * cosines + LEXICAL * self.words.similarities(texts)
        k = min(K, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]  # (B, k), unordered
        choices = []
        for row, idx, text in zip(sims, top, texts):
            weight = np.exp((row[idx] - row[idx].max()) / TEMPERATURE)
            by_head: dict[int, float] = {}
            for j, w in zip(idx, weight):
                by_head[int(self.head_ids[j])] = by_head.get(int(self.head_ids[j]), 0.0) + float(w)
            winner = max(by_head, key=by_head.get)
            negations = negations_in(text)
            if negations:  # the direction from the head's requests that negate as often, wherever they rank
                voters = np.flatnonzero((self.head_ids == winner) & (self.negations == negations))
                voters = voters[np.argpartition(-row[voters], min(K, len(voters)) - 1)[:K]] if len(voters) else voters
            else:
                voters = idx[self.head_ids[idx] == winner]
            weight = np.exp((row[voters] - row[voters].max()) / TEMPERATURE) if len(voters) else row[:0]
            weight = weight / weight.sum() if len(voters) else weight
            shares: dict[str, float] = {}
            for j, w in zip(voters, weight):
                call = self.calls[self.call_ids[j]]
                shares[call] = shares.get(call, 0.0) + float(w)
            choices.append(Choice(self.heads[winner], shares, () if negations else tuple(NUMBER.findall(text))))
        return choices

    def save(self, path: Path) -> None:
        """Atomically (temp file + rename): a killed build leaves no half-written index."""
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with tmp.open("wb") as fh:
            np.savez(fh, vectors=self.vectors.astype(np.float16), head_ids=self.head_ids.astype(np.int32),
                     heads=np.array(self.heads, dtype=str), call_ids=self.call_ids.astype(np.int32),
                     calls=np.array(self.calls, dtype=str), negations=self.negations.astype(np.int8),
                     weights_sha256=np.array(self.weights_sha256),
                     format=np.array(FORMAT), **self.words.arrays())
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
                            tuple(str(h) for h in data["heads"]), data["call_ids"].astype(np.int32),
                            tuple(str(c) for c in data["calls"]), data["negations"].astype(np.int8),
                            Words.from_arrays(data), str(data["weights_sha256"]))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # cut short, an array missing, pickled
            raise TextbookError(f"{path} is damaged ({exc}): {remedy}") from None
        n = len(index.head_ids)
        if index.vectors.ndim != 2 or len(index.vectors) != n or len(index.call_ids) != n or index.words.size != n or \
                len(index.negations) != n or (
                n and not (0 <= index.head_ids.min() <= index.head_ids.max() < len(index.heads)
                           and 0 <= index.call_ids.min() <= index.call_ids.max() < len(index.calls))):
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
    from textbook.mu.tokenizer import source_text
    from textbook.progress import progress_bar

    distinct = list(dict(pairs).items())  # one call per query (the last one seen)
    random.Random(seed).shuffle(distinct)
    distinct = distinct[:size]
    if not distinct:
        raise TextbookError("no training requests to index: the shards have no train rows")
    cfg = model.cfg
    texts = [source_text(q, cfg.lowercase_source, lexicon) for q, _ in distinct]  # as the encoder reads them
    sources = [ids[: cfg.max_source_len] for ids in encode_queries(tokenizer, texts, cfg)]
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
    calls = sorted({call for _, call in distinct})
    head_number = {h: i for i, h in enumerate(heads)}
    call_number = {c: i for i, c in enumerate(calls)}
    head_ids = np.array([head_number[head_of(call)] for _, call in distinct], dtype=np.int32)
    call_ids = np.array([call_number[call] for _, call in distinct], dtype=np.int32)
    negations = np.array([negations_in(t) for t in texts], dtype=np.int8)
    return Neighbours(vectors, head_ids, tuple(heads), call_ids, tuple(calls), negations, Words.fit(texts), weights_sha256)
