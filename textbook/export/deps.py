"""Optional heavy dependencies of the exporter, imported on first use with an install hint."""

from __future__ import annotations

import importlib
from types import ModuleType

from textbook.errors import TextbookError

HINT = "pip install 'textbook[export]'"


def need(module: str) -> ModuleType:
    """Import `module` (torch, onnx, onnxruntime, ...) or fail with a one-line install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TextbookError(f"textbook export needs {module.split('.')[0]} ({exc}): {HINT}") from None
