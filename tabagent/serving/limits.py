"""Backpressure: a bound on the streams a service works on at once, with a bounded queue."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from tabagent.errors import BadConfig, Overloaded


@dataclass
class StreamLimiter:
    """Bounds the streams a service works on at once, with a bounded wait queue.

    Up to `max_active` streams run; up to `max_queued` more wait for a slot; beyond
    that a new stream is refused at once with RESOURCE_EXHAUSTED (never an OOM).
    """

    max_active: int
    max_queued: int
    name: str = "service"

    def __post_init__(self) -> None:
        if self.max_active < 1 or self.max_queued < 0:
            raise BadConfig("max_active must be >= 1 and max_queued >= 0")
        self._sem = asyncio.Semaphore(self.max_active)
        self.active = 0
        self.queued = 0

    @property
    def depth(self) -> int:
        """Streams waiting for a slot: the autoscaling signal."""
        return self.queued

    def slot(self) -> _Slot:
        """An async context manager holding one slot for the stream's lifetime."""
        return _Slot(self)


class _Slot:
    def __init__(self, limiter: StreamLimiter) -> None:
        self.limiter = limiter
        self.held = False

    async def __aenter__(self) -> _Slot:
        lim = self.limiter
        if lim.active >= lim.max_active and lim.queued >= lim.max_queued:
            raise Overloaded(
                f"{lim.name} is busy: {lim.active} streams running and {lim.queued} queued "
                f"(limits {lim.max_active}+{lim.max_queued}); retry later"
            )
        lim.queued += 1
        try:
            await lim._sem.acquire()
        finally:
            lim.queued -= 1
        lim.active += 1
        self.held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.held:
            self.limiter.active -= 1
            self.limiter._sem.release()
            self.held = False
