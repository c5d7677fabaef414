"""Teacher settings: where the endpoint is, which model, how hard to push it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from textbook.config import resolve, secret
from textbook.errors import ConfigError

# Field -> environment variable (the usual OPENAI_* names, so existing setups just work).
ENV = {"base_url": "OPENAI_BASE_URL", "api_key": "OPENAI_API_KEY", "model": "TEXTBOOK_MODEL"}


@dataclass(frozen=True, slots=True)
class TeacherConfig:
    base_url: str | None = None  # None = api.openai.com (the openai client's default)
    model: str | None = None
    api_key: str | None = secret()
    concurrency: int = 16
    requests_per_minute: float = 0.0  # 0 = no client-side limit
    tokens_per_minute: float = 0.0
    max_retries: int = 6  # transport retries per request (429, 5xx, timeouts, dropped connections)
    output_retries: int = 2  # re-asks after a bad reply (length, content_filter, invalid JSON): each one is paid
    retry_base_s: float = 0.5  # backoff: a random wait in [0, min(retry_max_s, retry_base_s * 2**attempt)]
    retry_max_s: float = 60.0
    timeout_s: float = 120.0  # per request; raised for a measured-slow local server (see Teacher.check)
    circuit_breaker: int = 5  # overload rounds at concurrency 1 with no reply in between before the run stops
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 2048
    cache: bool = True
    price_file: str | None = None  # TOML/JSON {model: {input: $/1M tokens, output: $/1M tokens}}


def resolve_teacher(cli: Mapping[str, Any], file: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> TeacherConfig:
    """Flags > [teacher] in textbook.toml > OPENAI_BASE_URL / OPENAI_API_KEY / TEXTBOOK_MODEL > defaults."""
    return resolve(TeacherConfig, cli=cli, file=file.get("teacher", {}), env=ENV, environ=environ, section="teacher")


def require_teacher(config: TeacherConfig) -> TeacherConfig:
    """A run that needs a teacher fails here, before any work, if none is configured."""
    if not config.model:
        raise ConfigError(
            "no teacher model configured: pass --model (and --base-url / --api-key), set TEXTBOOK_MODEL "
            "(with OPENAI_BASE_URL / OPENAI_API_KEY), or add [teacher] model = \"...\" to textbook.toml"
        )
    if not config.api_key and not config.base_url:
        raise ConfigError(
            "no API key for api.openai.com: set OPENAI_API_KEY or pass --api-key; for a local server "
            "(vLLM, Ollama, llama.cpp) pass --base-url http://host:port/v1"
        )
    return config
