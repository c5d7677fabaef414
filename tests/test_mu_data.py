"""Mu data: batches, masks, bucketing, seeded shuffling, resumable positions, clear errors for bad data."""

from __future__ import annotations

import pyarrow as pa
import pytest

torch = pytest.importorskip("torch")

from tests.mu_fixtures import SETTINGS, one_torch_thread, tokenizer_for, write_settings, write_text  # noqa: E402,F401 (one_torch_thread: autouse)
from textbook.errors import TextbookError  # noqa: E402
from textbook.mu.config import preset  # noqa: E402
from textbook.mu.data import IGNORE, BatchStream  # noqa: E402
from textbook.mu.tokenizer import load_tokenizer, special_ids, texts_from_shards, train_tokenizer  # noqa: E402
from textbook.shards import ShardWriter  # noqa: E402

CFG = preset("mu-tiny")


@pytest.fixture()
def tok(tmp_path):
    return tokenizer_for(tmp_path)


def _take(stream, n, position=None):
    it = stream.iterate(position)
    return [next(it) for _ in range(n)]


def test_batches_pad_mask_and_shift(tmp_path, tok):
    data = write_settings(tmp_path / "s")
    stream = BatchStream([data], tok, CFG, batch_size=4, seed=1)
    batch, _ = next(stream.iterate())
    lengths = batch.src_mask.sum(1)
    for i in range(4):
        n = int(lengths[i])
        assert batch.src_mask[i, :n].all() and not batch.src_mask[i, n:].any()
        assert (batch.src_ids[i, n:] == CFG.pad_id).all() and batch.src_ids[i, n - 1] == CFG.eos_id
        real = batch.labels[i] != IGNORE
        t = int(real.sum())
        assert real[:t].all()  # right-padded
        assert batch.tgt_in[i, 0] == CFG.bos_id
        assert torch.equal(batch.tgt_in[i, 1:t], batch.labels[i, : t - 1])  # decoder input = labels shifted right
        assert batch.labels[i, t - 1] == CFG.eos_id
    assert batch.tokens == int(lengths.sum()) + int((batch.labels != IGNORE).sum())


def test_length_bucketing_keeps_similar_lengths_together(tmp_path, tok):
    data = write_settings(tmp_path / "s", repeat=8)
    stream = BatchStream([data], tok, CFG, batch_size=8, seed=0, bucket_tokens=2)
    batches = [b for b, _ in _take(stream, 8)]
    spread = [int(b.src_mask.sum(1).max() - b.src_mask.sum(1).min()) for b in batches]
    all_lengths = torch.cat([b.src_mask.sum(1) for b in batches])
    assert sum(spread) / len(spread) < int(all_lengths.max() - all_lengths.min())


def test_buckets_do_not_sort_batches_by_kind_of_call(tmp_path, tok):
    data = write_settings(tmp_path / "s", repeat=16)  # 128 rows, 8 kinds of call, 22 to 52 tokens each

    def kinds(bucket_tokens):
        stream = BatchStream([data], tok, CFG, batch_size=16, seed=0, bucket_tokens=bucket_tokens)
        return [len({tuple(row) for row in b.labels.tolist()}) for b, _ in _take(stream, 8)]

    assert max(kinds(1)) <= 2  # an exact length sort: every batch holds one or two kinds of call
    assert min(kinds(64)) >= 4  # one coarse bucket: batches stay mixed


def test_dedup_gives_each_distinct_pair_once_per_epoch(tmp_path, tok):
    data = write_settings(tmp_path / "s", repeat=3)  # 3 copies of 8 pairs over 2 shards
    query, target, action, style, noise = SETTINGS[0]
    with ShardWriter(tmp_path / "s2", pa.schema([("query", pa.string()), ("target", pa.string()), ("split", pa.string())])) as w:
        w.write({"query": query.upper(), "target": target, "split": "train"})  # the same pair once lowercased
        w.write({"query": query, "target": '{"action":"none"}', "split": "train"})  # same query, another call
    lower = CFG.replace(lowercase_source=True)  # as `textbook train` sets it for settings
    plain = BatchStream([data, tmp_path / "s2"], tok, lower, batch_size=4, seed=0)
    unique = BatchStream([data, tmp_path / "s2"], tok, lower, batch_size=4, seed=0, dedup=True)
    assert (plain.rows, plain.duplicates) == (26, 0) and (unique.rows, unique.duplicates) == (9, 17)
    for epoch in range(2):
        pairs = [tuple(map(tuple, (s, t))) for b, _ in _take(unique, 3 * (epoch + 1))[3 * epoch:]
                 for s, t in zip(b.src_ids.tolist(), b.labels.tolist())]
        assert len(pairs) == 9 and len(set(pairs)) == 9  # 9 rows, 3 batches, every one distinct
    assert unique.steps_per_epoch(1) == 3 and plain.steps_per_epoch(1) == 7
    keep_case = BatchStream([data, tmp_path / "s2"], tok, CFG, batch_size=4, dedup=True)
    assert keep_case.rows == 10  # read as typed, the upper-case query is another pair


