"""The cheap check before a long run: is the endpoint there, does it take the key, does it serve the model?

At most two requests (GET /models, then one 1-token completion when the model is not listed there),
each with a short timeout; only a refused connection is tried again, twice, in case the server is
still starting. Every failure becomes one line that says what to fix.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import openai

from textbook.config import strip_credentials
from textbook.errors import ConfigError
from textbook.teacher.config import TeacherConfig
from textbook.teacher.failures import connection_reason, error_field, server_message

CHECK_TIMEOUT_S = 5.0
REFUSED_PAUSES_S = (0.3, 0.7)  # a server that is still starting gets one second; a dead one is reported
URL_FLAGS = "--base-url / OPENAI_BASE_URL"
KEY_FLAGS = "--api-key / OPENAI_API_KEY"
MODEL_FLAGS = "--model / TEXTBOOK_MODEL"


def public_url(url: Any) -> str:
    """The base URL without credentials someone may have put in it (https://user:pass@host, ?api-key=)."""
    return strip_credentials(str(url)).rstrip("/")


async def _probe(client: openai.AsyncOpenAI, config: TeacherConfig, path: str, body: dict | None = None) -> tuple[int, Any]:
    """(status, JSON body or text) of one request; ConfigError when no answer comes at all."""
    where = public_url(client.base_url)
    timeout = min(CHECK_TIMEOUT_S, config.timeout_s)
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


def _model_ids(body: Any) -> list[str]:
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        return []
    return [str(m["id"]) for m in data if isinstance(m, dict) and "id" in m]


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


async def check_endpoint(client: openai.AsyncOpenAI, config: TeacherConfig) -> None:
    where = public_url(client.base_url)
    secret = config.api_key
    status, body = await _probe(client, config, "/models")
    if status in (401, 403):
        raise auth_error(status, server_message(body, secret), where)
    listed = _model_ids(body) if status == 200 else []
    if config.model in listed:
        return
    # Not listed, or no /models at all: Azure lists base models, not deployment names, and some
    # servers have no /models. One tiny completion settles it.
    status, body = await _probe(
        client, config, "/chat/completions",
        {"model": config.model, "messages": [{"role": "user", "content": "Reply with OK."}], "max_tokens": 1},
    )
    if status == 200:
        if isinstance(body, dict) and isinstance(body.get("choices"), list):
            return
        raise ConfigError(
            f"the server at {where} answered /chat/completions with something that is not a chat completion: "
            f"point {URL_FLAGS} at the API root (usually ending in /v1)"
        )
    said = server_message(body, secret)
    if status in (401, 403):
        raise auth_error(status, said, where)
    if status == 404:
        if listed or "model" in said.lower():
            names = ", ".join(listed[:8]) + (", …" if len(listed) > 8 else "")
            offer = f"; it serves {names}" if listed else ""
            raise ConfigError(
                f"the teacher at {where} does not serve model {config.model!r} (404: {said}){offer}: fix {MODEL_FLAGS}"
            )
        raise ConfigError(
            f"no OpenAI-compatible API at {where} (404 for /chat/completions): fix {URL_FLAGS} (it usually ends in /v1)"
        )
    if status == 429:
        if (exhausted := quota_error(body, where)) is not None:
            raise exhausted
        return  # reachable, key and model fine, merely busy: the run's rate limiting deals with that
    if status in (400, 422):
        return  # the model exists; it only disliked the probe itself (e.g. max_tokens on reasoning models)
    raise ConfigError(
        f"the teacher at {where} is up but failing ({status}: {said}): try again later or check the server's logs"
    )
