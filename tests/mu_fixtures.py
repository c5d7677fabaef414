"""Tiny inline settings/text shards and a tokenizer for the Mu trainer's tests (no ../shared, no network)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from textbook.shards import ShardWriter

SETTINGS_SCHEMA = pa.schema([
    ("id", pa.string()), ("query", pa.string()), ("target", pa.string()), ("split", pa.string()),
    ("style", pa.string()), ("noise_ops", pa.list_(pa.string())), ("action", pa.string()),
])

# (query, canonical target, action, style, noise ops)
SETTINGS = [
    ("turn on bluetooth", '{"action":"on","id":"bluetooth.enabled"}', "on", "command", []),
    ("switch bluetooth off", '{"action":"off","id":"bluetooth.enabled"}', "off", "command", []),
    ("set brightness to 70", '{"action":"set","id":"display.brightness","value":70}', "set", "command", []),
    ("make the screen brighter", '{"action":"increase","id":"display.brightness"}', "increase", "casual", []),
    ("open display settings", '{"action":"open","id":"page.display"}', "open", "command", []),
    ("whats the wether", '{"action":"none"}', "none", "question", ["typo"]),
    ("turn the volume down", '{"action":"decrease","id":"sound.volume"}', "decrease", "casual", []),
    ("dark mode pls", '{"action":"set","id":"personalization.colors.mode","value":"dark"}', "set", "terse", ["abbrev"]),
]

TEXT = (
    "A list holds items in order. You can add an item with append and remove one with pop. "
    "Lists can be sliced, sorted and reversed, and a loop visits every item in turn. "
)


def write_settings(directory: Path, repeat: int = 4, splits: tuple[str, ...] = ("train",)) -> Path:
    """SETTINGS x repeat rows per split (every split holds the same rows: a memorisation fixture)."""
    with ShardWriter(directory, SETTINGS_SCHEMA, max_rows=20) as writer:
        n = 0
        for split in splits:
            for _ in range(repeat):
                for query, target, action, style, noise in SETTINGS:
                    writer.write({"id": f"r{n}", "query": query, "target": target, "split": split,
                                  "style": style, "noise_ops": noise, "action": action})
                    n += 1
    return directory


def write_text(directory: Path, docs: int = 6) -> Path:
    schema = pa.schema([("id", pa.string()), ("text", pa.string())])
    with ShardWriter(directory, schema) as writer:
        for i in range(docs):
            writer.write({"id": str(i), "text": f"Lesson {i}. " + TEXT * (1 + i % 3)})
    return directory


def tokenizer_for(tmp: Path, vocab_size: int = 300):
    from textbook.mu.tokenizer import train_tokenizer

    texts = [q for q, *_ in SETTINGS] + [t for _, t, *_ in SETTINGS] + [TEXT]
    return train_tokenizer(texts * 4, vocab_size, tmp / "tokenizer.json")


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models run as fast on one thread, and one thread does not collapse when other jobs share the CPU."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
