"""What teacher tokens cost: a per-model table of US dollars per million tokens, overridable by a file.

Prices are OpenAI's published standard (non-batch, uncached-input) rates as of mid-2025
(https://openai.com/api/pricing). They change: put current ones, or your own models' (Azure
deployment names, a self-hosted model at its real cost), in a price file, TOML or JSON:

    [gpt-4o]                          {"my-deployment": {"input": 2.5, "output": 10.0}}
    input = 2.5    # $ per 1M prompt tokens
    output = 10.0  # $ per 1M completion tokens

A model the table does not know costs nothing in the totals and is reported as unpriced.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from textbook.errors import ConfigError

PRICES_AS_OF = "2025-08"  # the table's version: summaries call a cost from it an estimate as of this date
# model -> ($ per 1M input tokens, $ per 1M output tokens)
PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-2024-05-13": (5.00, 15.00),
    "chatgpt-4o-latest": (5.00, 15.00),
    "gpt-4o-mini": (0.15, 0.60),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-pro": (20.00, 80.00),
    "o3-mini": (1.10, 4.40),
    "o1": (15.00, 60.00),
    "o1-pro": (150.00, 600.00),
    "o1-mini": (1.10, 4.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-4": (30.00, 60.00),
    "gpt-3.5-turbo": (0.50, 1.50),
}


def load_price_file(path: str | Path) -> dict[str, tuple[float, float]]:
    path = Path(path)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"price file {path} cannot be read ({exc.strerror}): fix price_file / --price-file") from None
    except ValueError as exc:  # JSONDecodeError and TOMLDecodeError are both ValueErrors
        raise ConfigError(f"price file {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'} ({exc})") from None
    prices: dict[str, tuple[float, float]] = {}
    for model, entry in data.items():
        try:
            prices[model] = (float(entry["input"]), float(entry["output"]))
        except (TypeError, KeyError, ValueError):
            raise ConfigError(
                f"price file {path}: {model!r} needs numeric `input` and `output` ($ per 1M tokens), got {entry!r}"
            ) from None
    return prices


def price_for(model: str, price_file: str | Path | None = None) -> tuple[float, float] | None:
    """($/1M input, $/1M output) for `model`, or None when unknown.

    Dated snapshots take their family's price ("gpt-4o-mini-2024-07-18" -> "gpt-4o-mini": the longest
    known name followed by "-"), and a provider prefix is ignored ("openai/gpt-4o" -> "gpt-4o").
    """
    table = {**PRICES, **(load_price_file(price_file) if price_file else {})}
    for name in (model, model.rsplit("/", 1)[-1]):
        if name in table:
            return table[name]
        family = max((k for k in table if name.startswith(k + "-")), key=len, default=None)
        if family is not None:
            return table[family]
    return None