def test_shuffle_is_deterministic_by_seed_and_changes_by_epoch(tmp_path, tok):
    data = write_settings(tmp_path / "s", repeat=8)

    def order(seed, n=16):
        return [b.src_ids.tolist() for b, _ in _take(BatchStream([data], tok, CFG, batch_size=4, seed=seed), n)]

    assert order(3) == order(3)
    assert order(3) != order(4)
    two_epochs = order(3, 32)  # 64 rows / 4 = 16 batches per epoch
    assert two_epochs[:16] == order(3) and two_epochs[16:] != two_epochs[:16]  # the next epoch is reshuffled


def test_resuming_at_a_position_continues_the_same_sequence(tmp_path, tok):
    data = write_settings(tmp_path / "s", repeat=6)
    stream = BatchStream([data], tok, CFG, batch_size=4, seed=2, pool_rows=10)  # several pools per epoch
    straight = _take(stream, 30)
    _, position = straight[11]
    resumed = _take(BatchStream([data], tok, CFG, batch_size=4, seed=2, pool_rows=10), 18, position)
    assert [b.src_ids.tolist() for b, _ in resumed] == [b.src_ids.tolist() for b, _ in straight[12:]]
    assert [p for _, p in resumed] == [p for _, p in straight[12:]]


def test_ranks_split_batches_without_overlap(tmp_path, tok):
    data = write_settings(tmp_path / "s", repeat=4)
    ranks = [[b.src_ids.tolist() for b, _ in _take(BatchStream([data], tok, CFG, batch_size=4, seed=0, rank=r, world=2), 4)]
             for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) and not any(b in ranks[1] for b in ranks[0])


def test_splits_are_respected(tmp_path, tok):
    data = write_settings(tmp_path / "s", repeat=2, splits=("train", "test"))
    assert BatchStream([data], tok, CFG, split="test").rows == 2 * len(SETTINGS)
    with pytest.raises(TextbookError, match="no rows in split 'validation'"):
        BatchStream([data], tok, CFG, split="validation")


def test_pretrain_windows_fit_the_model(tmp_path, tok):
    data = write_text(tmp_path / "t")
    cfg = CFG.replace(max_source_len=16, max_target_len=12)
    stream = BatchStream([data], tok, cfg, task="pretrain", batch_size=4, seed=0)
    batches = list(stream.one_pass())
    target_tokens = sum(int((b.labels != IGNORE).sum()) for b in batches)
    source_tokens = sum(int(b.src_mask.sum()) for b in batches)
    doc_tokens = sum(len(tok.encode(t, add_special_tokens=False).ids) + 1 for t in texts_from_shards([data]))
    assert target_tokens + source_tokens == doc_tokens  # every token lands in a source or a target, once
    assert all(b.src_ids.shape[1] <= 16 and b.labels.shape[1] <= 12 for b in batches)


def test_empty_shards_error(tmp_path, tok):
    empty = tmp_path / "empty"
    with ShardWriter(empty, pa.schema([("query", pa.string()), ("target", pa.string())])):
        pass
    with pytest.raises(TextbookError, match="shards are empty"):
        BatchStream([empty], tok, CFG)
    with pytest.raises(TextbookError, match="no manifest.json"):
        BatchStream([tmp_path / "missing"], tok, CFG)


def test_wrong_schema_errors(tmp_path, tok):
    data = write_text(tmp_path / "t")
    with pytest.raises(TextbookError, match="has no column 'query'.*--task settings"):
        BatchStream([data], tok, CFG, task="settings")
    with pytest.raises(TextbookError, match="has no column 'body'"):
        BatchStream([data], tok, CFG, task="pretrain", text_column="body")
    numbers = tmp_path / "n"
    with ShardWriter(numbers, pa.schema([("query", pa.string()), ("target", pa.int64())])) as w:
        w.write({"query": "a", "target": 1})
    with pytest.raises(TextbookError, match="not a string column"):
        BatchStream([numbers], tok, CFG)
    with pytest.raises(TextbookError, match="unknown task"):
        BatchStream([data], tok, CFG, task="chat")


