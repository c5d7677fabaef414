"""Retrieval (textbook/mu/neighbours.py): the vote, the word index (words.py), the index file, per-head decoding and
the prior on the action and the value, and for a negated request from the requests that negate as often (calls.py
CallTries, Steer)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.mu_fixtures import SETTINGS, one_torch_thread, tokenizer_for  # noqa: E402,F401 (one_torch_thread: autouse)
from textbook.errors import TextbookError  # noqa: E402
from textbook.mu.calls import CallTries, Steer, action_of, head_of  # noqa: E402
from textbook.mu.config import preset  # noqa: E402
from textbook.mu.model import Mu  # noqa: E402
from textbook.mu.neighbours import (FLOOR, FORMAT, INDEX_FILE, LEXICAL, TEMPERATURE, Choice, Neighbours,  # noqa: E402
                                    load_neighbours, negations_in)
from textbook.mu.words import Words  # noqa: E402

HEADS = ('{"action":"on","id":"a"}', '{"action":"on","id":"b"}')


def _unit(vectors) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _at(similarity: float) -> list[float]:
    """A unit vector whose cosine with (1, 0, 0) is `similarity`."""
    return [similarity, float(np.sqrt(1 - similarity**2)), 0.0]


def _index(vectors, head_ids, texts=None, sha="w") -> Neighbours:
    """An index of `vectors` whose heads (and calls) are HEADS[head_ids]; without `texts`, requests that share no word."""
    head_ids = np.asarray(head_ids, dtype=np.int32)
    texts = texts or [f"w{i}x" for i in range(len(head_ids))]
    negations = np.array([negations_in(t) for t in texts], dtype=np.int8)
    return Neighbours(_unit(vectors), head_ids, HEADS, head_ids.copy(), HEADS, negations, Words.fit(texts), sha)


def test_a_head_is_the_setting_and_the_kind_of_action():
    assert head_of('{"action":"set","id":"display.brightness","value":70}') == "set display.brightness"
    assert head_of('{"action":"on","id":"bluetooth.enabled"}') == head_of('{"action":"off","id":"bluetooth.enabled"}') \
        == "on/off bluetooth.enabled"  # the decoder, which reads "don't", chooses between them
    assert head_of('{"action":"increase","id":"sound.volume","value":10}') == "increase/decrease sound.volume"
    assert head_of('{"action":"open","id":"page.display"}') == "open page.display"
    assert head_of('{"action":"none"}') == "none"
    assert action_of('{"action":"off","id":"bluetooth.enabled"}') == "off bluetooth.enabled"
    assert action_of('{"action":"set","id":"display.brightness","value":70}') == "set display.brightness"
    assert action_of('{"action":"none"}') == "none"


def test_the_nearest_weigh_most_and_many_close_ones_outvote_one():
    query, words = np.array([[1.0, 0.0, 0.0]]), ["q"]
    assert (TEMPERATURE, LEXICAL) == (0.02, 0.2)  # the numbers below assume them; these requests share no word
    # one neighbour of head a at 0.95 against four of head b at 0.90: each b weighs e^-(0.8 * 0.05 / 0.02) of a, a wins
    assert [c.head for c in _index([_at(0.95)] + [_at(0.90)] * 4, [0, 1, 1, 1, 1]).vote(query, words)] == [HEADS[0]]
    # four of head b at 0.94: each weighs e^-0.4, together 2.7 times a: b wins
    assert [c.head for c in _index([_at(0.95)] + [_at(0.94)] * 4, [0, 1, 1, 1, 1]).vote(query, words)] == [HEADS[1]]
    # a sixth, nearer neighbour counts; a far one beyond the K nearest does not
    far = _index([_at(0.99)] + [_at(0.5)] * 5 + [_at(-1.0)] * 20, [0] + [1] * 25)
    assert [c.head for c in far.vote(np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]]), ["q", "q"])] == [HEADS[0], HEADS[1]]


def test_shared_words_can_outweigh_a_slightly_nearer_vector():
    texts = ["turn the volume up", "louder volume please", "mono audio please", "turn on mono audio", "sound settings"]
    index = _index([_at(0.95), _at(0.95), _at(0.93), _at(0.93), _at(0.0)], [0, 0, 1, 1, 0], texts)
    query = np.array([[1.0, 0.0, 0.0]])
    assert index.vote(query, ["mono audio"])[0].head == HEADS[1]  # two requests say "mono audio"
    assert index.vote(query, ["something else entirely"])[0].head == HEADS[0]  # no shared word: the vectors decide


def test_word_similarities_are_scikit_learns_tfidf_cosines():
    from sklearn.feature_extraction.text import TfidfVectorizer

    corpus = ["Turn on Bluetooth", "turn bluetooth off please", "my screen is too dark", "the screen is too bright",
              "make the screen brighter", "bluetooth won't turn on", "dark mode on", "the the the screen"]
    queries = ["screen too dark", "turn on bluetooth now", "nothing in common", "THE SCREEN"]
    reference = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2).fit(corpus)
    expected = (reference.transform(queries) @ reference.transform(corpus).T).toarray()
    words = Words.fit(corpus)
    assert words.vocabulary == sorted(reference.vocabulary_)
    assert np.allclose(words.similarities(queries), expected, atol=1e-3)  # weights stored as float16
    back = Words.from_arrays(words.arrays())
    assert np.allclose(back.similarities(queries), expected, atol=1e-3) and back.vocabulary == words.vocabulary


def test_the_winning_heads_voters_share_out_its_calls():
    # on/off X: three "off" voters and one "on" voter, all equally near; one voter of another head
    heads = ("on/off x", "on/off y")
    off_x, on_x, on_y = '{"action":"off","id":"x"}', '{"action":"on","id":"x"}', '{"action":"on","id":"y"}'
    index = Neighbours(_unit([_at(0.9)] * 5), np.array([0, 0, 0, 0, 1], np.int32), heads,
                       np.array([0, 0, 0, 1, 2], np.int32), (off_x, on_x, on_y), np.zeros(5, np.int8), Words.fit(["a"] * 5), "w")
    (choice,) = index.vote(np.array([[1.0, 0.0, 0.0]]), ["q"])
    assert choice == Choice("on/off x", {off_x: pytest.approx(0.75), on_x: pytest.approx(0.25)}, ())
    # the numbers a request writes travel with the choice ("72%", "1.5x", "125dpi" as typed)
    assert index.vote(np.array([[1.0, 0.0, 0.0]]), ["x to 72% and 1.5x, 125dpi"])[0].numbers == ("72", "1.5", "125")
    # a negated request's neighbours that do not negate choose the setting, not the direction: "don't", "not", "no"
    # leave it to the decoder when no request of the head negates as often
    for text in ["i don't want x to not be on", "i dont want x", "x shouldn't be off", "no x", "never x", "x can’t"]:
        assert index.vote(np.array([[1.0, 0.0, 0.0]]), [text]) == [Choice("on/off x", {})], text
    for text in ["x now", "notifications on", "knot x", "nothing on x", "snow mode"]:  # words that merely contain one
        assert index.vote(np.array([[1.0, 0.0, 0.0]]), [text])[0].shares, text


def test_a_negated_request_takes_its_direction_from_requests_that_negate_as_often():
    """"i don't want x to not be on" is nearest to "i don't want x on" (OFF), but the requests of its head negated
    twice, however far down the list, say ON; those negated once say OFF for a request negated once."""
    texts = ["i don't want x on", "don't turn x on", "x on", "turn on x", "i don't want x to not be on",
             "don't let x not work", "y off", "y on"]
    calls = ('{"action":"off","id":"x"}', '{"action":"on","id":"x"}', '{"action":"on","id":"y"}')
    heads = ("on/off x", "on/off y")
    index = Neighbours(_unit([_at(0.99), _at(0.98), _at(0.97), _at(0.96), _at(0.5), _at(0.4), _at(0.2), _at(0.1)]),
                       np.array([0, 0, 0, 0, 0, 0, 1, 1], np.int32), heads, np.array([0, 0, 1, 1, 1, 1, 2, 2], np.int32),
                       calls, np.array([negations_in(t) for t in texts], np.int8), Words.fit(["a"] * 8), "w")
    query = np.array([[1.0, 0.0, 0.0]])
    twice, once = index.vote(query, ["i don't want x to not work"])[0], index.vote(query, ["i don't want x"])[0]
    assert twice.head == once.head == "on/off x" and twice.numbers == once.numbers == ()
    assert twice.shares == {calls[1]: pytest.approx(1.0)}  # the two requests negated twice, both ON
    assert once.shares == {calls[0]: pytest.approx(1.0)}  # the two negated once: OFF
    assert index.vote(query, ["x on"])[0].shares[calls[0]] > 0.5  # not negated: the 5 nearest, as before
    assert index.vote(query, ["never not no x"])[0] == Choice("on/off x", {})  # three negations: no request of the head


def test_the_index_file_round_trips_and_refuses_other_weights_and_damage(tmp_path):
    texts = [f"request {i % 7} of {i % 3}" for i in range(50)]
    index = _index(np.random.default_rng(0).normal(size=(50, 8)), np.arange(50) % 2, texts, sha="abc")
    index.save(tmp_path / INDEX_FILE)
    back = load_neighbours(tmp_path, "abc")
    assert len(back) == 50 and back.heads == HEADS and back.calls == HEADS and back.weights_sha256 == "abc"
    assert np.allclose(back.vectors, index.vectors, atol=1e-3)  # stored as float16
    before, after = index.vote(index.vectors[:10], texts[:10]), back.vote(index.vectors[:10], texts[:10])
    assert [c.head for c in after] == [c.head for c in before]
    assert [c.shares for c in after] == [pytest.approx(c.shares) for c in before]
    assert not list(tmp_path.glob(".*tmp"))  # the temp file was renamed into place
    with pytest.raises(TextbookError, match="built for other weights"):
        load_neighbours(tmp_path, "def")
    assert load_neighbours(tmp_path / "nowhere") is None
    good = dict(np.load(tmp_path / INDEX_FILE, allow_pickle=False))
    assert str(good["format"]) == FORMAT == "textbook-neighbours/4"

    def damaged(**change):
        with (tmp_path / INDEX_FILE).open("wb") as fh:
            np.savez(fh, **{k: v for k, v in {**good, **change}.items() if v is not None})
        return load_neighbours(tmp_path)

    (tmp_path / INDEX_FILE).write_bytes((tmp_path / INDEX_FILE).read_bytes()[:300])  # cut short
    with pytest.raises(TextbookError, match="damaged.*delete it"):
        load_neighbours(tmp_path)
    with pytest.raises(TextbookError, match="another version of textbook"):
        damaged(format=None)  # an index without the format's name: heads of another version
    with pytest.raises(TextbookError, match="another version of textbook"):
        damaged(format=np.array("textbook-neighbours/1"))  # session 16's, without actions or words
    with pytest.raises(TextbookError, match="another version of textbook"):
        damaged(format=np.array("textbook-neighbours/2"))  # sessions 17-20's, without the values
    with pytest.raises(TextbookError, match="another version of textbook"):
        damaged(format=np.array("textbook-neighbours/3"))  # session 21's, without the negation counts
    with pytest.raises(TextbookError, match="damaged"):  # an object array would need unpickling: refused, never loaded
        damaged(vectors=np.array([{"x": 1}], dtype=object))
    with pytest.raises(TextbookError, match="damaged"):
        damaged(call_ids=None)
    with pytest.raises(TextbookError, match="arrays disagree"):
        damaged(head_ids=np.array([0, 7] * 25, np.int32))  # a head id out of range
    with pytest.raises(TextbookError, match="arrays disagree"):
        damaged(call_ids=np.array([0, 1, 2] * 16 + [0, 9], np.int32))
    with pytest.raises(TextbookError, match="arrays disagree"):
        damaged(negations=np.zeros(3, np.int8))
    with pytest.raises(TextbookError, match="word index disagrees"):
        damaged(words_docs=good["words_docs"] + 50)  # postings past the last request
    with pytest.raises(TextbookError, match="damaged"):
        damaged(words_size=np.array(60))  # words for more requests than the index has


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


def test_the_neighbours_shares_steer_the_action_and_the_score_stays_the_models(tmp_path):
    tok = tokenizer_for(tmp_path)
    calls = [t for _, t, *_ in SETTINGS]
    on, off = '{"action":"on","id":"bluetooth.enabled"}', '{"action":"off","id":"bluetooth.enabled"}'
    assert {on, off} <= set(calls)
    tries = CallTries(calls, tok, eos=2)
    head = head_of(on)
    assert not isinstance(tries.steer("none", {}, FLOOR), Steer)  # one action: nothing to weigh
    assert tries.steer("set display.brightness", {}, FLOOR) == tries.allowed_for("set display.brightness")
    torch.manual_seed(0)
    model = Mu(preset("mu-tiny").replace(vocab_size=300)).eval()
    src = torch.tensor([tok.encode(q, add_special_tokens=False).ids + [2] for q in ["bluetooth"] * 3])
    steers = [tries.steer(head, {on: 1.0}, FLOOR), tries.steer(head, {off: 1.0}, FLOOR),
              tries.steer(head, {on: 0.5, off: 0.5}, FLOOR)]
    assert all(isinstance(s, Steer) for s in steers)
    with torch.no_grad():
        rows, logprobs = model.generate_scored(src, None, allowed=steers, scored_by=tries.full.allowed)
        free, _ = model.generate_scored(src[:1], None, allowed=tries.allowed_for(head), scored_by=tries.full.allowed)
        negated, _ = model.generate_scored(src[:1], None, allowed=[tries.steer(head, {}, FLOOR)], scored_by=tries.full.allowed)
    texts = [tok.decode(r) for r in rows]
    assert negated == free  # a negated request's vote has no shares: the decoder alone chooses on or off
    # an untrained model is never 2.4 nats (FLOOR 0.1) sure of on or off: unanimous neighbours decide; split evenly, the model
    assert texts[:2] == [on, off] and texts[2] == tok.decode(free[0])
    # the prior is on the choice only: tokens where the actions do not part get none
    prefix = rows[0][: [a == b for a, b in zip(rows[0], rows[1])].index(False)]
    assert steers[0].bias(prefix, steers[0](prefix)) is not None and steers[0].bias(rows[0][:1], steers[0](rows[0][:1])) is None
    for row, logprob in zip(rows, logprobs):  # the score is the model's, over every valid call, without the prior
        full = row + [2]
        with torch.no_grad():
            logits = model(src[:1], None, torch.tensor([[1] + full[:-1]]))[0]
        expected = sum(float(torch.log_softmax(logits[t][torch.tensor(tries.full.allowed(full[:t]))], -1)[
            tries.full.allowed(full[:t]).index(token)]) for t, token in enumerate(full))
        assert logprob == pytest.approx(expected, abs=1e-4)


def test_the_neighbours_choose_the_value_and_a_number_the_request_writes_wins(tmp_path):
    tok = tokenizer_for(tmp_path)
    values = [10, 30, 70, 72, 100]
    calls = [t for _, t, *_ in SETTINGS] + [f'{{"action":"set","id":"display.brightness","value":{v}}}' for v in values if v != 70]
    calls += ['{"action":"set","id":"personalization.colors.mode","value":"light"}']
    tries = CallTries(calls, tok, eos=2)
    brightness, mode = "set display.brightness", "set personalization.colors.mode"
    call = '{{"action":"set","id":"display.brightness","value":{}}}'.format
    dark, light = '{"action":"set","id":"personalization.colors.mode","value":"dark"}', \
        '{"action":"set","id":"personalization.colors.mode","value":"light"}'
    torch.manual_seed(0)
    model = Mu(preset("mu-tiny").replace(vocab_size=300)).eval()
    src = torch.tensor([tok.encode(q, add_special_tokens=False).ids + [2] for q in ["brightness"] * 6])
    steers = [tries.steer(brightness, {call(30): 0.8, call(100): 0.2}, FLOOR),  # the voters' value
              tries.steer(brightness, {call(100): 1.0}, FLOOR),
              tries.steer(brightness, {call(30): 1.0}, FLOOR, ("72",)),  # "brightness to 72": the number written wins
              tries.steer(brightness, {call(30): 1.0}, FLOOR, ("5", "2024")),  # numbers that are no value: the voters'
              tries.steer(mode, {light: 1.0}, FLOOR), tries.steer(mode, {dark: 0.9, light: 0.1}, FLOOR)]
    assert all(isinstance(s, Steer) for s in steers)
    with torch.no_grad():
        rows, _ = model.generate_scored(src, None, allowed=steers, scored_by=tries.full.allowed)
    # an untrained model is never 2.4 nats sure of one value: the prior decides
    assert [tok.decode(r) for r in rows] == [call(30), call(100), call(72), call(30), light, dark]
    # "brightness to 72" with no vote at all (a negated request) is the decoder's alone
    assert tries.steer(brightness, {}, FLOOR, ()) == tries.allowed_for(brightness)
