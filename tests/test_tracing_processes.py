"""Tracing across real processes: OTLP export only when configured, and one trace over four.

An in-process OTLP collector (opentelemetry-proto's TraceService on grpc.aio) receives
what the processes export over OTLP gRPC, exactly as the cluster's otel-collector would.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from gateway_fixtures import collect, write_audio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from evalkit.examples import make_song
from tabagent import telemetry
from tabagent.client import AsyncClient, process_config

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ExportedSpan:
    service_name: str
    name: str
    trace_id: bytes
    span_id: bytes
    parent_id: bytes
    kind: int
    attributes: dict[str, object] = field(default_factory=dict)


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps everything it is sent."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self.arrived = asyncio.Event()

    async def Export(self, request: trace_service_pb2.ExportTraceServiceRequest,  # noqa: N802
                     context: grpc.aio.ServicerContext) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    attrs = {a.key: _value(a.value) for a in s.attributes}
                    self.spans.append(ExportedSpan(resource.get("service.name", ""), s.name, s.trace_id,
                                                   s.span_id, s.parent_span_id, s.kind, attrs))
        self.arrived.set()
        return trace_service_pb2.ExportTraceServiceResponse()


def _value(v: object) -> object:
    kind = v.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(v, kind) if kind else None


@pytest.fixture()
async def collector() -> AsyncIterator[tuple[Collector, str]]:
    servicer = Collector()
    server = grpc.aio.server()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"http://127.0.0.1:{port}"
    await server.stop(0)


PROBE = """
from tabagent import telemetry
telemetry.setup("tabagent-probe")
with telemetry.tracer("probe").start_as_current_span("probe-span"):
    pass
telemetry.flush()
"""


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


async def run_probe(env: dict[str, str]) -> None:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", PROBE, env=env, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, out.decode()


async def test_otlp_export_only_when_an_endpoint_is_configured(collector: tuple[Collector, str]) -> None:
    received, endpoint = collector
    await run_probe(child_env())  # no endpoint: nothing leaves the process
    await asyncio.sleep(0.2)
    assert received.spans == []
    await run_probe(child_env(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint))
    assert [(s.service_name, s.name) for s in received.spans] == [("tabagent-probe", "probe-span")]


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def wait_for(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def serving(port: int, timeout: float) -> None:
    """Wait until a server's health reports SERVING, as a readiness probe would."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            assert loop.time() < deadline, f"port {port} never reported SERVING"
            await asyncio.sleep(0.2)


def by_id(spans: Iterable[ExportedSpan]) -> dict[bytes, ExportedSpan]:
    return {s.span_id: s for s in spans}


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_four_processes_one_trace(collector: tuple[Collector, str], tmp_path: Path) -> None:
    """`python -m` each service and the gateway, export over OTLP, SIGTERM them all."""
    received, endpoint = collector
    client_spans = InMemorySpanExporter()
    telemetry.setup("tabagent-tests", client_spans)
    sep, tra, vid, gw, http = free_ports(5)
    env = child_env(
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, OTEL_BSP_SCHEDULE_DELAY="100",
        SEPARATOR_HOST="127.0.0.1", SEPARATOR_PORT=str(sep), SEPARATOR_METRICS_PORT="0", SEPARATOR_MODELS="dsp",
        TRANSCRIBER_HOST="127.0.0.1", TRANSCRIBER_PORT=str(tra), TRANSCRIBER_METRICS_PORT="0",
        TRANSCRIBER_THREADS="1",
        VIDEO_HOST="127.0.0.1", VIDEO_PORT=str(vid), VIDEO_METRICS_PORT="0",
        GATEWAY_HOST="127.0.0.1", GATEWAY_PORT=str(gw), GATEWAY_HTTP_PORT=str(http),
        SEPARATOR_ADDR=f"127.0.0.1:{sep}", TRANSCRIBER_ADDR=f"127.0.0.1:{tra}", VIDEO_ADDR=f"127.0.0.1:{vid}",
        TABAGENT_DATA_DIR=str(tmp_path / "data"), TABAGENT_LOG_LEVEL="WARNING",
    )
    modules = ["separator_svc", "transcriber_svc", "video_svc", "gateway"]
    procs = {m: await asyncio.create_subprocess_exec(sys.executable, "-m", m, env=env, cwd=ROOT,
                                                     stdout=asyncio.subprocess.DEVNULL,
                                                     stderr=asyncio.subprocess.PIPE)
             for m in modules}
    clip = write_audio(tmp_path / "clip.wav", make_song(3.0, seed=12).mix)
    try:
        await serving(gw, 120)  # the gateway is SERVING once all three services are
        async with AsyncClient(f"127.0.0.1:{gw}", retries=0) as client:
            with telemetry.tracer(__name__).start_as_current_span("client") as root:
                got = await collect(client, clip, process_config(video=True, size=(160, 96), fps=8))
        assert got.done is not None
        trace_id = root.get_span_context().trace_id.to_bytes(16, "big")
        names = {"tabagent-gateway", "tabagent-separator", "tabagent-transcriber", "tabagent-video"}

        def servers() -> set[str]:
            return {s.service_name for s in received.spans if s.trace_id == trace_id and s.kind == 2}

        await wait_for(lambda: servers() >= names, 30, "SERVER spans from all four processes")
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        codes = {m: await asyncio.wait_for(p.wait(), 60) for m, p in procs.items()}
    errors = {m: (await p.stderr.read()).decode()[-2000:] for m, p in procs.items() if codes[m] != 0}
    assert not errors, f"processes did not exit cleanly on SIGTERM: {codes} {errors}"

    spans = [s for s in received.spans if s.trace_id == trace_id]
    index = by_id(spans)
    gateway = [s for s in spans if s.service_name == "tabagent-gateway" and s.kind == 2]
    assert len(gateway) == 1 and gateway[0].parent_id  # the client's call is its parent
    for s in spans:
        if s.kind == 2 and s is not gateway[0]:
            # Each service's SERVER span: its parent chain, across processes, reaches the gateway's.
            up, seen = s, []
            while up.parent_id in index:
                up = index[up.parent_id]
                seen.append(up)
            assert gateway[0] in seen, f"{s.service_name} {s.name} is not under the gateway"
            assert seen[0].kind == 3 and seen[0].service_name == "tabagent-gateway"  # the CLIENT call
    assert {s.name for s in spans if s.service_name == "tabagent-transcriber"} >= {
        "tabagent.v1.Transcriber/Transcribe", "transcribe.model"}
    assert any(s.name == "separate.step" for s in spans if s.service_name == "tabagent-separator")
