"""Config precedence, written once: CLI flags > config file (textbook.toml) > environment > defaults.

Every stage has a frozen dataclass whose defaults are the recipe. `resolve` builds one from the
layers; `public_dict` is what lands in manifests and checkpoints (fields marked secret never do).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

from textbook.errors import ConfigError

CONFIG_FILE = "textbook.toml"
C = TypeVar("C")


def secret(default: Any = None) -> Any:
    """A dataclass field that never reaches logs, caches or manifests (API keys)."""
    return dataclasses.field(default=default, metadata={"secret": True}, repr=False)


def load_config_file(path: str | Path | None) -> dict[str, Any]:
    """Read an explicit config file, or ./textbook.toml when present; {} when there is none."""
    if path is None:
        path = Path(CONFIG_FILE)
        if not path.is_file():
            return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist: pass an existing file to --config")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML ({exc}): fix it or pass --config with another file")


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Turn a string from the environment (or a TOML scalar) into the field's declared type."""
    origin = typing.get_origin(hint)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        hint = args[0]
        origin = typing.get_origin(hint)
    if value is None:
        return None
    try:
        if hint is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if hint in (int, float, str):
            return hint(value)
        if hint is Path:
            return Path(value)
        if origin is tuple and isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if origin is tuple:
            return tuple(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {getattr(hint, '__name__', hint)}") from None
    return value


def resolve(
    cls: type[C],
    *,
    cli: Mapping[str, Any] | None = None,
    file: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    section: str = "",
) -> C:
    """Build `cls` from CLI values (None = not given) > file section > env vars (field -> VAR) > defaults."""
    cli = cli or {}
    file = dict(file or {})
    env = env or {}
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(file) - names)
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(unknown)} in [{section}] of the config file; known keys: {', '.join(sorted(names))}"
        )
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if cli.get(f.name) is not None:
            values[f.name] = cli[f.name]
        elif f.name in file:
            values[f.name] = _coerce(file[f.name], hints[f.name], f"[{section}] {f.name} in the config file")
        elif f.name in env and environ.get(env[f.name]):
            values[f.name] = _coerce(environ[env[f.name]], hints[f.name], f"environment variable {env[f.name]}")
    return cls(**values)


def public_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON-able data, without secret fields (for manifests and checkpoints)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.metadata.get("secret"):
            continue
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            value = public_dict(value)
        elif isinstance(value, Path):
            value = str(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[f.name] = value
    return out
