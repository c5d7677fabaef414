"""Scripted teacher replies for `textbook gen` tests and benchmarks (plugged into tests.fakeserver.FakeServer).

`GenReplies` answers the three gen templates the way a real teacher would (topic lists as JSON,
Markdown sections with code, exercises as JSON), deterministically from the prompt, with distinct
texts so the near-duplicate filter keeps them, and with planted failures on request.
"""

from __future__ import annotations

import hashlib
import json
import random
import re

from tests.fakeserver import last_user_message

_VOCAB = (
    "list dict set tuple loop index value key string number float integer slice range append pop sort "
    "reverse filter map reduce iterator generator yield class object method attribute function argument "
    "return scope closure module package import file path line word count total average maximum minimum "
    "queue stack tree node graph edge search order pair table column row record field text byte"
).split()


def _rng(prompt: str) -> random.Random:
    return random.Random(hashlib.sha256(prompt.encode()).digest())


def _prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_VOCAB) for _ in range(words)).capitalize() + "."


class GenReplies:
    """`FakeServer(GenReplies(...))`. Planted faults, chosen by the prompt's hash (stable across runs):
    `fail_every=k`: every k-th exercise has a wrong solution; `dup_every=k`: every k-th textbook reply is
    the same text; `nocode_every=k`: every k-th textbook reply has no code block."""

    def __init__(self, *, fail_every: int = 0, dup_every: int = 0, nocode_every: int = 0):
        self.fail_every, self.dup_every, self.nocode_every = fail_every, dup_every, nocode_every

    def __call__(self, messages: list[dict]) -> str:
        prompt = last_user_message(messages)
        if "table of contents" in prompt:
            return self.topics(prompt)
        if "programming exercise" in prompt:
            return self.exercise(prompt)
        return self.textbook(prompt)

    @staticmethod
    def _every(prompt: str, k: int) -> bool:
        return bool(k) and int(hashlib.sha256(prompt.encode()).hexdigest(), 16) % k == 0

    def topics(self, prompt: str) -> str:
        n = int(re.search(r"List (\d+) distinct subtopics", prompt).group(1))
        parent = re.search(r'subtopics of "([^"]+)"', prompt).group(1)
        return json.dumps({"subtopics": [f"{parent} part {i + 1}" for i in range(n)]})

    def textbook(self, prompt: str) -> str:
        if self._every(prompt, self.dup_every):
            return "## The same section\n\n" + "This exact section is sent for many prompts, word for word. " * 12 + "\n\n```python\nprint(1)\n```\n"
        rng = _rng(prompt)
        topic = re.search(r'about "([^"]+)"', prompt).group(1)
        body = "\n\n".join(_prose(rng, 40) for _ in range(3))
        code = "" if self._every(prompt, self.nocode_every) else f"\n\n```python\nvalues = {[rng.randint(0, 99) for _ in range(5)]}\nprint(sorted(values))\n```\n"
        return f"Sure! Here is a textbook section on {topic}.\n\n## {topic}\n\n{body}{code}\n{_prose(rng, 30)}\n\nHappy coding!"

    def exercise(self, prompt: str) -> str:
        name = re.search(r"named exactly `(\w+)`", prompt).group(1)
        rng = _rng(prompt)
        story = _prose(rng, 25)
        k = rng.randint(2, 9)
        doc = f'"""{story}\n\n    Return the {k} largest values of `values`, largest first.\n    """'
        wrong = self._every(prompt, self.fail_every)
        solution = f"def {name}(values):\n    {doc}\n    return sorted(values, reverse={not wrong})[:{k}]\n"
        tests = (
            f"def test_{name}():\n"
            f"    data = {[rng.randint(0, 999) for _ in range(12)]}\n"
            f"    assert {name}(data) == sorted(data, reverse=True)[:{k}]\n"
            f"    assert {name}([]) == []\n"
            f"    assert len({name}(data)) == {k}\n"
        )
        return json.dumps({"prompt": f"def {name}(values):\n    {doc}\n", "solution": solution, "tests": tests})
