"""Word vectors from a local sentence-transformer, one word at a time (model2vec's recipe: Tulkens & van
Dongen, 2024): each word embedded on its own, the vectors centred and reduced by PCA. Shared by the
filter's static features (textbook/filter/vectors.py) and the start of Mu's embedding
(textbook/mu/embeddings.py). Nothing is downloaded; sentence-transformers is imported only here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from textbook.errors import TextbookError


def encode_words(model_dir: str | Path, words: list[str], dims: int, *, normalize: bool = False) -> np.ndarray:
    """(len(words), min(dims, the model's width)) float64: centred, and PCA-reduced when the model is wider."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise TextbookError("word vectors from a sentence-transformer need sentence-transformers: "
                            "pip install 'textbook[embeddings]'") from None
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    vectors = model.encode(words, batch_size=512, normalize_embeddings=normalize, show_progress_bar=False)
    vectors = np.asarray(vectors, dtype=np.float64)
    vectors -= vectors.mean(axis=0)
    if vectors.shape[1] > dims:
        _, _, vt = np.linalg.svd(vectors, full_matrices=False)
        vectors = vectors @ vt[:dims].T
    return vectors
