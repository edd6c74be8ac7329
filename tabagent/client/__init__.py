"""Tab Agent's gRPC client SDK: stream a song to a gateway, get typed events back.

    from tabagent.client import Client, Notes, process_config

    with Client("localhost:50050") as client:
        for event in client.process("song.mp3", process_config(video=True), out_dir="out"):
            if isinstance(event, Notes):
                print(event.part, len(event.notes), "notes final up to", event.final_until)

`AsyncClient` is the asyncio flavour. Errors are the tabagent.errors classes mapped from
the gRPC status; a song the gateway refused before answering (busy, not ready) is retried
with backoff, never one it has started. See docs/sdk.md.
"""

from tabagent.client._async import AsyncClient
from tabagent.client._config import process_config
from tabagent.client._events import (
    Artifact,
    Done,
    Event,
    Notes,
    PartStarted,
    Progress,
    Started,
    VideoFragment,
)
from tabagent.client._sync import Client
from tabagent.errors import (
    AudioTooLong,
    BadConfig,
    Cancelled,
    DeadlineExceeded,
    InvalidInput,
    ModelError,
    NotReady,
    Overloaded,
    TabAgentError,
    Unauthenticated,
    UnreadableAudio,
    UpstreamError,
)

__all__ = [
    "AsyncClient",
    "Client",
    "process_config",
    "Event",
    "Started",
    "Progress",
    "PartStarted",
    "Notes",
    "VideoFragment",
    "Artifact",
    "Done",
    "TabAgentError",
    "InvalidInput",
    "UnreadableAudio",
    "AudioTooLong",
    "BadConfig",
    "Overloaded",
    "NotReady",
    "Cancelled",
    "DeadlineExceeded",
    "ModelError",
    "Unauthenticated",
    "UpstreamError",
]
