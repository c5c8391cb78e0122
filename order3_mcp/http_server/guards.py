"""Checks made on every HTTP request before it is authenticated: Host, Origin, credentials in the URL, body size."""

from __future__ import annotations

import ipaddress
from collections import deque
from urllib.parse import parse_qsl, urlsplit

from starlette.datastructures import Headers
from starlette.types import Message, Receive

from store.tokens import TOKEN_PREFIX

# Largest request body accepted, in bytes. Tool arguments are small: a draft with
# a hundred purchase order lines is about 20 KiB of JSON.
MAX_REQUEST_BODY = 1024 * 1024

# Query parameter names that clients and proxies commonly use for credentials.
CREDENTIAL_PARAMETERS = frozenset(
    {
        "token",
        "access_token",
        "id_token",
        "refresh_token",
        "bearer",
        "auth",
        "authorization",
        "api_key",
        "apikey",
        "api-key",
        "key",
        "secret",
        "client_secret",
        "password",
        "passwd",
    }
)


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """Return the Host header values a client of a server listening on `host`:`port` sends."""
    names = {"localhost"}
    if host != "localhost":
        names.add(f"[{host}]" if ":" in host else host)
    else:
        names.update({"127.0.0.1", "[::1]"})
    return frozenset(f"{name}:{port}" for name in names)


def is_loopback_origin(origin: str) -> bool:
    """Return whether an Origin header names a page served from this machine (http or https on loopback)."""
    try:
        parts = urlsplit(origin)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not hostname:
        return False
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def credential_in_query(query_string: bytes) -> str | None:
    """Return the name of a query parameter that looks like a credential, or None."""
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    except ValueError:
        return None
    for name, value in pairs:
        if name.lower() in CREDENTIAL_PARAMETERS or value.strip().startswith(TOKEN_PREFIX):
            return name
    return None


def bearer_secret(headers: Headers) -> tuple[str | None, str]:
    """Return the secret of an `Authorization: Bearer` header, or None and what is wrong with the header."""
    values = headers.getlist("authorization")
    if not values:
        return None, "missing"
    if len(values) > 1:
        return None, "The request has more than one Authorization header; send exactly one."
    scheme, _, secret = values[0].strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer":
        return None, f"The Authorization header uses the {scheme[:20]!r} scheme; send 'Authorization: Bearer <token>'."
    if not secret or " " in secret:
        return None, "The Authorization header must be 'Bearer' followed by one token, with no spaces in the token."
    return secret, ""


async def read_body(receive: Receive, *, limit: int) -> tuple[bytes | None, list[Message]]:
    """Read a whole request body of at most `limit` bytes.

    Returns the body (None when it is longer than `limit`) and the messages read,
    which the caller replays to the next application.
    """
    body = bytearray()
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body.extend(message.get("body", b""))
        if len(body) > limit:
            return None, messages
        if not message.get("more_body", False):
            break
    replayed: Message = {"type": "http.request", "body": bytes(body), "more_body": False}
    trailing = [message for message in messages if message["type"] != "http.request"]
    return bytes(body), [replayed, *trailing]


def replay(messages: list[Message], receive: Receive) -> Receive:
    """Return a receive callable that yields `messages` first, then reads from `receive`."""
    pending = deque(messages)

    async def receive_again() -> Message:
        if pending:
            return pending.popleft()
        return await receive()

    return receive_again
