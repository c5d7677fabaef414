"""`Teacher.check()`: each misconfiguration fails fast, in one line that says what to fix."""

from __future__ import annotations

import asyncio
import socket

import pytest

from textbook.errors import TextbookError
from textbook.teacher.client import Teacher


def check(config) -> None:
    async def main():
        async with Teacher(config, cache_path=None, progress=False) as teacher:
            # Generous guard: the point is "seconds, not thousands of retries" (max_retries is 50 below).
            await asyncio.wait_for(teacher.check(), 20)

    asyncio.run(main())


def failure(config) -> str:
    with pytest.raises(TextbookError) as info:
        check(config)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2  # the teacher as set up cannot be used
    return message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_check_passes_with_one_request_when_the_model_is_listed(fake_teacher):
    check(fake_teacher.config())
    assert [r.path for r in fake_teacher.requests] == ["/v1/models"]


def test_check_confirms_an_unlisted_model_with_a_tiny_completion(fake_teacher):
    fake_teacher.models = None  # no /models at all, any model accepted (like llama.cpp)
    check(fake_teacher.config(model="whatever"))
    chat = fake_teacher.chat_requests()
    assert len(chat) == 1 and chat[0].body["max_tokens"] == 1


def test_unreachable_endpoint(fake_teacher):
    url = f"http://127.0.0.1:{free_port()}/v1"
    message = failure(fake_teacher.config(base_url=url, max_retries=50))
    assert message == f"cannot reach the teacher at {url} (connection refused): start the server or fix --base-url / OPENAI_BASE_URL"


def test_unknown_host(fake_teacher, monkeypatch):
    real = socket.getaddrinfo

    def resolve(host, *args, **kwargs):  # answer NXDOMAIN at once, whatever DNS this machine has
        if str(host).endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    message = failure(fake_teacher.config(base_url="http://no-such-host.invalid/v1", max_retries=50))
    assert "cannot reach the teacher at http://no-such-host.invalid/v1" in message and "fix the host in --base-url" in message


def test_server_that_never_answers_times_out(fake_teacher):
    with socket.socket() as silent:  # accepts connections (backlog) and never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        message = failure(fake_teacher.config(base_url=url, timeout_s=0.5, max_retries=50))
    assert message.startswith(f"the teacher at {url} did not answer within 0.5s")


def test_bad_key(fake_teacher):
    fake_teacher.api_key = "sk-good-key-123456"
    message = failure(fake_teacher.config(api_key="sk-bad-key-654321"))
    assert "rejected the API key (401" in message and "set a valid key with --api-key / OPENAI_API_KEY" in message
    assert "sk-bad-key-654321" not in message


def test_forbidden_key(fake_teacher):
    fake_teacher.models = None
    fake_teacher.fault("403", message="You are not allowed to sample from this model")
    message = failure(fake_teacher.config())
    assert "may not use the teacher" in message and "403" in message


def test_unknown_model_lists_what_is_served(fake_teacher):
    fake_teacher.models = ["llama3.1:8b", "qwen2.5:7b"]
    message = failure(fake_teacher.config(model="gpt-4o"))
    assert "does not serve model 'gpt-4o'" in message and "it serves llama3.1:8b, qwen2.5:7b" in message
    assert message.endswith("fix --model / TEXTBOOK_MODEL")


def test_base_url_without_v1(fake_teacher):
    message = failure(fake_teacher.config(base_url=fake_teacher.url.removesuffix("/v1")))
    assert message.startswith("no OpenAI-compatible API at http://127.0.0.1:") and "usually ends in /v1" in message


def test_server_up_but_failing(fake_teacher):
    fake_teacher.models = None
    fake_teacher.fault("503", times=None, message="model is loading")
    message = failure(fake_teacher.config(max_retries=50))
    assert "is up but failing (503: model is loading)" in message
    assert len(fake_teacher.chat_requests()) == 1


def test_rate_limited_endpoint_passes_the_check(fake_teacher):
    fake_teacher.models = None
    fake_teacher.fault("429", times=1)
    check(fake_teacher.config())


def test_credentials_in_the_url_are_not_shown(fake_teacher):
    url = f"http://user:hunter2@127.0.0.1:{free_port()}/v1"
    message = failure(fake_teacher.config(base_url=url))
    assert "hunter2" not in message and "http://127.0.0.1:" in message
