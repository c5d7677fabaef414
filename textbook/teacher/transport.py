"""The HTTP client under the one shared `openai.AsyncOpenAI`: the SDK's own aiohttp client.

Thousands of short requests at 64+ in flight make the client's per-request CPU the limit on one
event loop. Measured against the fake server at zero latency, 64 in flight, on this project's
2-core machine: the SDK's default httpx/httpcore stack 1.05-1.25 ms CPU per request (httpcore
rescans its pool and polls idle sockets on every request), `openai.DefaultAioHttpClient` (the
`openai[aiohttp]` extra, which this package depends on) 0.68-0.75 ms.
"""

from __future__ import annotations

import urllib.parse
import urllib.request

import httpx2


def http_client(connections: int, timeout: httpx2.Timeout, base_url: str = "") -> httpx2.AsyncClient | None:
    """The SDK's aiohttp client sized for `connections`, or None (the SDK's default httpx client)
    where aiohttp would not do what the default client does: a proxy configured in the environment
    (the aiohttp session does not read HTTP(S)_PROXY), or credentials in the base URL (aiohttp
    refuses them beside the SDK's Authorization header)."""
    if urllib.request.getproxies() or "@" in urllib.parse.urlsplit(base_url).netloc:
        return None
    import openai

    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    return openai.DefaultAioHttpClient(timeout=timeout, limits=limits)
