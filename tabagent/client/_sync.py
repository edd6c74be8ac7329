"""The blocking client: the async client driven on a private event loop thread."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from tabagent.client._async import AsyncClient
from tabagent.client._events import Done, Event
from tabagent.v1 import gateway_pb2

_STOP = object()


class Client:
    """Blocking twin of AsyncClient: `for event in client.process(path, config): ...`.

    Args:
        address: gateway address.
        retries: see AsyncClient.
        timeout: deadline in seconds for a whole song.
    """

    def __init__(self, address: str = "localhost:50050", retries: int = 3, timeout: float | None = None) -> None:
        self.address = address
        self.retries = retries
        self.timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tabagent-client", daemon=True)
        self._thread.start()
        self._client: AsyncClient = asyncio.run_coroutine_threadsafe(self._make(), self._loop).result()

    async def _make(self) -> AsyncClient:
        return AsyncClient(self.address, retries=self.retries, timeout=self.timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result()
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    def process(self, path: str | Path, config: gateway_pb2.ProcessConfig,
                out_dir: str | Path | None = None) -> Iterator[Event]:
        """Send a file and yield events until the song is done (see AsyncClient.process)."""
        events: queue.Queue[object] = queue.Queue(64)

        async def pump() -> None:
            try:
                async for event in self._client.process(path, config, out_dir):
                    await asyncio.to_thread(events.put, event)
            except BaseException as exc:  # handed to the caller's thread
                await asyncio.to_thread(events.put, exc)
            finally:
                await asyncio.to_thread(events.put, _STOP)

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
            if not future.done():
                future.cancel()

    def transcribe(self, path: str | Path, config: gateway_pb2.ProcessConfig,
                   out_dir: str | Path) -> Done:
        """Process a file to completion, writing artifacts into `out_dir`; returns the summary."""
        done = None
        for event in self.process(path, config, out_dir):
            if isinstance(event, Done):
                done = event
        if done is None:
            raise grpc.RpcError("the gateway ended the stream without a summary")
        return done
