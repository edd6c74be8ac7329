"""Prometheus metrics every Tab Agent process serves: latency, queue depth, model and GPU state.

One `ServiceMetrics` per service holds its children of the shared metric families; the
families are created once per registry, so several services may share one registry
(one endpoint, told apart by the `service` label) or each own one (the default: a
private registry, so in-process tests with several services never collide).

    metrics = ServiceMetrics("separator")
    metrics.bind_limiter(limiter)                  # queue depth and active streams, live
    server, health = new_server([...], metrics)     # tabagent.serving: requests, in flight
    http = start_http_server(config.metrics_port, metrics.registry)
    ...
    with metrics.stage("segment", audio_seconds=7.8):
        run_model()
    http.close()

Families (all labelled `service`): `tabagent_requests_total{method,code}`,
`tabagent_request_seconds{method}`, `tabagent_stage_seconds{stage}`,
`tabagent_queue_depth` (the autoscaling signal), `tabagent_active_streams`,
`tabagent_batch_size`, `tabagent_realtime_factor{stage}`, `tabagent_model_load_seconds`,
`tabagent_model_info{model,version,device,fallback}`, `tabagent_audio_seconds_total`,
`tabagent_gpu_memory_bytes{device,kind}` (only while CUDA is in use in this process),
`tabagent_http_jobs{state}` (the gateway's HTTP jobs, by state).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import start_http_server as _prom_start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tabagent.errors import TabAgentError

log = logging.getLogger(__name__)

PREFIX = "tabagent"
# A song takes from a fraction of a second (a short clip on a GPU) to half an hour (an
# hour-long recording on CPU); the buckets cover that range roughly logarithmically.
REQUEST_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 900, 1200, 1800)
# Stages include per-segment model calls of a few milliseconds.
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)
# Compute seconds per audio second: below 1 is faster than real time.
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2, 5, 10)


class LimiterLike(Protocol):
    """What `bind_limiter` reads: tabagent.serving.StreamLimiter has both."""

    queued: int
    active: int


class _Families:
    """Every metric family, created once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        svc = ["service"]
        self.requests = Counter(
            f"{PREFIX}_requests", "RPCs and HTTP requests finished, by method and status code.",
            [*svc, "method", "code"], registry=registry,
        )
        self.request_seconds = Histogram(
            f"{PREFIX}_request_seconds", "Wall time of one request or stream, start to end.",
            [*svc, "method"], buckets=REQUEST_BUCKETS, registry=registry,
        )
        self.stage_seconds = Histogram(
            f"{PREFIX}_stage_seconds", "Wall time of one processing stage (a model call, a decode).",
            [*svc, "stage"], buckets=STAGE_BUCKETS, registry=registry,
        )
        self.queue_depth = Gauge(
            f"{PREFIX}_queue_depth",
            "Streams waiting for a processing slot; the signal the HPA scales on.",
            svc, registry=registry,
        )
        self.active_streams = Gauge(
            f"{PREFIX}_active_streams", "Streams holding a processing slot.", svc, registry=registry,
        )
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size", "Items (segments, frames) per batched model call.",
            svc, buckets=BATCH_BUCKETS, registry=registry,
        )
        self.realtime_factor = Histogram(
            f"{PREFIX}_realtime_factor",
            "Compute seconds per second of audio, by stage (below 1 is faster than real time).",
            [*svc, "stage"], buckets=RTF_BUCKETS, registry=registry,
        )
        self.model_load_seconds = Gauge(
            f"{PREFIX}_model_load_seconds", "Seconds the model took to load and warm up.",
            svc, registry=registry,
        )
        self.model = Info(
            f"{PREFIX}_model", "The model this process serves.", svc, registry=registry,
        )
        self.audio_seconds = Counter(
            f"{PREFIX}_audio_seconds", "Seconds of input audio processed.", svc, registry=registry,
        )
        self.gpu = _GpuMemoryCollector()
        registry.register(self.gpu)
        self.registry = registry
        self._jobs: Gauge | None = None

    def jobs(self) -> Gauge:
        """`tabagent_http_jobs{state}`, created on first use (only the gateway has jobs)."""
        with _FAMILIES_LOCK:
            if self._jobs is None:
                self._jobs = Gauge(f"{PREFIX}_http_jobs",
                                   "HTTP jobs by state (queued, running, done, failed, cancelled); with a "
                                   "shared job store, the whole store's (the same on every gateway replica).",
                                   ["service", "state"], registry=self.registry)
            return self._jobs


