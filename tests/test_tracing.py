"""One trace per song across the gateway and the three services, in process, real models.

The whole chain runs on loopback gRPC in this process (launcher.embedded.LocalChain: a tiny
random-weight Demucs bag in the real format, real Basic Pitch, the tab renderer), with an
in-memory exporter on the process's tracer provider. Every service stamps its spans with
`tabagent.service`, which tells the four apart here as `service.name` does across processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from gateway_fixtures import Collected, collect, write_audio
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from evalkit.examples import make_song
from launcher.embedded import LocalChain
from separator_svc.tiny import build_tiny_bag
from tabagent import telemetry
from tabagent.client import AsyncClient, process_config

pytestmark = pytest.mark.timeout(300)

SONG_SECONDS = 3.0
SERVICES = {
    "gateway": "tabagent.v1.Gateway/Process",
    "separator": "tabagent.v1.Separator/Separate",
    "transcriber": "tabagent.v1.Transcriber/Transcribe",
    "video": "tabagent.v1.VideoRenderer/Render",
}
STAGES = ("decode", "separate", "transcribe", "beats", "render")


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    telemetry.setup("tabagent-tests", spans)
    yield spans
    spans.shutdown()  # the provider stays for the session; this exporter stops keeping spans


@pytest.fixture(scope="module")
async def chain(tmp_path_factory: pytest.TempPathFactory, exporter: InMemorySpanExporter) -> AsyncIterator[LocalChain]:
    repo = build_tiny_bag(tmp_path_factory.mktemp("demucs"), "htdemucs", segment=2.0)
    async with LocalChain(video=True, model_dir=str(repo)) as c:
        yield c


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio(tmp_path_factory.mktemp("songs") / "clip.wav", make_song(SONG_SECONDS, seed=11).mix)


@dataclass
class Trace:
    """The finished spans of one song, with the client's root span."""

    root: ReadableSpan
    spans: list[ReadableSpan]
    got: Collected

    def named(self, name: str, service: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans if s.name == name
                and (service is None or s.attributes.get(telemetry.SERVICE_ATTRIBUTE) == service)]

    def one(self, name: str, service: str | None = None) -> ReadableSpan:
        found = self.named(name, service)
        assert len(found) == 1, f"{len(found)} spans named {name!r} ({service})"
        return found[0]

    def parent(self, span: ReadableSpan) -> ReadableSpan | None:
        if span.parent is None:
            return None
        found = [s for s in self.spans if s.context.span_id == span.parent.span_id]
        assert found, f"the parent of {span.name} is missing from the trace"
        return found[0]

    def ancestors(self, span: ReadableSpan) -> list[ReadableSpan]:
        chain = []
        parent = self.parent(span)
        while parent is not None:
            chain.append(parent)
            parent = self.parent(parent)
        return chain


async def traced_song(chain: LocalChain, exporter: InMemorySpanExporter, clip: Path, video: bool,
                      name: str = "client") -> tuple[ReadableSpan, Collected]:
    """One song under a client span, through a channel that propagates it."""
    tracer = telemetry.tracer(__name__)
    config = process_config(video=True, size=(160, 96), fps=8) if video else process_config()
    async with AsyncClient(chain.gateway_addr, retries=0) as client:
        with tracer.start_as_current_span(name):
            got = await collect(client, clip, config)
    assert got.done is not None
    root = [s for s in exporter.get_finished_spans() if s.name == name]
    return root[-1], got


def in_trace(exporter: InMemorySpanExporter, root: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.context.trace_id == root.context.trace_id]


@pytest.fixture(scope="module")
async def song_trace(chain: LocalChain, exporter: InMemorySpanExporter, clip: Path) -> Trace:
    exporter.clear()
    root, got = await traced_song(chain, exporter, clip, video=True)
    return Trace(root, in_trace(exporter, root), got)


def test_one_trace_with_a_server_span_per_service(song_trace: Trace, exporter: InMemorySpanExporter) -> None:
    # Every span the song produced, in all four services, is in the client's trace.
    everything = exporter.get_finished_spans()
    assert {s.context.trace_id for s in everything} == {song_trace.root.context.trace_id}
    servers = [s for s in song_trace.spans if s.kind == SpanKind.SERVER]
    by_service: dict[str, list[str]] = {}
    for s in servers:
        by_service.setdefault(s.attributes[telemetry.SERVICE_ATTRIBUTE], []).append(s.name)
    assert by_service == {
        "gateway": [SERVICES["gateway"]],
        "separator": [SERVICES["separator"]],
        "transcriber": [SERVICES["transcriber"]] * 2,  # guitar and bass
        "video": [SERVICES["video"]],
    }
    song_id = song_trace.got.started
    for s in servers:
        assert s.attributes["song.id"] == song_id
        assert s.status.is_ok
    # Every span of the song names the service whose work it is (all but the client's).
    client = {song_trace.root.context.span_id}
    unnamed = [s.name for s in song_trace.spans if telemetry.SERVICE_ATTRIBUTE not in s.attributes
               and s.context.span_id not in client and s.parent.span_id not in client]
    assert not unnamed


def test_service_spans_descend_from_the_gateway(song_trace: Trace) -> None:
    t = song_trace
    gateway = t.one(SERVICES["gateway"], "gateway")
    # client span -> its CLIENT call -> the gateway's SERVER span
    call = t.parent(gateway)
    assert call is not None and call.kind == SpanKind.CLIENT and t.parent(call) is t.root
    song = t.one("song", "gateway")
    assert t.parent(song) is gateway
    for service, method in SERVICES.items():
        if service == "gateway":
            continue
        for server in t.named(method, service):
            up = t.ancestors(server)
            # SERVER <- CLIENT call (gateway) <- stage span <- song <- gateway SERVER
            assert up[0].kind == SpanKind.CLIENT and up[0].name == "/" + method
            assert up[0].attributes[telemetry.SERVICE_ATTRIBUTE] == "gateway"
            assert up[1].name in STAGES and up[2] is song and up[3] is gateway
            assert up[-1] is t.root
            # A callee lies within its caller.
            assert up[0].start_time <= server.start_time and server.end_time <= up[0].end_time + 5_000_000


