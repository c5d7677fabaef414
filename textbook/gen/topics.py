"""Topic trees: the teacher expands a topic into subtopics; topics.json keeps the tree editable and reusable.

A tree is plain JSON so a user can edit it by hand:
    {"topic": "Python", "subtopics": [{"topic": "Functions", "subtopics": [...]}, ...]}
A node without subtopics is a leaf; the plan draws from leaves (phi-1.5 seeded its data with ~20K topics).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

from textbook.bundled import data_dir
from textbook.errors import TextbookError
from textbook.prompts import Prompts
from textbook.shards import atomic_write_json

log = logging.getLogger(__name__)
_NUMBERING = re.compile(r"^(?:\d+[.)]|[-*\u2022])\s+")

TEMPLATE = "topics"
TITLE_CHARS = 120  # "a short title of 2 to 8 words"


def schema(breadth: int) -> dict[str, Any]:
    """The reply's JSON schema, with the bounds parse_subtopics enforces: a server that constrains its
    output with it (llama.cpp, vLLM) cannot loop inside the array until max_tokens."""
    return {
        "type": "object",
        "properties": {"subtopics": {"type": "array", "minItems": min(2, breadth), "maxItems": breadth,
                                     "items": {"type": "string", "minLength": 1, "maxLength": TITLE_CHARS}}},
        "required": ["subtopics"],
        "additionalProperties": False,
    }


def leaves(tree: dict[str, Any]) -> list[tuple[str, ...]]:
    """Every root-to-leaf path, depth first, in file order."""
    out: list[tuple[str, ...]] = []

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> None:
        path = (*path, node["topic"])
        children = node.get("subtopics") or []
        if not children:
            out.append(path)
        for child in children:
            walk(child, path)

    walk(tree, ())
    return out


def check_tree(tree: Any, source: str) -> dict[str, Any]:
    """Validate a tree read from a file, with a message that points at the bad node."""

    def check(node: Any, where: str) -> None:
        if not isinstance(node, dict) or not isinstance(node.get("topic"), str) or not node["topic"].strip():
            raise TextbookError(f"{source}: {where} needs a non-empty \"topic\" string (see the topics.json format in --help)")
        children = node.get("subtopics", [])
        if not isinstance(children, list):
            raise TextbookError(f"{source}: \"subtopics\" of {node['topic']!r} must be a list")
        for i, child in enumerate(children):
            check(child, f"subtopic {i} of {node['topic']!r}")

    check(tree, "the root")
    return tree


def load_topics(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TextbookError(f"topics file {path} does not exist: pass a topics.json written by textbook gen, or edit a copy of one")
    try:
        tree = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TextbookError(f"topics file {path} is not valid JSON ({exc})") from None
    return check_tree(tree, str(path))


def save_topics(path: Path, tree: dict[str, Any]) -> None:
    atomic_write_json(path, tree)


def bundled_topics(topic: str, prompts_dir: str | Path | None = None) -> dict[str, Any] | None:
    """A hand-written tree shipped with the templates (prompts/topics/<topic>.json), so a dry run needs no teacher."""
    name = topic.strip().lower().replace(" ", "-")
    dirs = ([Path(prompts_dir)] if prompts_dir else []) + [data_dir("prompts")]
    for directory in dirs:
        path = directory / "topics" / f"{name}.json"
        if path.is_file():
            return load_topics(path)
    return None


def parse_subtopics(value: Any, parent: str, breadth: int, *, prompt: str = "", taken: frozenset[str] | set[str] = frozenset()) -> list[str]:
    """Validate the teacher's reply (raises ValueError so the teacher retries): distinct, non-empty titles,
    none of them an example the prompt quotes ("first title": a small model echoes the format back) and
    none a title another branch of the tree already has (`taken`, lowercased)."""
    if not isinstance(value, dict) or not isinstance(value.get("subtopics"), list):
        raise ValueError('expected {"subtopics": [...]}')
    seen: set[str] = {parent.strip().lower()}
    quoted = prompt.lower()
    titles: list[str] = []
    echoed = repeated = 0
    for item in value["subtopics"]:
        if not isinstance(item, str):
            raise ValueError("subtopics must be strings")
        title = _NUMBERING.sub("", " ".join(item.split())).strip()  # tolerate "1. Foo" / "- Foo"
        key = title.lower()
        if not title or key in seen or len(title) > TITLE_CHARS:
            continue
        if f'"{key}"' in quoted:
            echoed += 1
        elif key in taken:
            repeated += 1
        else:
            seen.add(key)
            titles.append(title)
    if len(titles) < min(2, breadth):
        why = f"; {echoed} echo the prompt's example" if echoed else ""
        why += f"; {repeated} repeat other branches' titles" if repeated else ""
        raise ValueError(f"only {len(titles)} distinct subtopic(s) of {parent!r}{why}")
    return titles[:breadth]


async def expand_topics(teacher: Any, prompts: Prompts, topic: str, *, depth: int, breadth: int) -> dict[str, Any]:
    """Ask the teacher for `breadth` subtopics per node, level by level, down to `depth` levels below the root.

    A node whose expansion the teacher finally rejects stays a leaf (logged): the tree is still usable.
    """
    from textbook.teacher.client import TeacherRejected  # the teacher side imports openai: only when used

    template = prompts.get(TEMPLATE)
    root: dict[str, Any] = {"topic": topic, "subtopics": []}
    frontier: list[tuple[dict[str, Any], tuple[str, ...]]] = [(root, (topic,))]

    taken: set[str] = {topic.strip().lower()}  # every title in the tree so far: a branch repeating another's is a bad reply

    async def expand(node: dict[str, Any], path: tuple[str, ...]) -> None:
        prompt = template.render(path=list(path), breadth=breadth)

        def check(value: Any) -> list[str]:
            return parse_subtopics(value, path[-1], breadth, prompt=prompt, taken=taken)

        try:
            reply = await teacher.complete([{"role": "user", "content": prompt}], template_sha=template.sha256,
                                           json_schema=schema(breadth), validate=check, stage="topics")
        except TeacherRejected as exc:
            log.warning("could not expand topic %s (%s): kept as a leaf", " > ".join(path), exc.reason)
            return
        titles = check(reply.parsed)  # no await since the validator ran: `taken` is as it saw it
        taken.update(t.lower() for t in titles)
        node["subtopics"] = [{"topic": t, "subtopics": []} for t in titles]

    for _ in range(depth):
        await asyncio.gather(*(expand(node, path) for node, path in frontier))
        frontier = [(child, (*path, child["topic"])) for node, path in frontier for child in node["subtopics"]]
    if depth and not root["subtopics"]:  # every planned item would be about the bare topic: not a plan
        raise TextbookError(f"the teacher could not split {topic!r} into subtopics (its replies failed the checks "
                            "above): use a stronger --model, or pass --topics FILE (a topics.json you write)")
    return root
