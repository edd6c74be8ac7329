"""The blocking client: the async client driven on a private event loop thread."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

from tabagent.client._async import AsyncClient
from tabagent.client._events import Done, Event
from tabagent.errors import UpstreamError
from tabagent.v1 import gateway_pb2

_STOP = object()
_QUEUE_EVENTS = 64   # events buffered ahead of a slow consumer (gRPC flow control beyond)


class Client:
    """Blocking twin of AsyncClient: `for event in client.process(path, config): ...`.

    Safe to use from any thread that is not running an asyncio loop of this client's;
    one song at a time per Client (open several clients for parallel songs).

    Args:
        address: gateway address.
        retries: see AsyncClient.
        timeout: deadline in seconds for a whole song.
        backoff: see AsyncClient.
        api_key: see AsyncClient (default TABAGENT_API_KEY).

    Example:
        with Client("localhost:50050") as client:
            done = client.transcribe("song.mp3", process_config(parts=["bass"]), out_dir="out")
            print(done.notes)
    """

    def __init__(self, address: str = "localhost:50050", retries: int = 3, timeout: float | None = None,
                 *, backoff: float = 0.5, api_key: str | None = None) -> None:
        self.address = address
        self.retries = retries
        self.timeout = timeout
        self._api_key = api_key
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tabagent-client", daemon=True)
        self._thread.start()
        self._client: AsyncClient = asyncio.run_coroutine_threadsafe(self._make(backoff), self._loop).result()

    async def _make(self, backoff: float) -> AsyncClient:
        return AsyncClient(self.address, retries=self.retries, timeout=self.timeout, backoff=backoff,
                           api_key=self._api_key)

    @property
    def attempts(self) -> int:
        """Calls the last process() made (1 + the retries it used)."""
        return self._client.attempts

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the channel and stop the client's thread (idempotent)."""
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()

    def process(self, path: str | Path, config: gateway_pb2.ProcessConfig,
                out_dir: str | Path | None = None) -> Iterator[Event]:
        """Send a file and yield events until the song is done (see AsyncClient.process).

        Leaving the loop early (break, an exception) cancels the song on the gateway.
        """
        events: queue.Queue[object] = queue.Queue(_QUEUE_EVENTS)
        closed = threading.Event()

        def put(item: object) -> None:
            # Blocks while the consumer is behind, gives up once it has gone away.
            while not closed.is_set():
                try:
                    events.put(item, timeout=0.2)
                    return
                except queue.Full:
                    continue

        async def pump() -> None:
            try:
                async with contextlib.aclosing(self._client.process(path, config, out_dir)) as stream:
                    async for event in stream:
                        await asyncio.to_thread(put, event)
                        if closed.is_set():
                            return
            except BaseException as exc:  # handed to the caller's thread
                await asyncio.to_thread(put, exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            finally:
                await asyncio.to_thread(put, _STOP)

        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while True:
                item = events.get()
                if item is _STOP:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item  # type: ignore[misc]
        finally:
            closed.set()
            if not future.done():
                future.cancel()

    def transcribe(self, path: str | Path, config: gateway_pb2.ProcessConfig,
                   out_dir: str | Path) -> Done:
        """Process a file to completion, writing artifacts into `out_dir`; returns the summary.

        Raises:
            tabagent.errors.TabAgentError: as process(); UpstreamError when the stream ends
                without a summary.
        """
        done = None
        for event in self.process(path, config, out_dir):
            if isinstance(event, Done):
                done = event
        if done is None:
            raise UpstreamError("the gateway ended the stream without a summary")
        return done
