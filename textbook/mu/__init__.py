"""The reference Mu trainer (encoder-decoder, Dual LayerNorm, RoPE, GQA, Muon, WSD, LoRA, distillation).

Nothing here imports torch at import time: `require_train_deps()` is called by the CLI commands
before they import the modules that need it.
"""

from __future__ import annotations

from textbook.errors import TextbookError

INSTALL_HINT = "pip install 'textbook[train]'"


def require_train_deps() -> None:
    """Fail with the install hint when torch, tokenizers or safetensors is missing."""
    for name in ("torch", "tokenizers", "safetensors"):
        try:
            __import__(name)
        except ImportError:
            raise TextbookError(f"training needs {name}, which is not installed: {INSTALL_HINT}") from None
