"""grpc.health.v1 for one service: NOT_SERVING until warm, SERVING, NOT_SERVING for good on drain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tabagent.errors import NotReady


class Health:
    """grpc.health.v1 for one service, and what its shutdown needs to know.

    Meanings (see docs/operations.md): the service's name and the overall status ("")
    are NOT_SERVING from start-up until the model is warm, SERVING once it is (the
    readiness and start-up probes), and NOT_SERVING again for good once a drain begins.
    Liveness asks for "" and only fails on a process that no longer answers or drains.
    `in_flight` counts the RPCs being worked on (health checks and reflection aside, as
    the server's RequestInterceptor counts them), so a drain knows when the streams it
    waits for are over.
    """

    def __init__(
        self, server: grpc.aio.Server, service_names: Sequence[str],
        in_flight: Callable[[], int] | None = None,
    ) -> None:
        self.servicer = health.aio.HealthServicer()
        self.service_names = list(service_names)
        health_pb2_grpc.add_HealthServicer_to_server(self.servicer, server)
        self.ready = False
        self.draining = False
        self._in_flight = in_flight
        self._changed: asyncio.Event | None = None
        # The aio servicer starts "" as SERVING and set() is async: seed NOT_SERVING for
        # every name now, before the server starts and before any watcher exists.
        for name in ["", *self.service_names]:
            self.servicer._server_status[name] = health_pb2.HealthCheckResponse.NOT_SERVING

    async def set_serving(self, serving: bool) -> None:
        """Mark every service (and the overall status) SERVING or NOT_SERVING.

        Ignored once a drain has begun: a model finishing its warm-up then must not
        put a shutting-down server back into rotation.
        """
        if self.draining:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        self.ready = serving
        for name in ["", *self.service_names]:
            await self.servicer.set(name, status)
        self._notify()

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_ready(self, timeout: float | None) -> bool:
        """Wait until SERVING (True), a drain begins or `timeout` seconds pass (False)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self.ready and not self.draining:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            if self._changed is None:
                self._changed = asyncio.Event()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return False
        return self.ready

    @property
    def in_flight(self) -> int | None:
        """RPCs being worked on now; None when the server does not count them."""
        return self._in_flight() if self._in_flight is not None else None

    async def shutdown(self) -> None:
        """Go NOT_SERVING for good and tell watchers (the graceful drain follows)."""
        self.ready = False
        self.draining = True
        self._notify()
        await self.servicer.enter_graceful_shutdown()


def require_ready(health_state: Health, what: str) -> None:
    """Refuse work while the model is still loading, or once the server drains."""
    if health_state.draining:
        raise NotReady(f"{what} is shutting down; retry (another replica takes the stream)")
    if not health_state.ready:
        raise NotReady(f"{what} is still loading its model; retry when health reports SERVING")
