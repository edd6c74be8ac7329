"""A job's event log: chain messages as JSON events, replayed to late subscribers, then live.

Every event gets a sequence number (the SSE `id:`), so a client that reconnects with
`Last-Event-ID` continues where it stopped. Progress is summarised per stage as it
arrives, so a job's status shows how far each stage got without replaying the log.
"""

from __future__ import annotations

import asyncio
import bisect
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from tabagent.notes import Note
from tabagent.tuning import from_proto as tuning_from_proto
from tabagent.v1 import audio_pb2, gateway_pb2

# Event types that end a job's stream.
END_TYPES = ("done", "failed", "cancelled")
# What a restarted job's earlier attempt said that no longer holds (dropped on restart;
# a `restart` event tells live followers to forget it too).
ATTEMPT_TYPES = ("progress", "video", "part", "notes")
# Event types dropped from an ended job's log (compact()).
TRANSIENT_TYPES = ("progress", "video")
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True)
class JobEvent:
    """One event of a job: `type` is the SSE event name, `data` its JSON object."""

    seq: int
    type: str
    data: dict[str, Any]

    def sse(self) -> str:
        """The event in the text/event-stream format."""
        return f"id: {self.seq}\nevent: {self.type}\ndata: {json.dumps(self.data, separators=(',', ':'))}\n\n"


def model_dict(info: audio_pb2.ModelInfo) -> dict[str, Any]:
    """A model's description as JSON."""
    return {"name": info.name, "version": info.version, "backend": info.backend,
            "device": info.device, "fallback": bool(info.fallback), "message": info.message}


def stage_key(stage: str, part: str) -> str:
    """The key of a stage in a job's `stages` ("transcribe:guitar", "separate", ...)."""
    return f"{stage}:{part}" if part else stage


def convert(resp: gateway_pb2.ProcessResponse) -> tuple[str, dict[str, Any]] | None:
    """A chain message as (event type, JSON data); None for messages not sent over HTTP."""
    kind = resp.WhichOneof("payload")
    if kind == "progress":
        p = resp.progress
        return "progress", {"stage": p.stage, "part": p.part, "done_seconds": round(p.done_seconds, 3),
                            "total_seconds": round(p.total_seconds, 3)}
    if kind == "part":
        instrument = "bass" if resp.part.part == "bass" else "guitar"
        tuning = tuning_from_proto(resp.part.tuning, instrument)
        return "part", {"part": resp.part.part, "instrument": instrument, "tuning": tuning.to_dict(),
                        "model": model_dict(resp.part.model)}
    if kind == "notes":
        b = resp.notes
        return "notes", {
            "part": b.part,
            "final_until": round(b.final_until, 4),
            "notes": [Note.from_proto(n).to_dict() for n in b.notes],
            "out_of_range": [{"pitch": n.pitch, "start": round(n.start, 4), "end": round(n.end, 4)}
                             for n in b.out_of_range],
        }
    if kind == "video":
        v = resp.video
        return "video", {"start": round(v.start, 3), "end": round(v.end, 3), "bytes": len(v.data), "init": v.init}
    return None


@dataclass
class EventLog:
    """The events of one job, in order; `follow()` replays them and then waits for more."""

    events: list[JobEvent] = field(default_factory=list)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: dict[str, int] = field(default_factory=dict)
    ended: bool = False
    _seq: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    # Called with every event as it is published (the job manager stores them).
    on_publish: Callable[[JobEvent], None] | None = None

    @classmethod
    def resume(cls, seq: int, on_publish: Callable[[JobEvent], None] | None = None) -> EventLog:
        """A log whose next event is `seq + 1` (a job whose earlier events are stored)."""
        return cls(_seq=seq, on_publish=on_publish)

    @property
    def seq(self) -> int:
        """The number of the last event published."""
        return self._seq

    def publish(self, type_: str, data: dict[str, Any]) -> JobEvent:
        """Append an event and wake every follower."""
        if self.ended:
            raise RuntimeError("the job's log has ended")
        self._seq += 1
        ev = JobEvent(self._seq, type_, data)
        self.events.append(ev)
        if type_ == "progress":
            key = stage_key(data["stage"], data["part"])
            stage = self.stages.setdefault(key, {"done_seconds": 0.0, "total_seconds": 0.0})
            stage["done_seconds"] = max(stage["done_seconds"], data["done_seconds"])
            stage["total_seconds"] = max(stage["total_seconds"], data["total_seconds"])
        elif type_ == "notes":
            self.notes[data["part"]] = self.notes.get(data["part"], 0) + len(data["notes"])
        if type_ in END_TYPES:
            self.ended = True
        if self.on_publish is not None:
            self.on_publish(ev)
        self._wake()
        return ev

    def compact(self) -> None:
        """Drop the progress and video events of an ended job (its stages are summarised;
        the part, note and status events stay, with their ids, for late subscribers)."""
        if self.ended:
            self.events = [e for e in self.events if e.type not in TRANSIENT_TYPES]

    def close(self) -> None:
        """Stop followers without an end event (the process is going away)."""
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self, after: int = 0, keepalive: float = KEEPALIVE_SECONDS) -> AsyncIterator[JobEvent | None]:
        """Every event with seq > `after`, then new ones as they come, until the end event.

        Yields None after `keepalive` seconds without an event (for SSE comments that keep
        proxies from closing an idle connection).
        """
        last = after
        while True:
            events = self.events
            i = bisect.bisect_right(events, last, key=_seq)
            while i < len(events) and self.events is events:
                ev = events[i]
                i += 1
                last = ev.seq
                yield ev
            if self.events is not events:
                continue  # compacted while this follower was away: find its place again
            if self.ended:
                return
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), keepalive)
            except TimeoutError:
                yield None


def _seq(event: JobEvent) -> int:
    return event.seq
