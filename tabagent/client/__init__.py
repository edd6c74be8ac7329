"""Tab Agent's gRPC client SDK: stream a song to a gateway, get typed events back.

    from tabagent.client import Client, process_config

    with Client("localhost:50050") as client:
        for event in client.process("song.mp3", process_config(video=True), out_dir="out"):
            print(event)
"""

from tabagent.client._async import AsyncClient
from tabagent.client._config import process_config
from tabagent.client._events import Artifact, Done, Event, Notes, PartStarted, Progress, Started, VideoFragment
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
    "UpstreamError",
]