def _under(t: Trace, span: ReadableSpan, server: ReadableSpan) -> bool:
    return any(a is server for a in t.ancestors(span))


def test_segment_spans_under_each_service(song_trace: Trace) -> None:
    t = song_trace
    separator = t.one(SERVICES["separator"], "separator")
    segments = t.named("separate.segment", "separator")
    # 3 s of audio in 2 s segments with 25 % overlap (1.5 s stride): segments at 0, 1.5 s.
    assert len(segments) >= 2
    for seg in segments:
        assert _under(t, seg, separator)
        assert t.parent(seg).name == "separate.step"
        a = seg.attributes
        assert a["model.name"] and a["device"] == "cpu" and a["batch.size"] == 1
        assert 0 < a["audio.seconds"] <= 2.0 and a["audio.offset"] >= 0
    offsets = sorted(s.attributes["audio.offset"] for s in segments)
    assert offsets == pytest.approx([1.5 * i for i in range(len(segments))])  # the stride
    forwards = t.named("separate.forward", "separator")
    assert {t.parent(f).name for f in forwards} == {"separate.segment"}
    assert all(f.attributes["batch.size"] == 1 for f in forwards)
    steps = t.named("separate.step", "separator")
    assert sum(s.attributes["audio.seconds"] for s in steps) == pytest.approx(SONG_SECONDS, abs=0.01)

    for server in t.named(SERVICES["transcriber"], "transcriber"):
        part = server.attributes["tabagent.part"]
        model = [s for s in t.named("transcribe.model") if t.parent(s) is server]
        assert model, f"no model spans under the {part} stream"
        for span in model:
            a = span.attributes
            assert a["model.name"] == "basic-pitch" and a["device"] == "cpu" and a["part"] == part
            assert a["batch.size"] >= 1 and a["windows"] >= 1 and a["audio.seconds"] > 0
            assert a["song.id"] == t.got.started
        # The windows cover the song: ~1.64 s of new audio per window.
        assert sum(s.attributes["audio.seconds"] for s in model) >= SONG_SECONDS
        assert {s.name for s in t.spans if t.parent(s) is server} >= {
            "transcribe.windows", "transcribe.model", "transcribe.notes"}

    video = t.one(SERVICES["video"], "video")
    assert video.attributes["song.id"] == t.got.started
    steps = t.named("render.step", "video")
    assert steps and all(t.parent(s) is video for s in steps)
    for span in steps:
        a = span.attributes
        assert a["batch.size"] >= 1 and a["audio.seconds"] == pytest.approx(a["batch.size"] / 8)
        assert a["model.name"] == "procedural" and a["device"] == "cpu"
    # Frames cover the song (plus the AAC priming before its start).
    assert sum(s.attributes["audio.seconds"] for s in steps) >= SONG_SECONDS


def exclusive_shares(spans: Sequence[ReadableSpan], start: int, end: int) -> dict[str, float]:
    """Each stage's share of the song's wall time: every instant is split evenly among the
    stages running then, so the shares add up to the time covered by any stage."""
    edges = sorted({start, end, *(max(start, min(end, t)) for s in spans for t in (s.start_time, s.end_time))})
    shares: dict[str, float] = {s.name: 0.0 for s in spans}
    for lo, hi in zip(edges, edges[1:], strict=False):
        running = [s for s in spans if s.start_time <= lo and s.end_time >= hi]
        for s in running:
            shares[s.name] += (hi - lo) / len(running) / 1e9
    return shares


def test_stage_durations_add_up_to_the_song(song_trace: Trace) -> None:
    t = song_trace
    song = t.one("song", "gateway")
    stages = [s for s in t.spans if t.parent(s) is song]
    assert sorted({s.name for s in stages}) == sorted(STAGES)
    for s in stages:  # every stage lies within the song
        assert song.start_time <= s.start_time <= s.end_time <= song.end_time
    song_seconds = (song.end_time - song.start_time) / 1e9
    shares = exclusive_shares(stages, song.start_time, song.end_time)
    # No unexplained time: the stages' exclusive shares add up to the song's wall time.
    assert sum(shares.values()) == pytest.approx(song_seconds, rel=0.05, abs=0.02), shares
    assert all(v > 0 for v in shares.values())
    # The gateway's own numbers agree with the trace.
    assert t.got.done is not None
    assert t.got.done.wall_seconds == pytest.approx(song_seconds, abs=0.05)
    assert song.attributes["audio.seconds"] == pytest.approx(SONG_SECONDS, abs=0.01)


async def test_concurrent_songs_keep_their_own_traces(chain: LocalChain, exporter: InMemorySpanExporter,
                                                      clip: Path) -> None:
    """Spans from worker threads and batchers land in their own song's trace."""
    exporter.clear()
    results = await asyncio.gather(*(traced_song(chain, exporter, clip, video=False, name=f"client-{i}")
                                     for i in range(2)))
    spans = exporter.get_finished_spans()
    assert len({s.context.trace_id for s in spans}) == 2
    for root, got in results:
        mine = in_trace(exporter, root)
        ids = {s.attributes["song.id"] for s in mine if "song.id" in s.attributes}
        assert ids == {got.started}
        assert len([s for s in mine if s.name == "separate.segment"]) >= 2
        assert len([s for s in mine if s.kind == SpanKind.SERVER]) == 4  # gateway, separator, 2 parts
