"""Pure render(...) and parse(...) of each generator, and boilerplate stripping."""

from __future__ import annotations

import json

import pytest

from textbook.errors import TextbookError
from textbook.gen import exercise, section
from textbook.gen.boilerplate import strip_boilerplate
from textbook.gen.plan import PlanItem
from textbook.gen.request import ParseError
from textbook.prompts import Prompts

ITEM = PlanItem(7, ("Python", "Functions", "Closures"), "college students", "tutorial", "advanced",
                ("lantern", "copper", "owl"), "merge_intervals", 1234)

SECTION = """## Closures

A closure is a function that remembers the variables of the scope it was created in, even after that
scope has finished running. This is what lets a factory function hand out small, configured helpers.

```python
def make_counter():
    count = 0
    def step():
        nonlocal count
        count += 1
        return count
    return step

counter = make_counter()
print(counter(), counter())  # 1 2
```

Each call to `make_counter` creates a fresh `count`, so two counters never share state.
"""


def test_textbook_render_puts_every_constraint_in_the_prompt():
    request = section.render(Prompts(), ITEM)
    (message,) = request.messages
    text = message["content"]
    for part in ("Closures", "Python > Functions > Closures", "college students", "tutorial", "advanced", "lantern, copper, owl"):
        assert part in text
    assert request.template == "textbook" and len(request.template_sha) == 16 and len(request.prompt_sha) == 16
    assert section.render(Prompts(), ITEM) == request  # pure: same item, same request


@pytest.mark.parametrize("generator", [section, exercise])
@pytest.mark.parametrize(("difficulty", "phrase"), [("intermediate", "an intermediate level"), ("advanced", "an advanced level"),
                                                    ("expert", "an expert level"), ("beginner", "a beginner level")])
def test_render_puts_the_right_article_before_the_difficulty(generator, difficulty, phrase):
    item = PlanItem(7, ITEM.topic_path, ITEM.audience, "textbook chapter", difficulty, ITEM.words, ITEM.function_name, 1)
    text = generator.render(Prompts(), item).messages[0]["content"]
    assert phrase in text


def test_prompt_sha_changes_with_the_constraints():
    other = PlanItem(7, ITEM.topic_path, "researchers", ITEM.style, ITEM.difficulty, ITEM.words, None, 1)
    assert section.render(Prompts(), other).prompt_sha != section.render(Prompts(), ITEM).prompt_sha


def test_user_prompts_dir_overrides_a_template(tmp_path):
    (tmp_path / "textbook.j2").write_text("Explain {{ topic }} to {{ audience }}.")
    request = section.render(Prompts(tmp_path), ITEM)
    assert request.messages[0]["content"] == "Explain Closures to college students.\n"
    (tmp_path / "textbook.j2").write_text("Explain {{ subject }}.")
    with pytest.raises(TextbookError, match="subject"):
        section.render(Prompts(tmp_path), ITEM)


def test_textbook_parse_strips_boilerplate_and_fences():
    reply = "Sure! Here is a textbook section on closures.\n\n" + SECTION + "\nHappy coding! I hope this helps."
    assert section.parse(reply) == SECTION
    # a teacher that wraps its whole answer as a ```markdown block, code fences inside and all
    assert section.parse("```markdown\n" + SECTION + "```") == SECTION


@pytest.mark.parametrize(
    "reply, reason",
    [
        ("## Tiny\n\nToo short.\n\n```python\nprint(1)\n```", "parse_too_short"),
        ("## No code\n\n" + "Words about closures without any example at all. " * 10, "parse_no_code"),
        ("## Broken\n\n" + "Prose. " * 60 + "\n\n```python\ndef f(:\n    pass\n```", "parse_code_syntax"),
        # kept by a real small model before these checks: code and print calls, no lesson
        ("## Printing\n\n```python\n" + "print('hello world')\n" * 30 + "```", "parse_no_prose"),
        ("Closures keep the variables of the function that made them. " * 8 + "\n\n```python\nprint(1)\n```", "parse_no_heading"),
    ],
)
def test_textbook_parse_rejects_with_a_reason(reply, reason):
    with pytest.raises(ParseError) as err:
        section.parse(reply)
    assert err.value.reason == reason


def test_textbook_parse_accepts_interactive_sessions():
    reply = SECTION + "\n```python\n>>> 1 + 1\n2\n```\n"
    assert ">>> 1 + 1" in section.parse(reply)


def test_boilerplate_only_touches_openings_and_sign_offs():
    text = "## Loops\n\nWelcome to loops! In this chapter, we will learn loops. A loop repeats a block.\nIt stops when told.\n\nKeep coding!"
    assert strip_boilerplate(text) == "## Loops\n\nA loop repeats a block.\nIt stops when told.\n"
    plain = "A loop repeats.\n\nWelcome is a word that can appear later, and stays.\n"
    assert strip_boilerplate(plain) == plain


EXERCISE = {
    "prompt": 'def merge_intervals(spans):\n    """Merge overlapping (start, end) spans; return them sorted."""\n',
    "solution": (
        "def merge_intervals(spans):\n"
        '    """Merge overlapping (start, end) spans; return them sorted."""\n'
        "    out = []\n"
        "    for start, end in sorted(spans):\n"
        "        if out and start <= out[-1][1]:\n"
        "            out[-1] = (out[-1][0], max(out[-1][1], end))\n"
        "        else:\n"
        "            out.append((start, end))\n"
        "    return out\n"
    ),
    "tests": "def test_merge():\n    assert merge_intervals([(1, 3), (2, 4)]) == [(1, 4)]\n    assert merge_intervals([]) == []\n",
}


def test_exercise_render_names_the_function_and_asks_for_json():
    text = exercise.render(Prompts(), ITEM).messages[0]["content"]
    assert "named exactly `merge_intervals`" in text and "lantern, copper, owl" in text and '"solution"' in text


def test_exercise_parse_accepts_a_good_reply_and_unwraps_fences():
    ex = exercise.parse({**EXERCISE, "solution": "```python\n" + EXERCISE["solution"] + "```"}, "merge_intervals")
    assert ex.solution == EXERCISE["solution"] and ex.prompt == EXERCISE["prompt"]
    program = exercise.program(ex)
    assert program.index("def merge_intervals") < program.index("def test_merge") < program.index("__main__")


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"solution": EXERCISE["solution"].replace("merge_intervals", "merge")}, "parse_wrong_name"),
        ({"prompt": "def merge_intervals(spans):\n    return spans\n"}, "parse_no_docstring"),
        ({"prompt": EXERCISE["solution"]}, "parse_prompt_has_body"),
        ({"tests": "def test_x():\n    assert True\n"}, "parse_tests_unused"),
        ({"tests": "def test_x():\n    merge_intervals([])\n"}, "parse_tests_no_assert"),
        ({"solution": "def merge_intervals(:\n"}, "parse_syntax"),
        ({"tests": ""}, "parse_missing_field"),
    ],
)
def test_exercise_parse_rejects_with_a_reason(change, reason):
    with pytest.raises(ParseError) as err:
        exercise.parse({**EXERCISE, **change}, "merge_intervals")
    assert err.value.reason == reason
    assert isinstance(err.value, ValueError)  # so the teacher re-asks before it becomes a reject


def test_exercise_schema_is_what_the_batch_file_and_teacher_send():
    assert set(exercise.SCHEMA["required"]) == {"prompt", "solution", "tests"}
    json.dumps(exercise.SCHEMA)
