"""Tab Agent's exception hierarchy and its one mapping to gRPC status codes.

    TabAgentError                 base of everything raised on purpose
    ├── InvalidInput              the caller sent something unusable  -> INVALID_ARGUMENT
    │   ├── UnreadableAudio       not audio, empty, truncated, corrupt
    │   ├── AudioTooLong          longer than the configured limit
    │   └── BadConfig             a config field out of range
    ├── Overloaded                stream/queue limits reached           -> RESOURCE_EXHAUSTED
    ├── NotReady                  model still loading, or a service gone -> UNAVAILABLE
    ├── Unauthenticated           no token, or not one the server takes  -> UNAUTHENTICATED
    ├── UpstreamError             a downstream service failed           -> its own code
    ├── Cancelled                 the caller went away                  -> CANCELLED
    ├── DeadlineExceeded          the caller's deadline passed          -> DEADLINE_EXCEEDED
    └── ModelError                a model failed on valid input          -> INTERNAL

Each class carries its status (`code`, and `http_status` for the HTTP API): services
raise these and `tabagent.serving.grpc_stream_errors` ends the stream with that code in
one place; `error_for_status` maps statuses back to the same classes (the client SDK,
`tabagent.client`, raises them).
"""

from __future__ import annotations

import grpc


class TabAgentError(Exception):
    """Base class; `code` is the gRPC status the error maps to."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(TabAgentError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400


class UnreadableAudio(InvalidInput):
    http_status = 415


class AudioTooLong(InvalidInput):
    http_status = 413


class BadConfig(InvalidInput):
    http_status = 422


class Overloaded(TabAgentError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429


class NotReady(TabAgentError):
    code = grpc.StatusCode.UNAVAILABLE
    http_status = 503


class Unauthenticated(TabAgentError):
    code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401


class UpstreamError(TabAgentError):
    """A service further down the chain failed; keeps that service's code."""

    http_status = 502

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        super().__init__(message)
        self.code = code
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            self.http_status = 400
        elif code == grpc.StatusCode.UNAVAILABLE:
            self.http_status = 503
        elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            self.http_status = 429
        elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.http_status = 504


class Cancelled(TabAgentError):
    code = grpc.StatusCode.CANCELLED
    http_status = 499


class DeadlineExceeded(TabAgentError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 504


class ModelError(TabAgentError):
    code = grpc.StatusCode.INTERNAL
    http_status = 500


_BY_CODE: dict[grpc.StatusCode, type[TabAgentError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInput,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Overloaded,
    grpc.StatusCode.UNAVAILABLE: NotReady,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.INTERNAL: ModelError,
}


def error_for_status(code: grpc.StatusCode, message: str) -> TabAgentError:
    """Map a gRPC status back to the exception class that produced it.

    Args:
        code: the status code received.
        message: the status details.

    Returns:
        An instance of the matching TabAgentError subclass.
    """
    cls = _BY_CODE.get(code)
    if cls is None:
        return UpstreamError(message, code)
    return cls(message)


# grpc.aio's status when a message could not be written because the call had ended
# underneath it (the peer went away, or answered while a write was in flight): the real
# status is lost (grpc/grpc#36066). It is never a bug of the service called.
CORE_INTERNAL = "Internal error from Core"


def rpc_status(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str]:
    """(code, details) of a failed call; a lost write ("Internal error from Core") reads
    as UNAVAILABLE, which is what it is: the call's connection or stream is gone."""
    code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    details = (exc.details() if hasattr(exc, "details") else None) or str(exc)
    if code == grpc.StatusCode.INTERNAL and details == CORE_INTERNAL:
        return grpc.StatusCode.UNAVAILABLE, "the connection was lost"
    return code, details


def from_rpc_error(exc: grpc.RpcError, service: str) -> TabAgentError:
    """Wrap an error from a downstream service so the caller sees where it came from.

    INVALID_ARGUMENT keeps its message as is (it is about the caller's input);
    anything else names the service. A service that is gone or busy says "retry"; a
    token the service refuses is the operator's to fix (the gateway's and the services'
    TABAGENT_SERVICE_TOKEN differ), never the caller's.
    """
    code, details = rpc_status(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        return UpstreamError(f"{service} is unavailable ({details}); retry the song", code)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return UpstreamError(f"{service} is busy ({details}); retry later", code)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return UpstreamError(f"{service} refused the gateway's service token: TABAGENT_SERVICE_TOKEN "
                             "differs between the gateway and the service (an operator must fix it)",
                             grpc.StatusCode.INTERNAL)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInput(details)
    if code == grpc.StatusCode.CANCELLED:
        return Cancelled(f"{service}: {details}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{service}: deadline exceeded")
    return UpstreamError(f"{service} failed: {details}", code)
