"""The cheap check before a long run: is the endpoint there, does it take the key, does it serve the model?

GET /models first. When the model is not listed there, one 1-token completion settles it: a server
that answers it *as another model* (llama.cpp answers to any name) while listing its own is refused,
so the manifest never credits a model that did not write the data. Each probe has a short timeout;
only a refused connection is tried again, twice, in case the server is still starting; a server that
lists the model but is too busy to answer the probe in time is let through (it is up; a queue is not
a misconfiguration). Every failure becomes one line that says what to fix.

A llama.cpp server also says what it can take (`/props`: its parallel slots and context per slot),
and one short timed request says how fast it generates: `ServerInfo`, from which the client starts
at a concurrency the server can serve without queueing and a timeout long enough for max_tokens.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx2
import openai

from textbook.config import strip_credentials
from textbook.errors import ConfigError
from textbook.teacher.config import TeacherConfig
from textbook.teacher.failures import connection_reason, error_field, server_message

CHECK_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 30.0  # the 1-token probe may wait for a busy slot
AZURE = (".azure.com", ".azure-api.net", "api-version=")  # deployments are named by the user, not listed
REFUSED_PAUSES_S = (0.3, 0.7)  # a server that is still starting gets one second; a dead one is reported
URL_FLAGS = "--base-url / OPENAI_BASE_URL"
KEY_FLAGS = "--api-key / OPENAI_API_KEY"
MODEL_FLAGS = "--model / TEXTBOOK_MODEL"


def public_url(url: Any) -> str:
    """The base URL without credentials someone may have put in it (https://user:pass@host, ?api-key=)."""
    return strip_credentials(str(url)).rstrip("/")


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the pre-flight check learnt about the server; None where it does not say."""

    kind: str | None = None  # "llamacpp", "vllm", ... (the model's owned_by in /models)
    slots: int | None = None  # requests it serves at once (llama.cpp's --parallel)
    context: int | None = None  # tokens per slot (prompt + reply)
    tokens_per_s: float | None = None  # generation speed of one request, measured
    model: str | None = None  # the name the server answers as


async def _probe(client: openai.AsyncOpenAI, config: TeacherConfig, path: str, body: dict | None = None,
                 timeout: float = CHECK_TIMEOUT_S) -> tuple[int, Any]:
    """(status, JSON body or text) of one request; ConfigError when no answer comes at all."""
    where = public_url(client.base_url)
    timeout = min(timeout, config.timeout_s)
    options: dict[str, Any] = {"timeout": timeout, "max_retries": 0}
    pauses = list(REFUSED_PAUSES_S)
    while True:
        try:
            if body is None:
                response = await client.get(path, cast_to=httpx2.Response, options=options)
            else:
                response = await client.post(path, cast_to=httpx2.Response, body=body, options=options)
        except openai.APIStatusError as exc:
            return exc.status_code, exc.body
        except openai.APIConnectionError as exc:  # APITimeoutError included
            reason = connection_reason(exc)
            if reason == "timed out":
                raise ConfigError(
                    f"the teacher at {where} did not answer within {timeout:g}s: "
                    f"check {URL_FLAGS} and that the server is not overloaded"
                ) from None
            if reason == "connection refused" and pauses:
                await asyncio.sleep(pauses.pop(0))
                continue
            if reason == "host name not found":
                fix = f"fix the host in {URL_FLAGS}"
            else:
                fix = f"start the server or fix {URL_FLAGS}"
            raise ConfigError(f"cannot reach the teacher at {where} ({reason}): {fix}") from None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text


def _models(body: Any) -> dict[str, str]:
    """{model id: owned_by} of a /models reply."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return {}
    return {str(m["id"]): str(m.get("owned_by") or "") for m in data if isinstance(m, dict) and "id" in m}


def _listed_as(model: str, listed: dict[str, str]) -> str | None:
    """The listed id `model` names: itself, a file's name for llama.cpp's path ids, or Ollama's NAME:latest."""
    for name in listed:
        base = name.rsplit("/", 1)[-1]
        if model in (name, base, base.removesuffix(".gguf"), name.removesuffix(":latest")):
            return name
    return None


def auth_error(status: int, said: str, where: str) -> ConfigError:
    """401 / 403, at the check or mid-run: the key is wrong, or may not use this endpoint or model."""
    if status == 401:
        return ConfigError(f"the teacher at {where} rejected the API key (401: {said}): set a valid key with {KEY_FLAGS}")
    return ConfigError(
        f"the API key may not use the teacher at {where} (403: {said}): check the key's permissions and project, {KEY_FLAGS}"
    )


def quota_error(body: Any, where: str) -> ConfigError | None:
    """OpenAI's 429 `insufficient_quota` is an empty account, not a rate limit: waiting will not help."""
    if "insufficient_quota" not in (error_field(body, "code"), error_field(body, "type")):
        return None
    return ConfigError(f"the teacher's account at {where} has no quota left (429 insufficient_quota): "
                         "add credit or use another key")


async def check_endpoint(client: openai.AsyncOpenAI, config: TeacherConfig) -> ServerInfo:
    where = public_url(client.base_url)
    secret = config.api_key
    status, body = await _probe(client, config, "/models")
    if status in (401, 403):
        raise auth_error(status, server_message(body, secret), where)
    listed = _models(body) if status == 200 else {}
    name = _listed_as(config.model, listed)
    if name is not None:
        return await _describe(client, config, listed[name])
    # Not listed, or no /models at all: Azure lists base models, not deployment names, and some
    # servers have no /models. One tiny completion settles it.
    try:
        status, body = await _probe(
            client, config, "/chat/completions",
            {"model": config.model, "messages": [{"role": "user", "content": "Reply with OK."}], "max_tokens": 1},
            timeout=PROBE_TIMEOUT_S if listed else CHECK_TIMEOUT_S,
        )
    except ConfigError:
        if not listed:
            raise
        raise ConfigError(f"the teacher at {where} lists {_names(listed)} but not {config.model!r}, and did not answer "
                          f"a 1-token request for it within {min(PROBE_TIMEOUT_S, config.timeout_s):g}s: fix {MODEL_FLAGS}") from None
    if status == 200:
        if not (isinstance(body, dict) and isinstance(body.get("choices"), list)):
            raise ConfigError(
                f"the server at {where} answered /chat/completions with something that is not a chat completion: "
                f"point {URL_FLAGS} at the API root (usually ending in /v1)"
            )
        answered = str(body.get("model") or "")
        azure = any(mark in str(client.base_url) for mark in AZURE)
        if listed and answered and not answered.startswith(config.model) and not azure:
            # llama.cpp answers to any model name as the one model it has: the rows would credit a model
            # that never wrote them. (OpenAI answers gpt-4o-mini as gpt-4o-mini-2024-07-18: a prefix.)
            raise ConfigError(f"the teacher at {where} does not serve model {config.model!r}: it answered as {answered!r} "
                              f"and serves {_names(listed)}: fix {MODEL_FLAGS}")
        return ServerInfo(model=answered or None)
    said = server_message(body, secret)
    if status in (401, 403):
        raise auth_error(status, said, where)
    if status == 404:
        if listed or "model" in said.lower():
            offer = f"; it serves {_names(listed)}" if listed else ""
            raise ConfigError(
                f"the teacher at {where} does not serve model {config.model!r} (404: {said}){offer}: fix {MODEL_FLAGS}"
            )
        raise ConfigError(
            f"no OpenAI-compatible API at {where} (404 for /chat/completions): fix {URL_FLAGS} (it usually ends in /v1)"
        )
    if status == 429:
        if (exhausted := quota_error(body, where)) is not None:
            raise exhausted
        return ServerInfo()  # reachable, key and model fine, merely busy: the run's rate limiting deals with that
    if status in (400, 422):
        return ServerInfo()  # the model exists; it only disliked the probe itself (e.g. max_tokens on reasoning models)
    raise ConfigError(
        f"the teacher at {where} is up but failing ({status}: {said}): try again later or check the server's logs"
    )


def _names(listed: dict[str, str], most: int = 8) -> str:
    names = list(listed)
    return ", ".join(names[:most]) + (", …" if len(names) > most else "")


async def _describe(client: openai.AsyncOpenAI, config: TeacherConfig, owner: str) -> ServerInfo:
    """What a llama.cpp server says of itself (/props) and how fast it answers one short request.
    Other servers: nothing is asked (their queues are deep, or they are paced by 429s)."""
    if owner != "llamacpp":
        return ServerInfo(kind=owner or None)
    root = str(client.base_url).rstrip("/").removesuffix("/v1")
    slots = context = speed = None
    try:
        status, props = await _probe(client, config, f"{root}/props")
        if status == 200 and isinstance(props, dict):
            slots = int(props.get("total_slots") or 0) or None
            context = int((props.get("default_generation_settings") or {}).get("n_ctx") or 0) or None
        started = time.monotonic()
        status, body = await _probe(client, config, "/chat/completions", {
            "model": config.model, "messages": [{"role": "user", "content": "Count from 1 to 20."}], "max_tokens": 16,
        }, timeout=PROBE_TIMEOUT_S)
        if status == 200 and isinstance(body, dict):
            timings = body.get("timings") or {}
            speed = timings.get("predicted_per_second")
            if not speed:
                tokens = int((body.get("usage") or {}).get("completion_tokens") or 0)
                speed = tokens / max(1e-3, time.monotonic() - started) if tokens else None
    except ConfigError:  # busy: up and serving the model (it is listed), only too slow to describe itself now
        pass
    return ServerInfo(kind=owner, slots=slots, context=context, tokens_per_s=float(speed) if speed else None)
