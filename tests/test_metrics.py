"""tabagent.metrics under simulated load: a real grpc.aio server, a real /metrics endpoint."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tabagent import serving
from tabagent.errors import BadConfig
from tabagent.metrics import (
    REQUEST_BUCKETS,
    ServiceMetrics,
    code_name,
    iter_samples,
    new_registry,
    start_http_server,
    status_for,
)

METHOD = "/tabagent.test.Load/Work"


def scrape(url: str) -> str:
    """GET /metrics the way Prometheus does, checking the exposition parses."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    list(text_string_to_metric_families(text))  # raises on malformed output
    return text


def value(text: str, name: str, **labels: str) -> float:
    """The one sample of `name` whose labels include `labels` (0 when there is none)."""
    found = [v for got, v in iter_samples(text, name) if labels.items() <= got.items()]
    assert len(found) <= 1, f"{name}{labels} matched {len(found)} samples"
    return found[0] if found else 0.0


class LoadService:
    """A stream handler shaped like the real services': limiter slot, stages, errors."""

    def __init__(self, metrics: ServiceMetrics, limiter: serving.StreamLimiter) -> None:
        self.metrics = metrics
        self.limiter = limiter
        self.release = asyncio.Event()

    @serving.grpc_stream_errors("load")
    async def work(self, request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        first = await serving.first_message(request_iterator, "load")
        if first == b"bad":
            raise BadConfig("load: 'bad' is not a valid config")
        async with self.limiter.slot():
            await self.release.wait()
            async for chunk in request_iterator:
                # One "segment" of 0.5 s of audio, computed off the event loop.
                with self.metrics.stage("segment", audio_seconds=0.5):
                    await asyncio.to_thread(time.sleep, 0.01)
                self.metrics.observe_batch(len(chunk))
                self.metrics.add_audio(0.5)
                yield chunk


@pytest.fixture()
async def load_server() -> AsyncIterator[tuple[LoadService, grpc.aio.Channel, str]]:
    metrics = ServiceMetrics("separator")
    limiter = serving.StreamLimiter(max_active=2, max_queued=3, name="load")
    metrics.bind_limiter(limiter)
    svc = LoadService(metrics, limiter)
    server, health = serving.new_server(["tabagent.test.Load"], metrics)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("tabagent.test.Load", {
            "Work": grpc.stream_stream_rpc_method_handler(svc.work),
        })]
    )
    port = serving.bind(server, "[::]:0")
    await server.start()
    await health.set_serving(True)
    http = start_http_server(0, metrics.registry, addr="127.0.0.1")
    channel = grpc.aio.insecure_channel(f"localhost:{port}")
    try:
        yield svc, channel, http.url
    finally:
        await channel.close()
        await server.stop(0)
        http.close()


async def run_stream(channel: grpc.aio.Channel, messages: list[bytes]) -> str:
    call = channel.stream_stream(METHOD)(iter(messages))
    try:
        async for _ in call:
            pass
    except grpc.aio.AioRpcError as exc:
        return exc.code().name
    return "OK"


async def wait_for(predicate, url: str, timeout: float = 10.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = await asyncio.to_thread(scrape, url)
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"metrics never reached the expected state:\n{text}")
        await asyncio.sleep(0.05)


