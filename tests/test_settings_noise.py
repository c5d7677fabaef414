"""Noise injection: every operation, deterministic under a seed, never changing a label."""

from __future__ import annotations

import random

import pytest

from textbook.settings.config import SettingsConfig
from textbook.settings.language import A, F, K, N, S, V, load_noise_lexicon
from textbook.settings.noise import OPS, Noiser
from textbook.settings.pipeline import build_context, candidate_chunk

LEX = load_noise_lexicon()
NOISER = Noiser(LEX)
# (text, kinds): a command with a negation-free strict word, a value request, a question with punctuation.
SEEDS = [
    ("please turn on bluetooth now", [F, K, S, A, F]),
    ("set the brightness to 70 percent", [K, F, A, F, N, F]),
    ("how do i change the keyboard layout?", [F, F, F, K, F, A, A]),
    ("switch to dark mode", [K, F, V, V]),
    ("my screen is too dark at night", [F, A, F, S, A, F, A]),
]


def _letters(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _check_op(op: str, before: str, after: str) -> None:
    """What each operation is supposed to do to the text, and nothing else."""
    if op == "keyboard_neighbor":
        assert len(after) == len(before)
        (i,) = [k for k, (a, b) in enumerate(zip(before, after)) if a != b]
        assert after[i].lower() in LEX.keyboard[before[i].lower()]
    elif op == "deletion":
        assert len(after) == len(before) - 1 and any(before[:k] + before[k + 1:] == after for k in range(len(before)))
    elif op in ("insertion", "double_letter"):
        assert len(after) == len(before) + 1 and any(after[:k] + after[k + 1:] == before for k in range(len(after)))
        if op == "double_letter":
            assert any(after[k] == after[k + 1] and after[:k] + after[k + 1:] == before for k in range(len(after) - 1))
    elif op == "transposition":
        diff = [k for k, (a, b) in enumerate(zip(before, after)) if a != b]
        assert len(diff) == 2 and diff[1] == diff[0] + 1 and sorted(before) == sorted(after)
    elif op == "missing_space":
        assert after.count(" ") == before.count(" ") - 1 and after.replace(" ", "") == before.replace(" ", "")
    elif op == "extra_space":
        assert after.count(" ") == before.count(" ") + 1 and after.replace(" ", "") == before.replace(" ", "")
    elif op == "casing":
        assert after != before and after.lower() == before.lower()
    elif op == "drop_punctuation":
        assert not any(c in "?,.!'" for c in after) and _letters(after) == _letters(before)
    elif op == "truncation":
        assert before.startswith(after) and len(after) < len(before)
        assert after.split()[-1] != before.split()[len(after.split()) - 1]  # it ends in a partial word
    elif op == "drop_word":
        words, kept = before.split(), after.split()
        assert len(kept) == len(words) - 1
        (gone,) = [w for k, w in enumerate(words) if words[:k] + words[k + 1:] == kept]
        assert gone in LEX.droppable
    elif op in ("misspelling", "phonetic"):
        table = LEX.misspellings if op == "misspelling" else LEX.phonetic
        words, new = before.split(), after.split()
        changed = [w for w in words if w not in new]
        assert len(changed) == 1 and any(v in after for v in table[changed[0].strip("?")])
    else:
        raise AssertionError(op)


@pytest.mark.parametrize("op", OPS)
def test_each_operation_is_deterministic_and_keeps_the_label(op):
    applied = 0
    for text, kinds in SEEDS:
        tokens = text.split()
        for s in range(40):
            first = NOISER.apply_op(random.Random(s), tokens, kinds, op)
            again = NOISER.apply_op(random.Random(s), tokens, kinds, op)
            assert first == again  # same seed, same noise
            if first is None:
                continue
            applied += 1
            assert first.ops == [op]
            _check_op(op, text, first.text)
            if first.status == "ok":  # strict words and numbers survive untouched
                for tok, kind in zip(tokens, kinds):
                    if kind in (S, N):
                        assert _letters(tok) in [_letters(w) for w in first.text.replace("  ", " ").split()] or \
                            _letters(tok) in _letters(first.text), (op, text, first.text)
    assert applied >= 20, f"{op} applied only {applied} times"


def test_strict_words_are_never_touched_by_any_mix_of_operations():
    tokens, kinds = "i don't want notifications while presenting".split(), [F, S, K, A, F, A]
    rng = random.Random(0)
    for _ in range(500):
        r = NOISER.apply(rng, tokens, kinds)
        if r.status == "ok":
            assert "don't" in r.text.lower() or "dont" in r.text.lower(), r


def test_truncating_the_value_away_is_reported_for_relabelling():
    tokens, kinds = "set brightness to 70".split(), [K, A, F, N]
    r = NOISER.apply_op(random.Random(1), tokens, kinds, "truncation")
    assert r.status == "value_lost" and r.text.startswith("set brig") and "70" not in r.text


def test_a_name_past_recognition_is_flagged():
    tokens, kinds = ["open", "vpn"], [K, A]
    statuses = set()
    for s in range(60):
        r = NOISER.apply_op(random.Random(s), tokens, kinds, "keyboard_neighbor")
        statuses.add((r.text.split()[1] != "vpn", r.status))
    # A typo in a 3-letter name leaves nothing to recognise; a typo in "open" (4 letters) is fine.
    assert (True, "unrecognisable") in statuses and (False, "ok") in statuses
    assert (True, "ok") not in statuses


def test_pipeline_drops_or_relabels_never_mislabels():
    ctx = build_context(SettingsConfig(noise_rate=1.0))
    chunk = candidate_chunk(ctx, 0)
    assert chunk.removed and all(r["reason"] == "noise_unrecognisable" for r in chunk.removed)
    relabelled = [i for i, flag in enumerate(chunk.relabelled) if flag]
    assert relabelled
    for i in relabelled:  # the value was cut away: set -> open, "increase by 20" -> increase
        assert chunk.cols["value"][i] is None and chunk.cols["action"][i] in ("open", "increase", "decrease")
    noised = sum(1 for ops in chunk.cols["noise_ops"] if ops)
    assert noised >= 0.99 * len(chunk)  # rate 1.0: (nearly) every kept sample records its operations
    assert set(op for ops in chunk.cols["noise_ops"] for op in ops) == set(OPS)
    rows = list(zip(chunk.cols["query"], chunk.cols["clean_query"], chunk.cols["noise_ops"]))
    assert all(ops for q, clean, ops in rows if q != clean)
    assert sum(1 for q, clean, ops in rows if ops and q == clean) < 0.01 * len(rows)  # ops that undid each other
