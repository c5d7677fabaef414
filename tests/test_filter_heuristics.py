"""Heuristic filters: each rule drops what it should, with its reason; repetition stats match plain Python."""

from __future__ import annotations

import random
import re
from collections import Counter

import numpy as np
import pytest

from textbook.filter.config import C4, FineWeb, GopherQuality, GopherRepetition, Preset, load_preset
from textbook.filter.heuristics import Heuristics
from textbook.filter.repetition import ngram_repetition
from textbook.minhash import WordTable

GOOD = (
    "The river carries water from the mountains to the sea. Along the way it shapes the land, cutting valleys "
    "and building plains where people have farmed for thousands of years.\n\n"
    "Rivers also move sediment. When the water slows down, sand and mud settle to the bottom, and over many "
    "seasons these layers become new land that is rich and fertile.\n\n"
    "Scientists measure a river by its discharge, the volume of water that passes a point each second. "
    "A large river such as the Amazon carries more water than the next seven largest rivers together.\n\n"
    "Because rivers matter so much to people, cities were often built on their banks, and many of them still "
    "depend on the river for drinking water, transport and power."
)


def reason(text: str, preset: Preset | None = None) -> str | None:
    h = Heuristics(preset or load_preset("default"))
    return h.reasons([text], WordTable([text]))[0]


def only(**stages) -> Preset:
    """A preset with only the given heuristic stages on."""
    off = {"gopher_quality": GopherQuality(enabled=False), "gopher_repetition": GopherRepetition(enabled=False),
           "c4": C4(enabled=False), "fineweb": FineWeb(enabled=False)}
    off.update(stages)
    return Preset(**off)


def test_good_prose_passes_every_rule():
    assert reason(GOOD) is None


@pytest.mark.parametrize("text,expected", [
    ("Too short to be a document at all.", "gopher_short_doc"),
    (" ".join(["a", "b", "c", "d"] * 30) + " the and of the.", "gopher_below_avg_threshold"),
    (" ".join(["incomprehensibilities"] * 60) + " the of.", "gopher_above_avg_threshold"),
    (GOOD + "\n" + " ".join(["#tag"] * 40), "gopher_too_many_hashes"),
    (GOOD.replace(".", "...") + " ..." * 30, "gopher_too_many_ellipsis"),
    ("\n".join(f"- item number {i} of the list with words" for i in range(60)), "gopher_too_many_bullets"),
    ("\n".join(f"this line of the long story about the river and the sea trails off {i}..." for i in range(30)), "gopher_too_many_end_ellipsis"),
    (" ".join(f"{1000 + i} = {100000 + i * 7};" for i in range(80)) + " the and", "gopher_below_alpha_threshold"),
    (" ".join(f"Kapitel {i} erzählt vom Fluss und seinen Ufern." for i in range(12)), "gopher_few_stop_words"),
])
def test_gopher_quality_rules(text, expected):
    assert reason(text, only(gopher_quality=GopherQuality())) == expected


def test_gopher_repetition_rules():
    g = only(gopher_repetition=GopherRepetition())
    para = "The same paragraph again, with the same words in the same order here."
    assert reason("\n\n".join([para] * 5 + [GOOD]), g) in ("gopher_dup_para_frac", "gopher_dup_para_char_frac")
    lines = "\n".join(["Buy now and save big today!"] * 8 + GOOD.split("\n\n"))
    assert reason(lines, g) == "gopher_dup_line_frac"
    assert reason(GOOD + " " + "in the " * 200, g) == "gopher_top_2_gram"
    assert reason(GOOD + "\n" + GOOD.replace("\n\n", " "), g).startswith("gopher_")


def test_c4_rules():
    c4 = only(c4=C4(curly_bracket=True))
    assert reason(GOOD + "\nLorem ipsum dolor sit amet.", c4) == "c4_lorem_ipsum"
    assert reason(GOOD + "\nint main() { return 0; }", c4) == "c4_curly_bracket"
    assert reason(GOOD + "\nint main() { return 0; }", only(c4=C4())) is None  # off by default: code is welcome
    assert reason("One sentence here. Two sentences here.\nShort line\nok", c4) == "c4_too_few_sentences"
    # lines about cookies and javascript do not count towards the five sentences
    policy = "\n".join(["This site uses cookies. Please accept. Thanks a lot."] * 3 + ["Enable JavaScript to view. Now. Please."] * 3)
    assert reason(policy, c4) == "c4_too_few_sentences"
    assert reason(GOOD, c4) is None


def test_fineweb_rules():
    fw = only(fineweb=FineWeb())
    assert reason("\n".join(f"Menu item {i}" for i in range(40)), fw) == "fineweb_line_punct_ratio"
    short = "\n".join(["Home.", "News.", "About us.", "Contact."] * 5 + [GOOD.replace("\n\n", " ")])
    assert reason(short, fw) == "fineweb_short_line_ratio"
    dup = GOOD + "\nA repeated closing line of some length here.\nA repeated closing line of some length here."
    assert reason(dup, fw) == "fineweb_char_dup_ratio"
    listy = "\n".join(f"Item {i}." for i in range(120))
    assert reason(listy, only(fineweb=FineWeb(short_line_thr=1.0))) == "fineweb_list_ratio"
    assert reason(GOOD, fw) is None


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def _top_reference(words: list[str], n: int) -> int:
    """datatrove's find_top_duplicate on " ".join n-grams."""
    grams = [" ".join(words[i : i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0
    gram, count = Counter(grams).most_common(1)[0]
    return len(gram) * count


def _dup_reference(words: list[str], n: int) -> int:
    """Characters (no spaces) of words covered by an n-gram seen earlier in the document."""
    seen, covered = set(), [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i : i + n])
        if gram in seen:
            for k in range(i, i + n):
                covered[k] = True
        seen.add(gram)
    return sum(len(w) for w, c in zip(words, covered) if c)


def test_vectorised_repetition_matches_plain_python():
    rng = random.Random(0)
    vocab = "the of and river sea stone light water land people city bank power year".split()
    texts = []
    for _ in range(40):
        base = [rng.choice(vocab) for _ in range(rng.randint(0, 120))]
        if base and rng.random() < 0.5:  # plant repeated passages
            k = rng.randint(1, len(base))
            base = base + base[:k] + base
        texts.append(" ".join(base))
    texts += ["", "one", "a b c d e f g h i j k"]
    words = WordTable(texts)
    stats = ngram_repetition(words, (2, 3, 4), (5, 6, 7, 8, 9, 10))
    for i, text in enumerate(texts):
        w = _words(text)
        for n in (2, 3, 4):
            assert stats[n][i] == _top_reference(w, n), (i, n)
        for n in range(5, 11):
            assert stats[n][i] == _dup_reference(w, n), (i, n)


def test_reasons_come_per_document_in_a_batch():
    texts = [GOOD, "tiny", GOOD + "\nLorem ipsum dolor sit amet.", ""]
    h = Heuristics(load_preset("default"))
    assert h.reasons(texts, WordTable(texts)) == [None, "gopher_short_doc", "c4_lorem_ipsum", "gopher_short_doc"]
    assert np.all(np.array(h.reasons(texts[:1] * 3, WordTable(texts[:1] * 3)), dtype=object) == None)  # noqa: E711