async def test_queue_depth_and_latency_move_under_load(load_server) -> None:
    svc, channel, url = load_server
    idle = await asyncio.to_thread(scrape, url)
    assert value(idle, "tabagent_queue_depth", service="separator") == 0
    assert value(idle, "tabagent_active_streams", service="separator") == 0

    # 5 streams against 2 slots + 3 queue places: 2 run, 3 wait.
    streams = [asyncio.create_task(run_stream(channel, [b"cfg", b"ab", b"abc"])) for _ in range(5)]
    busy = await wait_for(
        lambda t: value(t, "tabagent_queue_depth", service="separator") == 3
        and value(t, "tabagent_active_streams", service="separator") == 2,
        url,
    )
    assert value(busy, "tabagent_requests_total", service="separator", method="Work") == 0

    # A 6th finds the queue full: refused at once with RESOURCE_EXHAUSTED, never queued.
    assert await run_stream(channel, [b"cfg", b"x"]) == "RESOURCE_EXHAUSTED"
    # Bad input is INVALID_ARGUMENT and never takes a slot.
    assert await run_stream(channel, [b"bad"]) == "INVALID_ARGUMENT"

    svc.release.set()
    assert await asyncio.gather(*streams) == ["OK"] * 5
    done = await wait_for(
        lambda t: value(t, "tabagent_requests_total", service="separator", method="Work", code="OK") == 5,
        url,
    )
    assert value(done, "tabagent_queue_depth", service="separator") == 0
    assert value(done, "tabagent_active_streams", service="separator") == 0
    assert value(done, "tabagent_requests_total", method="Work", code="RESOURCE_EXHAUSTED") == 1
    assert value(done, "tabagent_requests_total", method="Work", code="INVALID_ARGUMENT") == 1
    # Health probes are not requests.
    assert not [s for s, _ in iter_samples(done, "tabagent_requests_total") if s["method"] == "Check"]

    # Latency histogram: every stream observed; the 5 held streams took at least
    # their wait, so some land above the smallest bucket.
    assert value(done, "tabagent_request_seconds_count", method="Work") == 7
    buckets = {s["le"]: v for s, v in iter_samples(done, "tabagent_request_seconds_bucket")}
    assert buckets["+Inf"] == 7
    assert [float(le) for le in buckets if le != "+Inf"] == [float(b) for b in REQUEST_BUCKETS]
    # Stages: 2 segments per OK stream, each 0.01 s of compute for 0.5 s of audio.
    assert value(done, "tabagent_stage_seconds_count", stage="segment") == 10
    assert value(done, "tabagent_stage_seconds_sum", stage="segment") >= 10 * 0.01
    rtf_mean = value(done, "tabagent_realtime_factor_sum", stage="segment") / 10
    assert 0.02 <= rtf_mean < 1.0
    assert value(done, "tabagent_batch_size_count") == 10
    assert value(done, "tabagent_batch_size_sum") == 5 * (2 + 3)
    assert value(done, "tabagent_audio_seconds_total") == pytest.approx(5.0)


async def test_cancelled_stream_is_counted_as_cancelled(load_server) -> None:
    svc, channel, url = load_server
    call = channel.stream_stream(METHOD)(iter([b"cfg", b"ab"]))
    await wait_for(lambda t: value(t, "tabagent_active_streams", service="separator") == 1, url)
    call.cancel()
    text = await wait_for(
        lambda t: value(t, "tabagent_requests_total", method="Work", code="CANCELLED") == 1, url
    )
    assert value(text, "tabagent_active_streams", service="separator") == 0
    svc.release.set()


async def test_without_a_limiter_active_streams_are_the_one_in_flight_count() -> None:
    """A server whose service binds no limiter reports the RPCs in flight as active streams:
    the same count its drain waits for (one count, not one per interceptor)."""
    metrics = ServiceMetrics("gateway")
    gate = asyncio.Event()

    async def hold(request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        await gate.wait()
        async for chunk in request_iterator:
            yield chunk

    server, health = serving.new_server(["tabagent.test.Hold"], metrics)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "tabagent.test.Hold", {"Hold": grpc.stream_stream_rpc_method_handler(hold)})])
    port = serving.bind(server, "127.0.0.1:0")
    await server.start()
    await health.set_serving(True)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            calls = [channel.stream_stream("/tabagent.test.Hold/Hold")(iter([b"x"])) for _ in range(3)]
            for _ in range(100):
                if health.in_flight == 3:
                    break
                await asyncio.sleep(0.02)
            text = metrics.exposition()[0].decode()
            assert health.in_flight == 3
            assert value(text, "tabagent_active_streams", service="gateway") == 3
            gate.set()
            assert [[m async for m in call] for call in calls] == [[b"x"]] * 3
        text = metrics.exposition()[0].decode()
        assert health.in_flight == 0
        assert value(text, "tabagent_active_streams", service="gateway") == 0
        assert value(text, "tabagent_requests_total", method="Hold", code="OK") == 3
        assert not [s for s, _ in iter_samples(text, "tabagent_requests_total") if s["method"] == "Check"]
    finally:
        await server.stop(0)


