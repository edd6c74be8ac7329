"""Each real service's /metrics under load: queue depth, active streams and latency move.

Load goes through real servers (real Basic Pitch, the DSP separator, the tab renderer, the
gateway) and every endpoint is scraped over HTTP, as Prometheus does.
"""

from __future__ import annotations

import asyncio
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from gateway_fixtures import collect, write_audio
from prometheus_client.parser import text_string_to_metric_families
from transcriber_fixtures import warm_model

from evalkit.examples import make_song
from launcher.embedded import LocalChain
from tabagent import tuning
from tabagent.audio import iter_chunks
from tabagent.client import AsyncClient, process_config
from tabagent.metrics import MetricsServer, ServiceMetrics, iter_samples, start_http_server
from tabagent.serving import channel_options
from tabagent.v1 import transcriber_pb2, transcriber_pb2_grpc
from transcriber_svc.config import TranscriberConfig
from transcriber_svc.holder import ModelHolder
from transcriber_svc.server import create_server, serve

pytestmark = pytest.mark.timeout(300)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    list(text_string_to_metric_families(text))  # well-formed
    return text


def value(text: str, name: str, **labels: str) -> float:
    found = [v for got, v in iter_samples(text, name) if labels.items() <= got.items()]
    assert len(found) <= 1, f"{name}{labels} matched {len(found)} samples"
    return found[0] if found else 0.0


async def wait_scrape(url: str, predicate: Callable[[str], bool], timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = await asyncio.to_thread(scrape, url)
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} never reached the expected state:\n{text}")
        await asyncio.sleep(0.02)


# -- the transcriber on its own ------------------------------------------------------------


class HeldStream:
    """A Transcribe stream whose end the test decides (so later ones queue behind it)."""

    def __init__(self, stub: transcriber_pb2_grpc.TranscriberStub, chunks: list) -> None:  # noqa: ANN001
        self.release = asyncio.Event()
        self.chunks = chunks
        self.task = asyncio.create_task(self._run(stub))

    async def _requests(self) -> AsyncIterator[transcriber_pb2.TranscribeRequest]:
        yield transcriber_pb2.TranscribeRequest(config=transcriber_pb2.TranscribeConfig(
            instrument="guitar", part="guitar", tuning=tuning.standard("guitar").to_proto()))
        for chunk in self.chunks:
            yield transcriber_pb2.TranscribeRequest(audio=chunk)
        await self.release.wait()

    async def _run(self, stub: transcriber_pb2_grpc.TranscriberStub) -> float:
        seconds = 0.0
        async for response in stub.Transcribe(self._requests(), timeout=120):
            if response.WhichOneof("payload") == "summary":
                seconds = response.summary.seconds
        return seconds


async def test_transcriber_metrics_move_under_load() -> None:
    metrics = ServiceMetrics("transcriber")
    config = TranscriberConfig(host="127.0.0.1", port=0, metrics_port=0, max_streams=1, max_queue=4)
    holder = ModelHolder.of(warm_model())
    server, port = create_server(config, holder, "127.0.0.1:0", metrics=metrics)
    await server.start()
    http = start_http_server(0, metrics.registry, addr="127.0.0.1")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    try:
        await server.warm()
        idle = await asyncio.to_thread(scrape, http.url)
        svc = {"service": "transcriber"}
        assert value(idle, "tabagent_queue_depth", **svc) == 0
        assert value(idle, "tabagent_active_streams", **svc) == 0
        assert value(idle, "tabagent_model_info", model="basic-pitch", device="cpu", fallback="false") == 1
        assert value(idle, "tabagent_model_load_seconds", **svc) > 0
        assert value(idle, "tabagent_request_seconds_count", method="Transcribe") == 0

        stem = make_song(3.0, seed=31).stems["guitar"][:, None]
        chunks = list(iter_chunks(stem, 44_100, 0.5))
        stub = transcriber_pb2_grpc.TranscriberStub(channel)
        streams = [HeldStream(stub, chunks) for _ in range(3)]
        # One slot: the first stream runs, the other two wait in the queue.
        busy = await wait_scrape(http.url, lambda t: value(t, "tabagent_queue_depth", **svc) == 2
                                 and value(t, "tabagent_active_streams", **svc) == 1)
        assert value(busy, "tabagent_requests_total", method="Transcribe") == 0
        for s in streams:
            s.release.set()
        seconds = await asyncio.gather(*(s.task for s in streams))
        assert seconds == pytest.approx([3.0] * 3, abs=0.01)
        done = await wait_scrape(http.url, lambda t: value(t, "tabagent_requests_total",
                                                           method="Transcribe", code="OK") == 3)
        assert value(done, "tabagent_queue_depth", **svc) == 0
        assert value(done, "tabagent_active_streams", **svc) == 0
        assert value(done, "tabagent_request_seconds_count", method="Transcribe") == 3
        # The queued streams waited for the first: their latency shows it.
        assert value(done, "tabagent_request_seconds_sum", method="Transcribe") > 0
        for stage in ("windows", "model", "notes", "transcribe"):
            assert value(done, "tabagent_stage_seconds_count", stage=stage) > 0, stage
        rtf = value(done, "tabagent_realtime_factor_sum", stage="model") / value(
            done, "tabagent_realtime_factor_count", stage="model")
        assert 0 < rtf < 1  # Basic Pitch runs faster than real time here
        # Windows per forward pass: one each (no batching configured); ~2 windows per 3 s.
        assert value(done, "tabagent_batch_size_count") >= 3 * 2
        assert value(done, "tabagent_batch_size_sum") == value(done, "tabagent_batch_size_count")
        assert value(done, "tabagent_audio_seconds_total", **svc) == pytest.approx(9.0, abs=0.03)
    finally:
        await channel.close()
        await server.stop(0)
        await holder.close()
        http.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_transcriber_serve_exposes_its_registry_on_the_metrics_port() -> None:
    """serve() serves the service's own registry (not prometheus_client's default one)."""
    config = TranscriberConfig(host="127.0.0.1", port=free_port(), metrics_port=free_port(), threads=1)
    running = asyncio.create_task(serve(config))
    url = f"http://127.0.0.1:{config.metrics_port}/metrics"

    def warm(text: str) -> bool:
        return value(text, "tabagent_model_info", service="transcriber", model="basic-pitch") == 1

    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                text = await wait_scrape(url, warm, timeout=60)
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        assert value(text, "tabagent_queue_depth", service="transcriber") == 0
        assert value(text, "tabagent_model_load_seconds", service="transcriber") > 0
        assert "transcriber_streams_active" not in text
        assert value(text, "process_resident_memory_bytes") > 0
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


