"""Constrained decoding (textbook/mu/calls.py): the catalogue's valid calls as a token prefix tree."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from tests.mu_fixtures import SETTINGS, one_torch_thread, tokenizer_for  # noqa: E402,F401 (one_torch_thread: autouse)
from textbook.contract import TargetError, parse_target, valid_calls, validate_target  # noqa: E402
from textbook.errors import TextbookError  # noqa: E402
from textbook.mu.calls import CallTrie, load_calls, save_calls  # noqa: E402
from textbook.mu.config import preset  # noqa: E402
from textbook.mu.model import Mu  # noqa: E402
from textbook.settings.config import catalogue_for  # noqa: E402


@pytest.fixture(scope="module")
def catalogue():
    return catalogue_for([])


def test_valid_calls_are_every_call_the_catalogue_accepts(catalogue):
    calls = valid_calls(catalogue.settings)
    assert len(calls) == len(set(calls)) > 1000
    assert all(not validate_target(parse_target(c), catalogue) for c in calls)
    assert '{"action":"none"}' in calls and all(t in calls for _, t, *_ in SETTINGS)
    volume = catalogue.get("sound.volume")  # a range: every grid value, and every amount of a relative step
    sets = [c for c in calls if c.startswith('{"action":"set","id":"sound.volume"')]
    assert len(sets) == round((volume.max - volume.min) / volume.step) + 1
    assert '{"action":"increase","id":"sound.volume","value":10}' in calls
    assert '{"action":"set","id":"sound.volume","value":101}' not in calls


def test_the_trie_allows_exactly_the_calls_and_eos_after_each(tmp_path):
    tok = tokenizer_for(tmp_path)
    calls = [t for _, t, *_ in SETTINGS]
    trie = CallTrie.from_calls(calls, tok, eos=2)
    for call in calls:
        ids = tok.encode(call, add_special_tokens=False).ids
        assert all(ids[i] in trie.allowed(ids[:i]) for i in range(len(ids)))
        assert 2 in trie.allowed(ids)
    first = {tok.encode(c, add_special_tokens=False).ids[0] for c in calls}
    assert trie.allowed([]) == sorted(first)
    assert trie.allowed([299, 299]) == [2]  # off the tree: only EOS


def test_an_untrained_model_answers_only_valid_calls_when_constrained(tmp_path, catalogue):
    tok = tokenizer_for(tmp_path)
    torch.manual_seed(0)
    cfg = preset("mu-tiny").replace(vocab_size=tok.get_vocab_size(), max_target_len=48)
    model = Mu(cfg).eval()
    calls = valid_calls(catalogue.settings)
    trie = CallTrie.from_calls(calls, tok, cfg.eos_id)
    queries = [q for q, *_ in SETTINGS]
    src = [tok.encode(q, add_special_tokens=False).ids + [cfg.eos_id] for q in queries]
    width = max(map(len, src))
    ids = torch.tensor([s + [cfg.pad_id] * (width - len(s)) for s in src])
    mask = ids != cfg.pad_id

    def judged(outputs):
        valid = 0
        for out in outputs:
            try:
                valid += not validate_target(parse_target(tok.decode(out)), catalogue)
            except TargetError:
                pass
        return valid

    with torch.no_grad():
        free = model.generate(ids, mask)
        constrained = model.generate(ids, mask, allowed=trie.allowed)
    assert judged(free) == 0  # random weights write no call at all
    assert judged(constrained) == len(queries)  # the same weights, kept on the tree: every answer is a call
    assert all(tok.decode(out) in calls for out in constrained)


def test_calls_file_round_trips_and_a_damaged_one_is_a_clear_error(tmp_path):
    assert load_calls(tmp_path) is None
    save_calls(tmp_path, ['{"action":"none"}'])
    assert load_calls(tmp_path) == ['{"action":"none"}']
    (tmp_path / "calls.json").write_text('{"calls": [1, 2]}')
    with pytest.raises(TextbookError, match="calls.json is damaged"):
        load_calls(tmp_path)
