"""The ASGI application of `order3 serve --http`: check, authenticate and rate-limit each request, then route it."""

from __future__ import annotations

import json
import logging
import math
from typing import Any

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from order3_mcp.app import Caller, Order3, redact
from order3_mcp.http_server.guards import (
    MAX_REQUEST_BODY,
    allowed_hosts,
    bearer_secret,
    credential_in_query,
    is_loopback_origin,
    read_body,
    replay,
)
from order3_mcp.http_server.rate_limit import DEFAULT_BURST, DEFAULT_RATE, RateLimiter
from order3_mcp.http_server.responses import bearer_challenge, refusal
from order3_mcp.http_server.sessions import TokenServer, TokenServers
from order3_mcp.server import DEFAULT_TOOL_TIMEOUT
from policies import required_scope
from store.errors import PermissionDeniedError
from store.tokens import hash_secret

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"


class HttpTransport:
    """Streamable HTTP for many clients, each request authenticated by its own bearer token.

    The checks run in this order, and the first that fails sends its status:
    Host (421), Origin (403), path (404), a credential in the query string (400),
    Content-Type of a POST (400), body size (413), bearer token (401), rate limit
    (429) and tool scope (403). Every refusal has a JSON-RPC error body, which
    carries the request id when the body is a single JSON-RPC request.
    A request that passes them all goes to the session manager of its token.
    """

    def __init__(
        self,
        app: Order3,
        *,
        host: str,
        port: int,
        rate: float = DEFAULT_RATE,
        burst: int = DEFAULT_BURST,
        max_request_body: int = MAX_REQUEST_BODY,
        tool_timeout: float = DEFAULT_TOOL_TIMEOUT,
    ) -> None:
        self.app = app
        self.hosts = allowed_hosts(host, port)
        self.endpoint = f"http://{f'[{host}]' if ':' in host else host}:{port}{MCP_PATH}"
        self.max_request_body = max_request_body
        self.limiter = RateLimiter(rate=rate, burst=burst)
        # Host and Origin are checked by `_check_request` on every request, before the
        # SDK sees it. The SDK's own check is off: it accepts Origins only from a fixed
        # list (so not 127.0.0.2, although every 127.0.0.0/8 address is loopback) and
        # refuses with a plain-text body instead of a JSON-RPC error.
        security = TransportSecuritySettings(enable_dns_rebinding_protection=False)
        self.servers = TokenServers(
            app, security=security, max_request_body=max_request_body, tool_timeout=tool_timeout
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._serve(scope, receive, _logged(scope, send))
        # Other scope types (websocket) are not served; returning closes them.

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()
        async with anyio.create_task_group() as task_group:
            self.servers.start(task_group)
            await send({"type": "lifespan.startup.complete"})
            await receive()
            task_group.cancel_scope.cancel()
        await send({"type": "lifespan.shutdown.complete"})

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        client = _client_address(scope)

        rejected = self._check_request(scope, headers, client)
        if rejected is not None:
            return await rejected(scope, receive, send)

        # The body is read before authentication so that a refusal can carry the
        # request id and a dead token's refusal can name the method it tried.
        messages: list[Message] = []
        body = b""
        if scope["method"] == "POST":
            read, messages = await read_body(receive, limit=self.max_request_body)
            if read is None:
                return await self._too_large()(scope, receive, send)
            body = read
        request_id, action = _describe_request(body)

        signed_in = await self._authenticate(scope, receive, send, headers, client, request_id=request_id, action=action)
        if signed_in is None:
            return
        caller, secret = signed_in

        rejected = self._check_rate(caller, request_id)
        if rejected is not None:
            return await rejected(scope, receive, send)

        entry = await self.servers.server_for(caller, secret_hash=hash_secret(secret))
        if body and await self._reject_out_of_scope(entry, body, scope, receive, send):
            return
        await entry.manager.handle_request(scope, replay(messages, receive), send)

    def _check_request(self, scope: Scope, headers: Headers, client: str) -> Response | None:
        """Return the refusal of a request whose Host, Origin, path, query string or declared size is not accepted."""
        host = headers.get("host", "")
        if host not in self.hosts:
            logger.info("rejected a request from %s for Host %r", client, host[:100])
            return refusal(
                421,
                error="misdirected_request",
                message=f"Host {host[:100]!r} is not this server; connect to {self.endpoint}. "
                "Order3 accepts only requests addressed to the loopback address it listens on.",
            )

        origin = headers.get("origin")
        if origin is not None and not is_loopback_origin(origin):
            logger.info("rejected a request from %s with Origin %r", client, origin[:100])
            return refusal(
                403,
                error="forbidden_origin",
                message=f"Origin {origin[:100]!r} is not a page on this machine; Order3 accepts browser requests "
                "only from http(s)://localhost or a loopback address (127.0.0.0/8 or [::1]). Other clients send no "
                "Origin header.",
            )

        if scope["path"] != MCP_PATH:
            return refusal(
                404, error="not_found", message=f"Nothing is served at {scope['path'][:100]!r}; the MCP endpoint is {self.endpoint}."
            )

        parameter = credential_in_query(scope.get("query_string", b""))
        if parameter is not None:
            logger.info("rejected a request from %s with a credential in query parameter %r", client, parameter[:40])
            return refusal(
                400,
                error="invalid_request",
                message=f"The URL carries a credential in query parameter {parameter[:40]!r}. Send the token in the "
                "'Authorization: Bearer <token>' header instead, because URLs are kept in logs and histories. "
                "Revoke that token with `order3 token revoke` if it was a real one.",
            )

        if scope["method"] == "POST" and not headers.get("content-type", "").lower().startswith("application/json"):
            return refusal(
                400,
                error="invalid_request",
                message=f"Content-Type {headers.get('content-type', '')[:100]!r} is not accepted; send JSON-RPC "
                "messages with 'Content-Type: application/json'.",
            )

        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_request_body:
            return self._too_large()
        return None

    def _check_rate(self, caller: Caller, request_id: str | int | None) -> Response | None:
        """Return a 429 refusal when the caller's token has used up its rate limit."""
        wait = self.limiter.check(caller.token_id)  # type: ignore[arg-type]
        if wait <= 0:
            return None
        logger.debug("rate limit reached by token %s", caller.token_id)
        retry_after = max(1, math.ceil(wait))
        return refusal(
            429,
            error="rate_limited",
            message=f"Token {caller.token_id} sent more than {self.limiter.burst} requests in a burst or more than "
            f"{self.limiter.rate:g} per second; retry after {wait:.2f} s (Retry-After: {retry_after}).",
            request_id=request_id,
            headers={"Retry-After": str(retry_after)},
            details={"retry_after": round(wait, 3)},
        )

    async def _authenticate(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: Headers,
        client: str,
        *,
        request_id: str | int | None,
        action: str,
    ) -> tuple[Caller, str] | None:
        """Return the caller and secret of the request's bearer token, or send a 401 and return None."""
        secret, problem = bearer_secret(headers)
        if secret is None:
            if problem == "missing":
                message = (
                    "The request has no Authorization header. Send 'Authorization: Bearer <token>' with a token "
                    "from `order3 token create`."
                )
                challenge = bearer_challenge()
                error = "missing_token"
            else:
                message, challenge, error = problem, bearer_challenge(error="invalid_request", error_description=problem), "invalid_request"
            logger.info("rejected a request from %s: %s", client, error)
            response = refusal(401, error=error, message=message, request_id=request_id, headers={"WWW-Authenticate": challenge})
            await response(scope, receive, send)
            return None

        try:
            caller = await self.app.authenticate(
                secret, channel="mcp", action=action, request_id="" if request_id is None else str(request_id)[:100]
            )
            return caller, secret
        except PermissionDeniedError as exc:
            # A revoked or expired token's open sessions (and standing GET streams) end too.
            self.servers.close_secret(hash_secret(secret))
            logger.info("rejected a request from %s: %s", client, exc.message)
            challenge = bearer_challenge(error="invalid_token", error_description=exc.message)
            response = refusal(
                401, error="invalid_token", message=exc.message, request_id=request_id, headers={"WWW-Authenticate": challenge}
            )
            await response(scope, receive, send)
            return None

    async def _reject_out_of_scope(self, entry: TokenServer, body: bytes, scope: Scope, receive: Receive, send: Send) -> bool:
        """Send 403 for a tools/call of a tool outside the token's scopes, record it, and return True.

        The MCP authorization spec responds to a request whose token lacks a scope with
        HTTP 403 and `WWW-Authenticate: Bearer error="insufficient_scope"`, so the
        refusal happens here rather than as a tool error inside the session.
        """
        for call in _tool_calls(body):
            name = call["params"]["name"]
            if name not in entry.tool_names:
                continue  # The SDK rejects an unknown tool itself, and the server records it.
            try:
                self.app.check_scope(entry.caller, name)
            except PermissionDeniedError as exc:
                scope_needed = required_scope(name)
                arguments = call["params"].get("arguments")
                # NOTE: this refusal happens before the MCP session reads the request, so
                # its event has no client name, unlike refusals recorded by Order3Server.
                await self.app.record_failure(
                    entry.caller,
                    name,
                    exc.outcome,
                    redact(arguments if isinstance(arguments, dict) else {}),
                    "",
                    str(call.get("id", ""))[:100],
                    exc.message,
                )
                logger.info("rejected %s for token %s: insufficient scope %r", name, entry.caller.token_id, scope_needed)
                challenge = bearer_challenge(error="insufficient_scope", scope=scope_needed, error_description=exc.message)
                response = refusal(
                    403,
                    error="insufficient_scope",
                    message=f"Insufficient scope: {exc.message}",
                    request_id=call.get("id"),
                    headers={"WWW-Authenticate": challenge},
                    details={"scope": scope_needed, "tool": name},
                )
                await response(scope, receive, send)
                return True
        return False

    def _too_large(self) -> Response:
        return refusal(
            413,
            error="request_too_large",
            message=f"The request body is larger than {self.max_request_body} bytes, the most this server accepts. "
            "Send fewer or shorter arguments, for example split a long draft into several.",
        )


def _tool_calls(body: bytes) -> list[dict[str, Any]]:
    """Return the well-formed tools/call requests in a JSON-RPC body (one message or a batch)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return []  # The SDK responds to malformed JSON with a parse error.
    messages = parsed if isinstance(parsed, list) else [parsed]
    return [
        message
        for message in messages
        if isinstance(message, dict)
        and message.get("method") == "tools/call"
        and isinstance(message.get("params"), dict)
        and isinstance(message["params"].get("name"), str)
    ]


def _describe_request(body: bytes) -> tuple[str | int | None, str]:
    """Return the id and the action of a single JSON-RPC request: the tool name of a tools/call, else the method.

    A batch, a notification or a body that is not JSON gives no id and the action "authenticate".
    """
    try:
        message = json.loads(body) if body else None
    except ValueError:
        return None, "authenticate"
    if not isinstance(message, dict):
        return None, "authenticate"
    request_id = message.get("id")
    if not isinstance(request_id, (str, int)) or isinstance(request_id, bool):
        request_id = None
    method = message.get("method")
    if not isinstance(method, str) or not method:
        return request_id, "authenticate"
    params = message.get("params")
    if method == "tools/call" and isinstance(params, dict) and isinstance(params.get("name"), str) and params["name"]:
        return request_id, params["name"][:60]
    return request_id, method[:60]


def _logged(scope: Scope, send: Send) -> Send:
    """Wrap `send` to log one access line per response, with the path but never the query string.

    uvicorn's own access log is off because it prints the whole URL, and a
    query string may carry a credential that the request is about to be refused for.
    """

    async def send_and_log(message: Message) -> None:
        if message["type"] == "http.response.start":
            logger.info(
                '%s - "%s %s HTTP/%s" %d',
                _client_address(scope),
                scope.get("method", ""),
                scope.get("path", "")[:200],
                scope.get("http_version", "1.1"),
                message["status"],
            )
        await send(message)

    return send_and_log


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "unknown"
