"""Helpers for bidirectional stream handlers: errors to status codes, the config, read-ahead."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import grpc

from tabagent.errors import BadConfig, TabAgentError, rpc_status

log = logging.getLogger(__name__)

T = TypeVar("T")

Handler = Callable[..., AsyncIterator[T]]


def grpc_stream_errors(service: str) -> Callable[[Handler[T]], Handler[T]]:
    """Decorate an async-generator handler so errors end the stream with the right status.

    TabAgentError subclasses become their own code and message; anything unexpected is
    logged with its traceback and becomes INTERNAL with a short message (no stack trace
    reaches the caller). Cancellation propagates untouched.
    """

    def decorate(fn: Handler[T]) -> Handler[T]:
        @functools.wraps(fn)
        async def wrapper(self: Any, request_iterator: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[T]:
            requests = _Counted(request_iterator)
            try:
                async for response in fn(self, requests, context):
                    yield response
            except TabAgentError as exc:
                log.info("%s stream ended: %s %s", service, exc.code.name, exc.message)
                if not requests.read:
                    await requests.take_first()
                await context.abort(exc.code, exc.message)
            except (asyncio.CancelledError, grpc.aio.AbortError):
                raise
            except grpc.RpcError as exc:  # a nested call failed and was not wrapped
                code, details = rpc_status(exc)
                log.warning("%s: downstream error %s", service, exc)
                await context.abort(code, f"{service}: downstream call failed: {details}")
            except Exception as exc:
                log.exception("%s: unexpected failure", service)
                await context.abort(
                    grpc.StatusCode.INTERNAL,
                    f"{service} failed unexpectedly ({type(exc).__name__}); the error is logged",
                )

        return wrapper

    return decorate


class _Counted:
    """A request stream that knows whether the handler has read from it.

    A refusal (busy, not ready, no token) sent while the client is still writing its first
    message reaches the client as grpc's write failure, "Internal error from Core", not
    as the status sent (grpc/grpc#36066): a handler that refuses before reading anything
    reads that first message first, so the client sees RESOURCE_EXHAUSTED or UNAVAILABLE.
    """

    FIRST_WAIT = 2.0

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.read = False

    def __aiter__(self) -> _Counted:
        return self

    async def __anext__(self) -> Any:
        self.read = True
        return await self.inner.__anext__()

    async def take_first(self) -> None:
        try:
            await asyncio.wait_for(self.__anext__(), self.FIRST_WAIT)
        except Exception:  # nothing came, or the client is gone: refuse anyway
            pass


END_OF_AUDIO = object()  # put in a read-ahead queue after the last audio chunk


async def read_audio_ahead(request_iterator: AsyncIterator[Any], validator: Any, queue: asyncio.Queue[Any],
                           rpc: str) -> None:
    """Read and validate the AudioChunks that follow a stream's config into a bounded queue.

    A full queue stops the reading, so HTTP/2 flow control slows the client down instead
    of memory growing. The queue ends with END_OF_AUDIO, or with the exception that
    stopped the reading (the handler ends the stream with it).

    Args:
        request_iterator: the rest of the request stream (after the config message).
        validator: a tabagent.audio.ChunkValidator for this stream.
        queue: where the validated (frames, channels) arrays go.
        rpc: the RPC's name for messages, e.g. "Separate".
    """
    try:
        async for request in request_iterator:
            if request.WhichOneof("payload") != "audio":
                raise BadConfig(
                    f"only the first {rpc} message may carry a config; "
                    f"got another after {validator.seconds:.2f} s of audio"
                )
            await queue.put(validator.check(request.audio))
        await queue.put(END_OF_AUDIO)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # handed to the handler, which ends the stream with it
        await queue.put(exc)


async def first_message(request_iterator: AsyncIterator[T], what: str) -> T:
    """Read the stream's first message (the config), with a clear error if there is none."""
    try:
        return await request_iterator.__anext__()
    except StopAsyncIteration:
        raise BadConfig(f"{what}: the stream ended before its config message") from None
