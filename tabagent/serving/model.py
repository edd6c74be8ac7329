"""What every service serves: a warm model (the `WarmModel` protocol) and its `ModelInfo`.

Each service has one object in this role (separator_svc.holder, transcriber_svc.holder,
video_svc.holder, the gateway's Downstream). The server is built around it, NOT_SERVING;
`ServiceServer.warm()` awaits `warm()` (load, warm up, the first forward pass), publishes
the info it returns, and only then reports SERVING; `close()` releases threads at exit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tabagent.v1 import audio_pb2

if TYPE_CHECKING:
    from tabagent.metrics import ServiceMetrics


@dataclass(frozen=True)
class ModelInfo:
    """What produces a service's output; sent to clients as tabagent.v1.ModelInfo."""

    name: str
    version: str
    backend: str
    device: str
    fallback: bool = False
    message: str = ""
    sample_rate: int = 0

    def to_proto(self) -> audio_pb2.ModelInfo:
        """Return the wire form of this info."""
        return audio_pb2.ModelInfo(
            name=self.name,
            version=self.version,
            backend=self.backend,
            device=self.device,
            fallback=self.fallback,
            message=self.message,
            sample_rate=self.sample_rate,
        )


class WarmModel(Protocol):
    """A service's model, loaded and warmed once after its server starts."""

    async def warm(self, metrics: ServiceMetrics) -> audio_pb2.ModelInfo | None:
        """Load and warm up (off the event loop); return what serves, None for no model.

        `metrics` is the server's: batch sizes of later model calls go there.
        """
        ...

    async def close(self) -> None:
        """Release the model's threads (the server has stopped)."""
        ...
