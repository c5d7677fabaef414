"""Config precedence, written once: CLI flags > config file (textbook.toml) > environment > defaults.

Every stage has a frozen dataclass whose defaults are the recipe. `resolve` builds one from the
layers; `public_dict` is what lands in manifests and checkpoints (fields marked secret never do,
nor credentials inside URLs).
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar
from urllib.parse import unquote

from textbook.errors import ConfigError

CONFIG_FILE = "textbook.toml"
C = TypeVar("C")


def secret(default: Any = None) -> Any:
    """A dataclass field that never reaches logs, caches or manifests (API keys)."""
    return dataclasses.field(default=default, metadata={"secret": True}, repr=False)


def config_file_used(explicit: str | Path | None) -> str | None:
    """The config file a command reads, as its summary and run.json name it: --config FILE, else
    ./textbook.toml when present (read without being asked for: a stray one must not go unnoticed)."""
    if explicit is not None:
        return str(Path(explicit).resolve())
    return str(Path(CONFIG_FILE).resolve()) if Path(CONFIG_FILE).is_file() else None


def shard_slice(shard: str) -> tuple[int, int]:
    """(I, N) of a `--shard I/N` value, (0, 1) for "" (the whole run); a ConfigError for anything else."""
    if not shard:
        return 0, 1
    parts = shard.split("/")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or not int(parts[0]) < int(parts[1]):
        raise ConfigError(f"--shard {shard!r}: give I/N with 0 <= I < N, e.g. --shard 0/4 on the first of 4 machines")
    return int(parts[0]), int(parts[1])


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


# A URL anywhere in a string: scheme://, then everything up to whitespace or a quote.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+")
# Query (or fragment) parameters that carry credentials: key, api-key, api_key, apikey, access_token,
# token, sig, signature (signed URLs: SAS, S3 presigned), password, secret, client_secret, credential.
_SECRET_PARAM = re.compile(r"(^|[-_.])(key|api[-_]?key|apikey|(access|auth|id|refresh)?[-_]?token|sig|signature|"
                           r"password|passwd|pwd|secret|credentials?)$", re.IGNORECASE)
REDACTED = "REDACTED"


def _strip_params(params: str) -> str:
    parts = []
    for part in params.split("&"):
        name, eq, _ = part.partition("=")
        parts.append(f"{name}={REDACTED}" if eq and _SECRET_PARAM.search(unquote(name).strip()) else part)
    return "&".join(parts)


def _strip_url(url: str) -> str:
    scheme, _, rest = url.partition("://")
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    authority = authority.rpartition("@")[2]  # user:password@host -> host
    tail, hash_, fragment = tail.partition("#")
    path, q, query = tail.partition("?")
    return f"{scheme}://{authority}{path}{q}{_strip_params(query) if q else ''}{hash_}{_strip_params(fragment) if hash_ else ''}"


def strip_credentials(text: str) -> str:
    """`text` with every URL in it stripped of credentials: the `user:password@` part goes, and the
    values of key/token/signature/password/secret query parameters become REDACTED. Text without a
    URL comes back unchanged."""
    return _URL.sub(lambda m: _strip_url(m.group()), text) if "://" in text else text


def _public(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return public_dict(value)
    if isinstance(value, Path):
        return strip_credentials(str(value))
    if isinstance(value, str):
        return strip_credentials(value)
    if isinstance(value, (tuple, list)):
        return [_public(v) for v in value]
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items()}
    return value


def public_dict(config: Any) -> dict[str, Any]:
    """The config as plain JSON-able data for manifests, checkpoints and reports: without secret fields,
    and without the credentials a URL may carry (`--base-url https://user:pass@host/v1?api-key=...`)."""
    return {f.name: _public(getattr(config, f.name)) for f in dataclasses.fields(config) if not f.metadata.get("secret")}
