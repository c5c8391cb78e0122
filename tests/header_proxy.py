"""A loopback reverse proxy that adds `Authorization: Bearer <token>` to each request, for clients that cannot.

The MCP conformance suite (0.1.13) has no option to add a header, so it sends
its requests to this proxy. The proxy forwards each one to `order3 serve --http`
with the bearer token added. It rewrites a Host header that names the proxy to
the server's address, as reverse proxies do. Any other Host (a DNS rebinding
probe, for example) and every Origin pass through for the server to judge.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx2
import uvicorn
from starlette.types import Receive, Scope, Send

from tests.http_support import free_port

# Hop-by-hop and length headers that the proxy sets itself.
DROPPED = {b"host", b"authorization", b"content-length", b"connection", b"transfer-encoding", b"keep-alive"}


class HeaderProxy:
    """ASGI application that forwards to `upstream` with a bearer token."""

    def __init__(self, *, listen: str, upstream_host: str, secret: str) -> None:
        self.listen = listen
        self.upstream_host = upstream_host
        self.secret = secret
        self.client = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=300.0))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body", False):
                break

        headers = [(name, value) for name, value in scope["headers"] if name.lower() not in DROPPED]
        host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
        headers.append((b"host", (self.upstream_host if host == self.listen else host).encode("latin-1")))
        headers.append((b"authorization", f"Bearer {self.secret}".encode()))
        query = scope.get("query_string", b"").decode("latin-1")
        url = f"http://{self.upstream_host}{scope['path']}" + (f"?{query}" if query else "")

        request = self.client.build_request(scope["method"], url, headers=headers, content=bytes(body))
        response = await self.client.send(request, stream=True)
        try:
            forwarded = [(name, value) for name, value in response.headers.raw if name.lower() not in DROPPED]
            await send({"type": "http.response.start", "status": response.status_code, "headers": forwarded})
            async for chunk in response.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await response.aclose()


@contextmanager
def header_proxy(upstream_port: int, secret: str) -> Iterator[str]:
    """Run the proxy on a free loopback port in a thread and return its MCP URL."""
    port = free_port()
    proxy = HeaderProxy(listen=f"127.0.0.1:{port}", upstream_host=f"127.0.0.1:{upstream_port}", secret=secret)
    server = uvicorn.Server(uvicorn.Config(proxy, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, name="header-proxy", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    assert server.started, "the header proxy did not start within 30 s"
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