_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_FAMILIES_LOCK = threading.Lock()


def _families(registry: CollectorRegistry) -> _Families:
    with _FAMILIES_LOCK:
        fam = _FAMILIES.get(registry)
        if fam is None:
            fam = _FAMILIES[registry] = _Families(registry)
        return fam


class _GpuMemoryCollector(Collector):
    """CUDA memory of this process, read at scrape time from torch when torch uses CUDA.

    torch is never imported here: the gateway must not load it, and a model service has
    imported it long before a scrape. A process that has not initialised CUDA reports
    nothing (asking would create a CUDA context in the scrape thread).
    """

    def __init__(self) -> None:
        self.services: set[str] = set()

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return [self._family()]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            f"{PREFIX}_gpu_memory_bytes",
            "CUDA memory of this process: allocated and reserved by torch, and the device total.",
            labels=["service", "device", "kind"],
        )

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = self._family()
        for device, kind, value in gpu_memory():
            for service in sorted(self.services):
                family.add_metric([service, device, kind], value)
        return [family]


def gpu_memory() -> list[tuple[str, str, float]]:
    """(device, kind, bytes) for every CUDA device torch has initialised in this process.

    Returns:
        An empty list without torch, without CUDA, or before CUDA is initialised.
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    try:
        cuda = torch.cuda
        if not cuda.is_available() or not cuda.is_initialized():
            return []
        rows: list[tuple[str, str, float]] = []
        for index in range(cuda.device_count()):
            device = f"cuda:{index}"
            rows.append((device, "allocated", float(cuda.memory_allocated(index))))
            rows.append((device, "reserved", float(cuda.memory_reserved(index))))
            rows.append((device, "total", float(cuda.get_device_properties(index).total_memory)))
        return rows
    except Exception as exc:  # a broken driver must not break the whole scrape
        log.debug("could not read CUDA memory: %s", exc)
        return []


def new_registry(process_metrics: bool = True) -> CollectorRegistry:
    """A fresh registry, with the process, platform and GC collectors by default.

    Args:
        process_metrics: add `process_*` (CPU, resident memory, fds), `python_info` and
            `python_gc_*`, as the default prometheus_client registry has them.

    Returns:
        The registry.
    """
    registry = CollectorRegistry(auto_describe=True)
    if process_metrics:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        registry.register(GC_COLLECTOR)
    return registry


def code_name(code: grpc.StatusCode | int | str | None) -> str:
    """Normalise a status to the name used in the `code` label ("OK", "INTERNAL", "404").

    Args:
        code: a grpc.StatusCode, its integer value, or a string (HTTP codes pass as is).

    Returns:
        The label value; "UNKNOWN" for an integer gRPC does not define.
    """
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return status.name
        return "UNKNOWN"
    return str(code).upper()


def status_for(exc: BaseException | None, context: Any = None) -> str:
    """The status code name a request ended with, from its exception and context.

    Args:
        exc: the exception that ended the request, or None when it returned.
        context: the grpc.aio.ServicerContext, if any: after `context.abort()` (which
            raises AbortError) or `context.set_code()`, the code lives there.

    Returns:
        A grpc.StatusCode name, e.g. "OK", "INVALID_ARGUMENT", "CANCELLED".
    """
    context_code = _context_code(context)
    if exc is None:
        return code_name(context_code)
    if isinstance(exc, TabAgentError):
        return exc.code.name
    if isinstance(exc, grpc.aio.AbortError):
        return code_name(context_code) if context_code is not None else "UNKNOWN"
    if isinstance(exc, asyncio.CancelledError | GeneratorExit):
        return "CANCELLED"
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return code_name(exc.code())
    if isinstance(exc, TimeoutError):
        return "DEADLINE_EXCEEDED"
    # grpc_stream_errors turns anything unexpected into INTERNAL.
    return "INTERNAL"


def _context_code(context: Any) -> grpc.StatusCode | int | None:
    getter = getattr(context, "code", None)
    if not callable(getter):
        return None
    try:
        code = getter()
    except Exception:
        return None
    return code if isinstance(code, grpc.StatusCode | int) else None


class _StageTimer:
    def __init__(self, metrics: ServiceMetrics, stage: str, audio_seconds: float | None) -> None:
        self.metrics = metrics
        self.stage = stage
        self.audio_seconds = audio_seconds
        self.started = 0.0

    def __enter__(self) -> _StageTimer:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.metrics.observe_stage(
            self.stage, time.perf_counter() - self.started, self.audio_seconds
        )


class ServiceMetrics:
    """The metrics of one service in one registry.

    Args:
        service: the `service` label, e.g. "separator".
        registry: where the families live; None creates a private registry with the
            process collectors (`self.registry`), so services in one process never collide.
    """

    def __init__(self, service: str, registry: CollectorRegistry | None = None) -> None:
        self.service = service
        self.registry = registry if registry is not None else new_registry()
        self._fam = _families(self.registry)
        self.queue_depth = self._fam.queue_depth.labels(service)
        self.active_streams = self._fam.active_streams.labels(service)
        self.model_load_seconds = self._fam.model_load_seconds.labels(service)
        self.audio_seconds_total = self._fam.audio_seconds.labels(service)
        self.batch_size = self._fam.batch_size.labels(service)
        self.queue_depth.set(0)
        self.active_streams.set(0)
        self._limiter_bound = False
        self._fam.gpu.services.add(service)

    # -- live gauges ------------------------------------------------------------------

    def bind(self, queued: Callable[[], float], active: Callable[[], float] | None = None) -> None:
        """Read queue depth (and active streams) from callables at every scrape.

        Args:
            queued: returns the streams waiting for a slot now.
            active: returns the streams holding a slot now; None keeps the in-flight count.
        """
        self.queue_depth.set_function(queued)
        if active is not None:
            self.active_streams.set_function(active)

    def bind_jobs(self, queued: Callable[[], float], running: Callable[[], float]) -> None:
        """Read the HTTP jobs queued and running (`tabagent_http_jobs`) at every scrape."""
        gauge = self._fam.jobs()
        gauge.labels(self.service, "queued").set_function(queued)
        gauge.labels(self.service, "running").set_function(running)

    def bind_job_states(self, counts: Callable[[], Mapping[str, float]], states: Iterable[str]) -> None:
        """Read the HTTP jobs in each state (`tabagent_http_jobs{state}`) from `counts()` at every scrape.

        Args:
            counts: returns jobs per state; must not block (the gateway keeps a cached copy).
            states: every state to publish (0 when `counts()` lacks it).
        """
        gauge = self._fam.jobs()

        def reader(state: str) -> Callable[[], float]:
            return lambda: float(counts().get(state, 0))

        for state in states:
            gauge.labels(self.service, state).set_function(reader(state))

    def bind_in_flight(self, in_flight: Callable[[], float]) -> None:
        """Count the requests in flight (the server's one count) as active streams, until
        a limiter is bound (tabagent.serving.new_server does it)."""
        if not self._limiter_bound:
            self.active_streams.set_function(in_flight)

    def bind_limiter(self, limiter: LimiterLike) -> None:
        """Make a StreamLimiter the single source of queue depth and active streams."""
        self.bind(lambda: limiter.queued, lambda: limiter.active)
        self._limiter_bound = True

    # -- requests ---------------------------------------------------------------------

    def observe_request(self, method: str, code: str, seconds: float) -> None:
        """Record one finished request or stream (the server interceptor and the HTTP
        middleware call it as each ends)."""
        self._fam.requests.labels(self.service, method, code).inc()
        self._fam.request_seconds.labels(self.service, method).observe(seconds)

    # -- work -------------------------------------------------------------------------

    def stage(self, stage: str, audio_seconds: float | None = None) -> _StageTimer:
        """Time a block as one stage: `with metrics.stage("segment", audio_seconds=7.8):`.

        Safe in worker threads; also records the real-time factor when audio_seconds > 0.
        """
        return _StageTimer(self, stage, audio_seconds)

    def observe_stage(self, stage: str, seconds: float, audio_seconds: float | None = None) -> None:
        """Record one stage's duration and, given the audio it covered, its real-time factor.

        Args:
            stage: e.g. "decode", "segment", "transcribe", "render".
            seconds: compute (wall) seconds the stage took.
            audio_seconds: seconds of audio the stage processed.
        """
        self._fam.stage_seconds.labels(self.service, stage).observe(seconds)
        if audio_seconds is not None and audio_seconds > 0:
            self._fam.realtime_factor.labels(self.service, stage).observe(seconds / audio_seconds)

    def observe_batch(self, size: int) -> None:
        """Record the size of one batched model call."""
        self.batch_size.observe(size)

    def add_audio(self, seconds: float) -> None:
        """Count seconds of input audio processed."""
        if seconds > 0:
            self.audio_seconds_total.inc(seconds)

    def set_model(
        self,
        name: str,
        version: str,
        device: str,
        fallback: bool = False,
        load_seconds: float | None = None,
    ) -> None:
        """Publish what model this process serves, and how long it took to load and warm.

        Args:
            name: e.g. "htdemucs".
            version: e.g. "demucs-4.1.0:955717e8".
            device: e.g. "cuda:0" or "cpu".
            fallback: True when a fallback (e.g. the DSP separator) serves instead.
            load_seconds: load plus warm-up time.
        """
        self._fam.model.labels(self.service).info(
            {"model": name, "version": version, "device": device, "fallback": str(bool(fallback)).lower()}
        )
        if load_seconds is not None:
            self.model_load_seconds.set(load_seconds)

    # -- exposition -------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The registry in the Prometheus text format: (body, content type), for an HTTP route."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


@dataclass
class MetricsServer:
    """A running /metrics HTTP endpoint; `close()` stops it."""

    port: int
    addr: str
    _httpd: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """The scrape URL on loopback."""
        host = "[::1]" if ":" in self.addr else "127.0.0.1"
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_http_server(
    port: int, registry: CollectorRegistry | None = None, addr: str = "0.0.0.0"
) -> MetricsServer:
    """Serve a registry on http://addr:port/metrics in a daemon thread.

    Args:
        port: the port; 0 picks a free one (see the returned `.port`).
        registry: the registry to serve; None serves prometheus_client's default one.
        addr: the bind address ("0.0.0.0" for every IPv4 interface, "::" for IPv6).

    Returns:
        The running server.
    """
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    httpd, thread = _prom_start_http_server(port, addr=addr, registry=registry)
    bound = int(httpd.server_port)
    log.info("serving metrics on %s:%d/metrics", addr, bound)
    return MetricsServer(port=bound, addr=addr, _httpd=httpd, _thread=thread)


def iter_samples(text: str, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of a family in Prometheus text (for tests and tools).

    Args:
        text: an exposition, e.g. the body of GET /metrics.
        name: a sample name, e.g. "tabagent_queue_depth" or "tabagent_requests_total".
    """
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                yield dict(sample.labels), float(sample.value)