def test_status_names() -> None:
    assert status_for(None) == "OK"
    assert status_for(BadConfig("x")) == "INVALID_ARGUMENT"
    assert status_for(asyncio.CancelledError()) == "CANCELLED"
    assert status_for(GeneratorExit()) == "CANCELLED"
    assert status_for(TimeoutError()) == "DEADLINE_EXCEEDED"
    assert status_for(RuntimeError("boom")) == "INTERNAL"
    assert code_name(grpc.StatusCode.NOT_FOUND) == "NOT_FOUND"
    assert code_name(8) == "RESOURCE_EXHAUSTED"
    assert code_name("404") == "404"
    assert code_name(413) == "UNKNOWN"  # an integer is a gRPC code number, when gRPC defines it


def test_model_info_and_load_time() -> None:
    metrics = ServiceMetrics("separator")
    metrics.set_model("htdemucs", "demucs-4.1.0:955717e8", "cuda:0", fallback=False, load_seconds=42.5)
    text = metrics.exposition()[0].decode()
    info = [labels for labels, v in iter_samples(text, "tabagent_model_info") if v == 1]
    assert info == [{"service": "separator", "model": "htdemucs", "version": "demucs-4.1.0:955717e8",
                     "device": "cuda:0", "fallback": "false"}]
    assert value(text, "tabagent_model_load_seconds", service="separator") == 42.5
    metrics.set_model("dsp", "dsp-1", "cpu", fallback=True)
    text = metrics.exposition()[0].decode()
    assert [labels["fallback"] for labels, _ in iter_samples(text, "tabagent_model_info")] == ["true"]


def test_registries_isolate_and_share() -> None:
    # Two services of the same name in one process: private registries never collide.
    a, b = ServiceMetrics("separator"), ServiceMetrics("separator")
    a.add_audio(3.0)
    assert value(b.exposition()[0].decode(), "tabagent_audio_seconds_total") == 0
    # Several services in one registry: one endpoint, told apart by the service label.
    registry = new_registry(process_metrics=False)
    sep, tra = ServiceMetrics("separator", registry), ServiceMetrics("transcriber", registry)
    sep.bind(lambda: 4)
    tra.bind(lambda: 1, lambda: 2)
    text = sep.exposition()[0].decode()
    assert value(text, "tabagent_queue_depth", service="separator") == 4
    assert value(text, "tabagent_queue_depth", service="transcriber") == 1
    assert value(text, "tabagent_active_streams", service="transcriber") == 2
    assert "process_resident_memory_bytes" not in text
    assert "process_resident_memory_bytes" in a.exposition()[0].decode()


def test_http_server_port_zero_and_close() -> None:
    metrics = ServiceMetrics("video")
    http = start_http_server(0, metrics.registry, addr="127.0.0.1")
    assert http.port > 0
    assert value(scrape(http.url), "tabagent_queue_depth", service="video") == 0
    http.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(http.url, timeout=2)


def test_metrics_module_never_imports_torch() -> None:
    """The gateway image has no torch: importing and scraping must not need it."""
    code = (
        "import sys; from tabagent.metrics import ServiceMetrics; m = ServiceMetrics('gateway'); "
        "t = m.exposition()[0].decode(); assert 'torch' not in sys.modules, 'torch imported'; "
        "assert '# TYPE tabagent_gpu_memory_bytes gauge' in t; "
        "assert 'tabagent_gpu_memory_bytes{' not in t"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