# -- the whole chain: every service's endpoint ---------------------------------------------


@pytest.fixture()
async def chain(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[LocalChain, dict[str, MetricsServer]]]:
    monkeypatch.setenv("GATEWAY_MAX_STREAMS", "1")  # songs queue at the gateway
    async with LocalChain(video=True) as c:
        servers = {name: start_http_server(0, m.registry, addr="127.0.0.1") for name, m in c.metrics.items()}
        try:
            yield c, servers
        finally:
            for s in servers.values():
                s.close()


METHODS = {"gateway": "Process", "separator": "Separate", "transcriber": "Transcribe", "video": "Render"}


async def test_every_service_endpoint_moves_under_load(chain: tuple[LocalChain, dict[str, MetricsServer]],
                                                       tmp_path: Path) -> None:
    c, endpoints = chain
    assert set(endpoints) == set(METHODS)
    urls = {name: s.url for name, s in endpoints.items()}
    for name, url in urls.items():
        idle = await asyncio.to_thread(scrape, url)
        assert value(idle, "tabagent_queue_depth", service=name) == 0
        assert value(idle, "tabagent_request_seconds_count", method=METHODS[name]) == 0

    clip = write_audio(tmp_path / "clip.wav", make_song(3.0, seed=32).mix)
    config = process_config(video=True, size=(160, 96), fps=8)
    async with AsyncClient(c.gateway_addr, retries=0) as client:
        songs = [asyncio.create_task(collect(client, clip, config)) for _ in range(3)]
        # The gateway takes one song at a time: two wait. Its queue depth says so, and the
        # services show streams at work meanwhile.
        await wait_scrape(urls["gateway"], lambda t: value(t, "tabagent_queue_depth", service="gateway") == 2)
        await wait_scrape(urls["transcriber"], lambda t: value(t, "tabagent_active_streams", service="transcriber") >= 1)
        got = await asyncio.gather(*songs)
    assert all(g.done is not None for g in got)

    streams = {"gateway": 3, "separator": 3, "transcriber": 6, "video": 3}
    for name, url in urls.items():
        text = await wait_scrape(url, lambda t, n=name: value(
            t, "tabagent_requests_total", method=METHODS[n], code="OK") == streams[n])
        assert value(text, "tabagent_queue_depth", service=name) == 0
        assert value(text, "tabagent_active_streams", service=name) == 0
        assert value(text, "tabagent_request_seconds_count", method=METHODS[name]) == streams[name]
        assert value(text, "tabagent_request_seconds_sum", method=METHODS[name]) > 0
        stages = {s["stage"] for s, v in iter_samples(text, "tabagent_stage_seconds_count") if v > 0}
        assert stages, f"{name} recorded no stage latencies"
        assert value(text, "tabagent_audio_seconds_total", service=name) > 0
    gateway = await asyncio.to_thread(scrape, urls["gateway"])
    for stage in ("song", "decode", "separate", "transcribe", "beats", "render"):
        assert value(gateway, "tabagent_stage_seconds_count", stage=stage) == (6 if stage == "transcribe" else 3)
    assert value(gateway, "tabagent_audio_seconds_total", service="gateway") == pytest.approx(9.0, abs=0.05)
    # Songs that waited for the gateway's slot took longer, end to end, than their processing.
    assert value(gateway, "tabagent_request_seconds_sum", method="Process") > value(
        gateway, "tabagent_stage_seconds_sum", stage="song")
