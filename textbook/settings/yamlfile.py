"""YAML as the settings data files need it: YAML 1.2 booleans and line numbers for error messages."""

from __future__ import annotations

import re

import yaml


class Map(dict):
    """A mapping that remembers where it and each of its keys were written."""

    line = 0
    key_lines: dict[str, int] = {}
    duplicates: list[tuple[str, int]] = []


class Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """A safe loader (plain data only) building Map objects."""


def _construct_map(loader: Loader, node: yaml.MappingNode):
    data = Map()
    data.line = node.start_mark.line + 1
    yield data
    data.update(loader.construct_mapping(node))
    data.key_lines, data.duplicates = {}, []
    for key_node, _ in node.value:
        key = getattr(key_node, "value", None)
        if key in data.key_lines:  # PyYAML keeps the last silently; an author wants to know
            data.duplicates.append((key, key_node.start_mark.line + 1))
        data.key_lines[key] = key_node.start_mark.line + 1


Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
# YAML 1.2 booleans: only true/false. YAML 1.1 reads on/off/yes/no as booleans, and those are exactly the
# words settings files are full of (`on:` as an action, `off` as an option value).
Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"))
    )


def load_yaml(text: str):
    return yaml.load(text, Loader=Loader)  # noqa: S506 - a safe loader subclass
