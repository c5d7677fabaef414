"""The plan: deterministic, stratified over the tree and every constraint axis; topic trees load and validate."""

from __future__ import annotations

import json
from collections import Counter, defaultdict

import pytest

from textbook.errors import TextbookError
from textbook.gen.plan import Axes, build_plan, load_vocabulary, plan_sha
from textbook.gen.topics import bundled_topics, leaves, load_topics, parse_subtopics

AXES = Axes(
    audiences=("children", "high school", "college", "professionals", "researchers", "hobbyists"),
    styles=("chapter", "tutorial", "worked examples", "Q&A", "notes"),
    difficulties=("beginner", "intermediate", "advanced"),
    words_per_prompt=3,
)


@pytest.fixture(scope="module")
def tree():
    return bundled_topics("python")


@pytest.fixture(scope="module")
def vocab():
    return load_vocabulary()


def plan(tree, vocab, n, seed=0, axes=AXES, names=True):
    return build_plan(tree, n=n, seed=seed, axes=axes, vocabulary=vocab, function_names=names)


def spread(values) -> int:
    counts = Counter(values)
    return max(counts.values()) - min(counts.values())


def test_bundled_tree_is_real_and_complete(tree):
    paths = leaves(tree)
    assert len(paths) == 72 and len(set(paths)) == 72
    assert all(p[0] == "Python" and len(p) == 3 for p in paths)


def test_plan_is_deterministic_and_seeded(tree, vocab):
    a, b = plan(tree, vocab, 300, seed=7), plan(tree, vocab, 300, seed=7)
    assert a == b
    other = plan(tree, vocab, 300, seed=8)
    assert [i.topic_path for i in a] != [i.topic_path for i in other]
    assert [i.words for i in a] != [i.words for i in other]


def test_larger_n_extends_the_same_plan(tree, vocab):
    small, large = plan(tree, vocab, 150), plan(tree, vocab, 400)
    assert large[:150] == small
    assert [i.plan_id for i in large] == list(range(400))


@pytest.mark.parametrize("n", [37, 500, 72 * 90])
def test_stratified_over_leaves_branches_and_axes(tree, vocab, n):
    items = plan(tree, vocab, n)
    assert spread(i.topic_path for i in items) <= 1  # every leaf once per cycle
    branches = Counter(i.topic_path[1] for i in items)
    assert len(branches) == 12 and max(branches.values()) - min(branches.values()) <= 1
    # each axis balanced within 2 (independent draws would be off by ~sqrt(n/k): 10+ at n=500)
    for axis in ("audience", "style", "difficulty"):
        assert spread(getattr(i, axis) for i in items) <= 2, axis
    # random words are used evenly, and never repeated inside a prompt
    assert all(len(set(i.words)) == 3 for i in items)
    assert spread(w for i in items for w in i.words) <= 3
    # function names are all distinct
    assert len({i.function_name for i in items}) == n


def test_no_leaf_gets_the_same_constraints_twice(tree, vocab):
    n = 72 * 6 * 5 * 3  # every (leaf, audience, style, difficulty) exactly once
    items = plan(tree, vocab, n, names=False)
    combos = Counter((i.topic_path, i.audience, i.style, i.difficulty) for i in items)
    assert len(combos) == n and max(combos.values()) == 1
    # and a prefix already shows every leaf every audience
    seen = defaultdict(set)
    for i in items[: 72 * 6]:
        seen[i.topic_path].add(i.audience)
    assert all(len(v) == 6 for v in seen.values())


def test_textbook_plans_carry_no_function_names(tree, vocab):
    assert all(i.function_name is None for i in plan(tree, vocab, 20, names=False))


def test_plan_sha_ignores_n_but_not_seed_or_templates(tree, vocab):
    base = plan_sha(tree, seed=0, axes=AXES, vocabulary=vocab, extra=["textbook", "abc"])
    assert base == plan_sha(tree, seed=0, axes=AXES, vocabulary=vocab, extra=["textbook", "abc"])
    assert base != plan_sha(tree, seed=1, axes=AXES, vocabulary=vocab, extra=["textbook", "abc"])
    assert base != plan_sha(tree, seed=0, axes=AXES, vocabulary=vocab, extra=["textbook", "abd"])


def test_empty_axis_is_a_clear_error(tree, vocab):
    with pytest.raises(TextbookError, match="audiences"):
        plan(tree, vocab, 5, axes=Axes((), ("a",), ("b",), 2))


def test_topics_file_validation(tmp_path):
    good = tmp_path / "t.json"
    good.write_text(json.dumps({"topic": "Go", "subtopics": [{"topic": "Channels"}, {"topic": "Generics", "subtopics": []}]}))
    assert leaves(load_topics(good)) == [("Go", "Channels"), ("Go", "Generics")]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"topic": "Go", "subtopics": [{"name": "x"}]}))
    with pytest.raises(TextbookError, match='subtopic 0 of .Go. needs a non-empty "topic"'):
        load_topics(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    with pytest.raises(TextbookError, match="not valid JSON"):
        load_topics(broken)
    with pytest.raises(TextbookError, match="does not exist"):
        load_topics(tmp_path / "missing.json")


def test_parse_subtopics_refuses_echoed_examples_and_other_branches_titles():
    prompt = 'List 8 distinct subtopics of "Loops". Reply with JSON only, in this form: {"subtopics": ["first title", "second title"]}'
    with pytest.raises(ValueError, match="2 echo the prompt's example"):  # SmolLM2-135M's reply, seen on llama.cpp
        parse_subtopics({"subtopics": ["first title", "second title"]}, "Loops", 8, prompt=prompt)
    with pytest.raises(ValueError, match="2 repeat other branches' titles"):
        parse_subtopics({"subtopics": ["For loops", "while loops"]}, "Iteration", 8, taken={"for loops", "while loops"})
    assert parse_subtopics({"subtopics": ["For loops", "Ranges", "Else on loops"]}, "Iteration", 8,
                           prompt=prompt, taken={"for loops"}) == ["Ranges", "Else on loops"]


def test_parse_subtopics_cleans_and_rejects():
    assert parse_subtopics({"subtopics": ["1. Loops", "- Loops", "Python", "  Sets  and   maps "]}, "Python", 8) == ["Loops", "Sets and maps"]
    assert parse_subtopics({"subtopics": [f"t{i}" for i in range(20)]}, "P", 4) == ["t0", "t1", "t2", "t3"]
    with pytest.raises(ValueError):
        parse_subtopics({"subtopics": ["Python"]}, "Python", 8)
    with pytest.raises(ValueError):
        parse_subtopics(["a", "b"], "P", 2)
