"""A fake OpenAI-compatible server for tests and benchmarks: real HTTP on 127.0.0.1, scripted replies, faults.

It runs an asyncio HTTP/1.1 server (keep-alive, Content-Length bodies) on its own event loop in a
background thread, so hundreds of concurrent connections with a fixed latency cost one coroutine
each and the server is never the bottleneck of what it measures.

    from tests.fakeserver import FakeServer

    with FakeServer({"capital": '{"city": "Paris"}'}, latency=0.05, api_key="sk-test") as server:
        server.url                      # "http://127.0.0.1:<port>/v1" -> TeacherConfig.base_url
        server.config(concurrency=8)    # a TeacherConfig aimed at it (fast retries), overrides as keywords
        server.env()                    # {"OPENAI_BASE_URL": ..., "OPENAI_API_KEY": ..., "TEXTBOOK_MODEL": ...}
        server.fault("429", times=2, retry_after=0.1)   # next 2 chat requests get 429 + Retry-After: 0.1
        ...
        server.chat_requests()          # recorded POST /chat/completions requests (headers + JSON body)

Constructor (all keyword-only except `replies`):
- `replies`: what the assistant answers. A string (always that), a dict {substring: reply} matched
  against the last user message (first match wins, else `default`), or a callable
  `(messages) -> str | dict`; a dict return may set `content` and `finish_reason`.
- `latency`: seconds before every reply (asyncio sleep, so it costs no CPU); `jitter` j spreads it uniformly
  over latency x [1 - j, 1 + j] (seeded), as replies of different lengths take different times.
- `models`: ids listed by GET /v1/models and accepted by chat (404 model_not_found otherwise);
  `models=None` makes /v1/models answer 404 (as some servers do) and accepts any model.
- `api_key`: when set, requests without `Authorization: Bearer <api_key>` get 401.
- `response_format`: "supported" (default) or "unsupported" (400 naming `response_format`, like
  servers without structured outputs).
- `max_in_flight`: answer 429 (Retry-After absent) while more chat requests than this are being served,
  like a server at capacity; `None` = unlimited.
- `record`: keep every request in `server.requests` (benchmarks turn it off to save memory).
- `slots`: behave like llama.cpp's server with `--parallel SLOTS`: /v1/models says `owned_by: llamacpp`,
  GET /props gives `total_slots` and the context per slot (`context`), a chat request for *any* model
  name is answered as `models[0]`, requests beyond the slots wait in a queue (no 429), a request keeps
  its slot until its reply is written even when the client gave up on it, and replies carry
  llama.cpp's `timings`. With `tokens_per_s`, a reply also takes completion_tokens / tokens_per_s.
Every setting is a plain attribute read per request, so a test may change it on a running server
(`server.replies = ...`, `server.response_format = "unsupported"`, `server.max_in_flight = None`).
Counters: `served` (chat requests answered, batch lines included), `rate_limited` (429s sent), `peak_in_flight`.
The Batch API (/v1/files, /v1/batches, /v1/files/{id}/content) is served too: tests/fakebatch.py.

Faults (`server.fault(kind, times=1, match=None, **options)`), applied to chat requests in the order
queued; `match` limits a fault to requests whose last user message contains that substring;
`times=None` means until `server.clear_faults()`:
- "429": rate limited; options `retry_after` (seconds), `retry_after_ms`, `retry_after_date` (seconds
  from now, sent as an HTTP-date), `code` (e.g. "insufficient_quota").
- "500" (or any status as a string, e.g. "503", "400", "401", "404", "413"): that status with an
  OpenAI-style error body; options `message`, `param`, `code`.
- "slow": reply after `delay` seconds (default 5) - the client should time out first.
- "malformed": 200 with a body that is not valid JSON.
- "drop": send the headers and half the body, then reset the connection (dropped connection).
- "length": the reply is cut short and `finish_reason` is "length".
- "content_filter": empty content and `finish_reason` "content_filter".

A reply longer than the request's max_tokens is cut there with `finish_reason` "length", as real servers do.

Usage fields: prompt_tokens = characters of all messages // 4 + 1, completion_tokens = characters of
the reply // 4 + 1 (deterministic, so tests can check token and cost accounting).

Run standalone (benchmarks put it in another process so it does not share the client's GIL):
    python -m tests.fakeserver --latency 0.2 [--port 0] [--reply TEXT]   # prints the URL, serves until killed
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from tests.fakebatch import BatchAPI

Replies = str | dict[str, str] | Callable[[list[dict]], Any] | None

_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            413: "Payload Too Large", 422: "Unprocessable Entity", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(slots=True)
class Request:
    """One request as the server received it (header names lowercased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it was not JSON, or None
    raw: bytes  # the full request bytes (start line, headers, body), to grep for secrets
    time: float  # time.monotonic() on arrival


@dataclass(slots=True)
class Fault:
    kind: str
    times: int | None = 1
    match: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: [{"type": "text", "text": ...}]
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def last_user_message(messages: list[dict]) -> str:
    for message in reversed(messages or []):
        if message.get("role") == "user":
            return _content_text(message.get("content"))
    return ""


class FakeServer(BatchAPI):
    def __init__(
        self,
        replies: Replies = None,
        *,
        latency: float = 0.0,
        models: tuple[str, ...] | list[str] | None = ("fake-model",),
        api_key: str | None = None,
        response_format: str = "supported",
        max_in_flight: int | None = None,
        default: str = "This is a fake reply.",
        record: bool = True,
        slots: int | None = None,
        context: int = 2048,
        tokens_per_s: float | None = None,
        jitter: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        if response_format not in ("supported", "unsupported"):
            raise ValueError("response_format must be 'supported' or 'unsupported'")
        self.replies = replies
        self.latency = latency
        self.models = list(models) if models is not None else None
        self.api_key = api_key
        self.response_format = response_format
        self.max_in_flight = max_in_flight
        self.default = default
        self.record = record
        self.slots, self.context, self.tokens_per_s = slots, context, tokens_per_s
        self.jitter, self._jitter_rng = jitter, random.Random(0)
        self._slot_sem: asyncio.Semaphore | None = None  # made on the server's loop
        self.requests: list[Request] = []
        self.served = 0  # chat requests answered (any status), counted even when record=False
        self.rate_limited = 0  # 429s sent
        self.peak_in_flight = 0
        self._in_flight = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()  # faults are queued from the test thread, consumed on the server loop
        self._host, self._port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeServer:
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, self._host, self._port, backlog=1024)
            )
            self._port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fakeserver", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is None:
            return

        async def shutdown() -> None:
            self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._loop = None

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}/v1"

    def config(self, **overrides: Any):
        """A TeacherConfig aimed at this server, with millisecond backoff so fault tests stay fast."""
        from textbook.teacher.config import TeacherConfig

        values = {"base_url": self.url, "model": self.models[0] if self.models else "fake-model",
                  "api_key": self.api_key or "sk-fake-key", "retry_base_s": 0.01, "retry_max_s": 0.05, "timeout_s": 10.0}
        return TeacherConfig(**{**values, **overrides})

    def env(self, model: str | None = None) -> dict[str, str]:
        """Environment variables that point `textbook` at this server (for CLI subprocess tests)."""
        return {
            "OPENAI_BASE_URL": self.url,
            "OPENAI_API_KEY": self.api_key or "sk-fake-key",
            "TEXTBOOK_MODEL": model or (self.models[0] if self.models else "fake-model"),
        }

    # ---- scripting -------------------------------------------------------------------------------
    def fault(self, kind: str, times: int | None = 1, *, match: str | None = None, **options: Any) -> None:
        with self._lock:
            self._faults.append(Fault(kind, times, match, options))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def chat_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def _take_fault(self, prompt: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.match is None or fault.match in prompt:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def _reply_for(self, messages: list[dict]) -> tuple[str, str]:
        replies = self.replies
        if callable(replies):
            out = replies(messages)
        elif isinstance(replies, dict):
            prompt = last_user_message(messages)
            out = next((reply for key, reply in replies.items() if key in prompt), self.default)
        elif isinstance(replies, str):
            out = replies
        else:
            out = self.default
        if isinstance(out, dict):
            return out.get("content") or "", out.get("finish_reason", "stop")
        return str(out), "stop"

    # ---- HTTP ------------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                raw_body = await reader.readexactly(int(headers.get("content-length", "0")))
                try:
                    body = json.loads(raw_body) if raw_body else None
                except ValueError:
                    multipart = headers.get("content-type", "").startswith("multipart/")
                    body = raw_body if multipart else raw_body.decode("utf-8", "replace")
                if self.record:
                    self.requests.append(Request(method, path, headers, body, head + raw_body, time.monotonic()))
                keep_going = await self._respond(method, path, headers, body, writer)
                if not keep_going or headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    @staticmethod
    def _send(writer: asyncio.StreamWriter, status: int, payload: Any, extra: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "Content-Type: application/json",
                f"Content-Length: {len(data)}"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + data)

    def _completion(self, body: dict, model: Any, text: str, finish: str) -> dict:
        return _completion_payload(body, model, text, finish)

    def batch_reply(self, body: dict) -> tuple[int, Any]:
        """(status, payload) of one batch line: the chat path's answer without latency or connection faults."""
        model = body.get("model")
        if self.models is not None and model not in self.models:
            return 404, self._error(f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found")
        fault = self._take_fault(last_user_message(body.get("messages") or []))
        if fault is not None and fault.kind.isdigit():
            return int(fault.kind), self._error(fault.options.get("message", f"fake {fault.kind} error"), "server_error")
        text, finish = self._reply_for(body.get("messages") or [])
        if fault is not None and fault.kind == "length":
            text, finish = text[: max(1, len(text) // 2)], "length"
        return 200, self._completion(body, model, text, finish)

    @staticmethod
    def _error(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict:
        return {"error": {"message": message, "type": type_, "param": param, "code": code}}

    async def _respond(self, method: str, path: str, headers: dict, body: Any, writer: asyncio.StreamWriter) -> bool:
        """Write one response; False when the connection must be closed afterwards."""
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            # Echo the key it was given, as careless servers do: the client must keep it out of its messages.
            given = headers.get("authorization", "").removeprefix("Bearer ")
            self._send(writer, 401, self._error(f"Incorrect API key provided: {given}.", "invalid_request_error", "invalid_api_key"))
            return True
        path = path.split("?", 1)[0].rstrip("/")
        routed = self._batch_route(method, path, headers, body)
        if routed is not None:
            self._send(writer, *routed)
            return True
        if method == "GET" and path == "/v1/models":
            if self.models is None:
                self._send(writer, 404, self._error("Not found", "invalid_request_error"))
            else:
                owner = "llamacpp" if self.slots else "fake"
                data = [{"id": m, "object": "model", "created": 0, "owned_by": owner} for m in self.models]
                self._send(writer, 200, {"object": "list", "data": data})
            return True
        if method == "GET" and path == "/props" and self.slots:
            self._send(writer, 200, {"total_slots": self.slots, "default_generation_settings": {"n_ctx": self.context},
                                     "model_alias": self.models[0] if self.models else "model"})
            return True
        if method != "POST" or path != "/v1/chat/completions" or not isinstance(body, dict):
            self._send(writer, 404, self._error(f"no route for {method} {path}", "invalid_request_error"))
            return True
        self.served += 1
        if self.slots:  # llama.cpp: a request waits for a free slot, however long
            if self._slot_sem is None:
                self._slot_sem = asyncio.Semaphore(self.slots)
            await self._slot_sem.acquire()
        self._in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
        try:
            return await self._chat(body, writer)
        finally:
            self._in_flight -= 1
            if self.slots:
                self._slot_sem.release()

    async def _chat(self, body: dict, writer: asyncio.StreamWriter) -> bool:
        messages = body.get("messages") or []
        model = body.get("model")
        if self.slots and self.models:
            model = self.models[0]  # llama.cpp answers to any name as the one model it serves
        elif self.models is not None and model not in self.models:
            self._send(writer, 404, self._error(f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found"))
            return True
        if "response_format" in body and self.response_format == "unsupported":
            self._send(writer, 400, self._error("response_format is not supported by this server",
                                                "invalid_request_error", param="response_format"))
            return True
        if self.max_in_flight is not None and self._in_flight > self.max_in_flight:
            self.rate_limited += 1
            self._send(writer, 429, self._error("Server at capacity, slow down.", "requests", "rate_limit_exceeded"))
            return True
        fault = self._take_fault(last_user_message(messages))
        kind = fault.kind if fault else None
        opts = fault.options if fault else {}
        if kind == "slow":
            await asyncio.sleep(opts.get("delay", 5.0))
        elif self.latency:
            await asyncio.sleep(self.latency * (1 + self._jitter_rng.uniform(-self.jitter, self.jitter)))
        if kind == "429":
            self.rate_limited += 1
            extra = {}
            if "retry_after" in opts:
                extra["Retry-After"] = str(opts["retry_after"])
            if "retry_after_ms" in opts:
                extra["retry-after-ms"] = str(opts["retry_after_ms"])
            if "retry_after_date" in opts:
                extra["Retry-After"] = email.utils.formatdate(time.time() + opts["retry_after_date"], usegmt=True)
            code = opts.get("code", "rate_limit_exceeded")
            self._send(writer, 429, self._error(opts.get("message", "Rate limit reached."), "requests", code), extra)
            return True
        if kind is not None and kind.isdigit():
            status = int(kind)
            message = opts.get("message", f"fake {status} error")
            self._send(writer, status, self._error(message, "server_error", opts.get("code"), opts.get("param")))
            return True
        if kind == "malformed":
            self._send(writer, 200, b'{"id": "chatcmpl-fake", "choices": [{"message": {"content": "cut')
            return True
        text, finish = self._reply_for(messages)
        if kind == "length":
            text, finish = text[: max(1, len(text) // 2)], "length"
        elif kind == "content_filter":
            text, finish = "", "content_filter"
        payload = self._completion(body, model, text, finish)
        usage = payload["usage"]
        if self.tokens_per_s:
            await asyncio.sleep(usage["completion_tokens"] / self.tokens_per_s)
        if self.slots:
            speed = self.tokens_per_s or 1000.0
            payload["timings"] = {"predicted_n": usage["completion_tokens"], "predicted_per_second": speed}
        if kind == "drop":
            data = json.dumps(payload).encode()
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                         + data[: len(data) // 2])
            await writer.drain()
            writer.transport.abort()
            return False
        self._send(writer, 200, payload)
        return True


def _completion_payload(body: dict, model: Any, text: str, finish: str) -> dict:
    """A chat completion for `text`, cut at the request's max_tokens as real servers do."""
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    if isinstance(limit, int) and len(text) // 4 + 1 > limit:
        text, finish = text[: max(0, (limit - 1) * 4)], "length"
    prompt_chars = sum(len(_content_text(m.get("content"))) for m in body.get("messages") or [])
    usage = {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(text) // 4 + 1}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text or None}, "finish_reason": finish}],
        "usage": usage,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake OpenAI-compatible API until killed.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--reply", default="This is a fake reply.")
    parser.add_argument("--model", default="fake-model")
    args = parser.parse_args()
    server = FakeServer(args.reply, latency=args.latency, models=(args.model,), record=False, port=args.port).start()
    print(server.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