def test_over_long_rows_error_or_are_skipped(tmp_path, tok):
    data = write_settings(tmp_path / "s")
    short = CFG.replace(max_target_len=8)
    with pytest.raises(TextbookError, match=r"rows are longer than the model allows.*--skip-long"):
        next(BatchStream([data], tok, short, batch_size=4).iterate())
    stream = BatchStream([data], tok, short, batch_size=4, skip_long=True)
    batch, _ = next(stream.iterate())
    assert stream.skipped > 0 and batch.labels.shape[1] <= 8


def test_tokenizer_is_byte_level_with_textbook_specials(tmp_path):
    tok = train_tokenizer(["hello world", "dark mode please"] * 10, 300, tmp_path / "t.json")
    assert special_ids(tok) == {"pad_id": 0, "bos_id": 1, "eos_id": 2}
    noisy = "trun on blutooth ☃ ünïcode"
    assert tok.decode(tok.encode(noisy).ids) == noisy  # byte-level: no unknown tokens
    assert load_tokenizer(tmp_path / "t.json").get_vocab_size() == tok.get_vocab_size()
    with pytest.raises(TextbookError, match="no tokenizer"):
        load_tokenizer(tmp_path / "nope.json")
    with pytest.raises(TextbookError, match="too small"):
        train_tokenizer(["x"], 100, tmp_path / "small.json")


def test_tokenizer_texts_leave_out_held_out_splits(tmp_path):
    data = write_settings(tmp_path / "s", repeat=1, splits=("train", "test"))
    assert len(list(texts_from_shards([data], split="train"))) == 2 * len(SETTINGS)
    assert len(list(texts_from_shards([data]))) == 4 * len(SETTINGS)


def test_whitespace_pretokenization_keeps_json_calls_short(tmp_path):
    from textbook.mu.tokenizer import default_pretokenize

    targets = [t for _, t, *_ in SETTINGS] * 20
    words = train_tokenizer(targets, 400, tmp_path / "w.json", pretokenize="words")
    spaces = train_tokenizer(targets, 400, tmp_path / "s.json", pretokenize="whitespace")
    call = '{"action":"set","id":"display.brightness","value":70}'
    assert len(spaces.encode(call).ids) < len(words.encode(call).ids) / 2
    assert all(len(t) <= 16 for t in spaces.encode(call).tokens)
    unseen = '{"action":"set","id":"sound.volume","value":37}'
    assert spaces.decode(spaces.encode(unseen).ids) == unseen
    assert default_pretokenize([write_settings(tmp_path / "s")]) == "whitespace"
    assert default_pretokenize([write_text(tmp_path / "t")]) == "words"
    with pytest.raises(TextbookError, match="unknown pre-tokenization"):
        train_tokenizer(targets, 400, tmp_path / "x.json", pretokenize="chars")


def test_bpe_dropout_varies_query_pieces_but_never_the_text_or_the_targets(tmp_path, tok):
    data = write_settings(tmp_path / "s")
    rows = [(q, t) for q, t, *_ in SETTINGS]
    plain = BatchStream([data], tok, CFG, batch_size=4)._examples(rows, None)
    noisy = BatchStream([data], tok, CFG, batch_size=4, bpe_dropout=0.5)
    draws = [noisy._examples(rows, None) for _ in range(5)]
    assert any(d[i].src != plain[i].src for d in draws for i in range(len(rows)))  # other segmentations
    for d in draws:
        for i, (query, _) in enumerate(rows):
            assert tok.decode(d[i].src[:-1]) == query  # the same text, cut otherwise
            assert d[i].tgt == plain[i].tgt  # the decoder always learns the canonical pieces
    assert [e.src for e in BatchStream([data], tok, CFG, batch_size=4, bpe_dropout=0.0)._examples(rows, None)] == \
        [e.src for e in plain]
    assert tok.model.dropout is None  # the caller's tokenizer is left alone
    with pytest.raises(TextbookError, match="bpe-dropout"):
        BatchStream([data], tok, CFG, batch_size=4, bpe_dropout=1.5)
