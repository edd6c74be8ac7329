"""Who may call: a bearer token on every RPC but health checks, checked by servers, sent by clients.

Two tokens travel this way, both as `authorization: Bearer <token>` metadata:

    the user's API key      client (SDK, CLI) -> gateway; the same key as the HTTP API
    the service token       gateway -> separator, transcriber, video; a shared secret
                            (TABAGENT_SERVICE_TOKEN, from a Kubernetes Secret)

A server is given a check (`Authenticator`: token -> allowed) and refuses every other
caller with UNAUTHENTICATED before its handler runs (the check lives in the one server
interceptor, `tabagent.serving.interceptors`; health checks stay open for probes). With
no check configured every caller passes, which is what a laptop on loopback wants.
Clients add the metadata with `BearerToken`, an aio client interceptor for all four
kinds of call, so stubs and helpers need not know about it.
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc

METADATA_KEY = "authorization"
SERVICE_TOKEN_ENV = "TABAGENT_SERVICE_TOKEN"
REFLECTION_ENV = "TABAGENT_GRPC_REFLECTION"

Authenticator = Callable[[str], bool]
"""Takes the bearer token a call carried ("" for none) and says whether it may proceed."""


def bearer(metadata: Sequence[tuple[str, Any]] | None) -> str:
    """The token of a call's `authorization: Bearer <token>` metadata, "" when there is none."""
    for key, value in metadata or ():
        if key.lower() == METADATA_KEY and isinstance(value, str):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer":
                return token.strip()
    return ""


def token_check(*tokens: str) -> Authenticator | None:
    """A check that lets through exactly these tokens; None (open) when none is set.

    The comparison takes the same time whatever the token, so the check does not tell
    an attacker how much of a guess was right.
    """
    wanted = [t.encode() for t in tokens if t]
    if not wanted:
        return None

    def check(token: str) -> bool:
        given = token.encode()
        ok = False
        for w in wanted:
            ok |= hmac.compare_digest(given, w)
        return ok and bool(given)

    return check


def service_token_from_env() -> str:
    """The shared gateway-to-service token (TABAGENT_SERVICE_TOKEN), "" when unset."""
    return os.environ.get(SERVICE_TOKEN_ENV, "").strip()


def reflection_from_env() -> bool:
    """Whether servers answer gRPC reflection (TABAGENT_GRPC_REFLECTION=1); off by default."""
    raw = os.environ.get(REFLECTION_ENV, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SystemExit(f"{REFLECTION_ENV}={raw!r}: use 1 or 0")


def refusal(kind: str, handler: Any, message: str) -> Any:
    """The method handler of kind `kind` that ends the call with UNAUTHENTICATED.

    A handler with a request stream reads the first message before refusing: a client
    still writing it when the status arrives would otherwise see grpc's write failure
    ("Internal error from Core") instead of UNAUTHENTICATED (grpc/grpc#36066).
    """

    async def drain_first(request_iterator: Any) -> None:
        try:
            await asyncio.wait_for(request_iterator.__anext__(), 2.0)
        except BaseException:  # noqa: BLE001 - nothing, an error or a timeout: refuse anyway
            pass

    if kind == "unary_unary":
        async def uu(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        fn: Any = uu
    elif kind == "unary_stream":
        async def us(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield None  # pragma: no cover - abort raises
        fn = us
    elif kind == "stream_unary":
        async def su(request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
            await drain_first(request_iterator)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
        fn = su
    else:
        async def ss(request_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            await drain_first(request_iterator)
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message)
            yield None  # pragma: no cover - abort raises
        fn = ss
    return handler._replace(**{kind: fn})


def _with_token(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*(details.metadata or ()))
    metadata.add(METADATA_KEY, f"Bearer {token}")
    return grpc.aio.ClientCallDetails(details.method, details.timeout, metadata,
                                      details.credentials, details.wait_for_ready)


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_token(client_call_details, self.token), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await continuation(_with_token(client_call_details, self.token), request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_stream_unary(self, continuation: Any, client_call_details: Any,
                                     request_iterator: Any) -> Any:
        return await continuation(_with_token(client_call_details, self.token), request_iterator)


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self.token = token

    async def intercept_stream_stream(self, continuation: Any, client_call_details: Any,
                                      request_iterator: Any) -> Any:
        return await continuation(_with_token(client_call_details, self.token), request_iterator)


def bearer_interceptors(token: str) -> list[Any]:
    """aio client interceptors that send `authorization: Bearer <token>` on every call
    (none when `token` is empty)."""
    if not token:
        return []
    return [_UnaryUnary(token), _UnaryStream(token), _StreamUnary(token), _StreamStream(token)]
