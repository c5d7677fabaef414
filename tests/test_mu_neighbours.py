"""Retrieval (textbook/mu/neighbours.py): the vote, the index file, per-head decoding (calls.py CallTries)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.mu_fixtures import SETTINGS, one_torch_thread, tokenizer_for  # noqa: E402,F401 (one_torch_thread: autouse)
from textbook.errors import TextbookError  # noqa: E402
from textbook.mu.calls import CallTries, head_of  # noqa: E402
from textbook.mu.config import preset  # noqa: E402
from textbook.mu.model import Mu  # noqa: E402
from textbook.mu.neighbours import FORMAT, INDEX_FILE, TEMPERATURE, Neighbours, load_neighbours  # noqa: E402

HEADS = ('{"action":"on","id":"a"}', '{"action":"on","id":"b"}')


def _unit(vectors) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _at(similarity: float) -> list[float]:
    """A unit vector whose cosine with (1, 0, 0) is `similarity`."""
    return [similarity, float(np.sqrt(1 - similarity**2)), 0.0]


def test_a_head_is_the_setting_and_the_kind_of_action():
    assert head_of('{"action":"set","id":"display.brightness","value":70}') == "set display.brightness"
    assert head_of('{"action":"on","id":"bluetooth.enabled"}') == head_of('{"action":"off","id":"bluetooth.enabled"}') \
        == "on/off bluetooth.enabled"  # the decoder, which reads "don't", chooses between them
    assert head_of('{"action":"increase","id":"sound.volume","value":10}') == "increase/decrease sound.volume"
    assert head_of('{"action":"open","id":"page.display"}') == "open page.display"
    assert head_of('{"action":"none"}') == "none"


def test_the_nearest_weigh_most_and_many_close_ones_outvote_one():
    query = np.array([[1.0, 0.0, 0.0]])
    # one neighbour of head a at 0.95 against four of head b at 0.90: each b weighs e^-2.5 of a, a wins
    index = Neighbours(_unit([_at(0.95)] + [_at(0.90)] * 4), np.array([0, 1, 1, 1, 1], dtype=np.int32), HEADS, "w")
    assert index.vote(query) == [HEADS[0]]
    # four of head b at 0.94: each weighs e^-0.5, together 2.4 times a: b wins
    index = Neighbours(_unit([_at(0.95)] + [_at(0.94)] * 4), np.array([0, 1, 1, 1, 1], dtype=np.int32), HEADS, "w")
    assert index.vote(query) == [HEADS[1]]
    assert TEMPERATURE == 0.02  # the numbers above assume it
    # a sixth, nearer neighbour counts; a far one beyond the K nearest does not
    far = Neighbours(_unit([_at(0.99)] + [_at(0.5)] * 5 + [_at(-1.0)] * 20), np.array([0] + [1] * 25, dtype=np.int32), HEADS, "w")
    assert far.vote(np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])) == [HEADS[0], HEADS[1]]


def test_the_index_file_round_trips_and_refuses_other_weights_and_damage(tmp_path):
    index = Neighbours(_unit(np.random.default_rng(0).normal(size=(50, 8))), np.arange(50, dtype=np.int32) % 2, HEADS, "abc")
    index.save(tmp_path / INDEX_FILE)
    back = load_neighbours(tmp_path, "abc")
    assert len(back) == 50 and back.heads == HEADS and back.weights_sha256 == "abc"
    assert np.allclose(back.vectors, index.vectors, atol=1e-3)  # stored as float16
    assert back.vote(index.vectors[:10]) == index.vote(index.vectors[:10])
    assert not list(tmp_path.glob(".*tmp"))  # the temp file was renamed into place
    with pytest.raises(TextbookError, match="built for other weights"):
        load_neighbours(tmp_path, "def")
    assert load_neighbours(tmp_path / "nowhere") is None
    (tmp_path / INDEX_FILE).write_bytes((tmp_path / INDEX_FILE).read_bytes()[:300])  # cut short
    with pytest.raises(TextbookError, match="damaged.*delete it"):
        load_neighbours(tmp_path)
    with (tmp_path / INDEX_FILE).open("wb") as fh:  # an index without the format's name: heads of another version
        np.savez(fh, vectors=np.ones((2, 3), np.float16), head_ids=np.zeros(2, np.int32), heads=np.array(HEADS),
                 weights_sha256=np.array("abc"))
    with pytest.raises(TextbookError, match="another version of textbook"):
        load_neighbours(tmp_path)
    with (tmp_path / INDEX_FILE).open("wb") as fh:  # an object array would need unpickling: refused, never loaded
        np.savez(fh, vectors=np.array([{"x": 1}], dtype=object), head_ids=np.zeros(1, np.int32), heads=np.array(HEADS),
                 weights_sha256=np.array("abc"), format=np.array(FORMAT))
    with pytest.raises(TextbookError, match="damaged"):
        load_neighbours(tmp_path)
    with (tmp_path / INDEX_FILE).open("wb") as fh:  # a head id out of range
        np.savez(fh, vectors=np.ones((2, 3), np.float16), head_ids=np.array([0, 7], np.int32), heads=np.array(HEADS),
                 weights_sha256=np.array("abc"), format=np.array(FORMAT))
    with pytest.raises(TextbookError, match="arrays disagree"):
        load_neighbours(tmp_path)


def test_decoding_keeps_to_the_chosen_head_and_scores_over_every_call(tmp_path):
    tok = tokenizer_for(tmp_path)
    calls = [t for _, t, *_ in SETTINGS] + ['{"action":"set","id":"display.brightness","value":30}']
    tries = CallTries(calls, tok, eos=2)
    assert tries.allowed_for(None) == tries.full.allowed and tries.allowed_for("on/off nope") == tries.full.allowed
    assert sorted(tries.by_head["on/off bluetooth.enabled"]) == sorted(calls[:2])
    torch.manual_seed(0)
    model = Mu(preset("mu-tiny").replace(vocab_size=300)).eval()
    src = torch.tensor([tok.encode(q, add_special_tokens=False).ids + [2] for q in ["set brightness to 70"] * 3])
    heads = [head_of(calls[2]), head_of(calls[0]), head_of(calls[5])]
    with torch.no_grad():
        rows, logprobs = model.generate_scored(src, None, allowed=[tries.allowed_for(h) for h in heads],
                                               scored_by=tries.full.allowed)
        texts = [tok.decode(r) for r in rows]
        assert [head_of(t) for t in texts] == heads  # each row within its own head, whatever the model prefers
        assert texts[0] in calls[2::6] and texts[1] in calls[:2] and texts[2] == calls[5]
        # the score is the model's probability of that call among every valid call (teacher-forced, full trie)
        for row, logprob in zip(rows, logprobs):
            full = row + [2]
            logits = model(src[:1], None, torch.tensor([[1] + full[:-1]]))[0]
            expected = 0.0
            for t, token in enumerate(full):
                keep = torch.tensor(tries.full.allowed(full[:t]))
                expected += float(torch.log_softmax(logits[t][keep], -1)[keep.tolist().index(token)])
            assert logprob == pytest.approx(expected, abs=1e-4)
