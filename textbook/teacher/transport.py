"""The HTTP client under the one shared `openai.AsyncOpenAI`: connection pools small enough to stay cheap.

httpcore's pool rescans every connection it holds on each request it queues or releases (and
polls each idle socket for expiry), so one pool of 64 keep-alive connections costs O(64) work per
request. Measured on this project's 2-core machine against the fake server at zero latency, 64
requests in flight: one pool 520-540 requests/s, eight pools of 8 connections 710-780 requests/s.
The requests go to the least busy pool, so the pools stay evenly used.
"""

from __future__ import annotations

import functools
import ssl
import urllib.request

import httpx2

POOL_SIZE = 8


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every pool and client of the process: each costs ~30 ms to build (CA bundle)."""
    return httpx2.create_ssl_context()


class PooledTransport(httpx2.AsyncBaseTransport):
    def __init__(self, connections: int):
        pools = max(1, -(-connections // POOL_SIZE))
        limits = httpx2.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE)
        self._pools = [httpx2.AsyncHTTPTransport(verify=_tls(), limits=limits) for _ in range(pools)]
        self._busy = [0] * pools

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        i = min(range(len(self._pools)), key=self._busy.__getitem__)
        self._busy[i] += 1
        try:
            response = await self._pools[i].handle_async_request(request)
            # Read the body here so the connection counts as busy until it is free again.
            await response.aread()
            return response
        finally:
            self._busy[i] -= 1

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def http_client(connections: int, timeout: httpx2.Timeout) -> httpx2.AsyncClient | None:
    """A client over small pools, or None (the openai default client) when a proxy is configured in the
    environment: a custom transport would bypass HTTP(S)_PROXY, which the default client honours."""
    if urllib.request.getproxies():
        return None
    return httpx2.AsyncClient(transport=PooledTransport(connections), timeout=timeout)
