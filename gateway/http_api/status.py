"""`/status`: the gateway's live numbers on one small page, from its own metrics, without Grafana.

The same quantities as the Grafana dashboard (k8s/addons/monitoring), computed the way
its PromQL does, from snapshots of this process's registry taken every few seconds:
request rate and latency percentiles per route or RPC (`rate`, `histogram_quantile` over
the last minute), errors by status code, queue depth, jobs by state (the whole shared
store's), batch size, real-time factor per stage, and CUDA memory when this process has
any. `/status` is HTML that refreshes itself; `/status.json` is the same for tools. Like
`/metrics`, it shows aggregates only (no job or user), so it needs no key.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, JSONResponse
from prometheus_client import CollectorRegistry

Key = tuple[str, tuple[tuple[str, str], ...]]   # (sample name, sorted labels)

SAMPLE_SECONDS = 5.0
WINDOW_SECONDS = 60.0
OK_CODES = ("OK", "200", "201", "202", "204", "206", "304")


def snapshot(registry: CollectorRegistry) -> dict[Key, float]:
    """Every sample of a registry, keyed by name and labels."""
    out: dict[Key, float] = {}
    for family in registry.collect():
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def _series(snap: dict[Key, float], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in snap.items() if n == name}


def _delta(new: dict[Key, float], old: dict[Key, float], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Increase of every counter-like series between two snapshots (a reset counts from 0)."""
    out = {}
    for labels, v in _series(new, name).items():
        before = old.get((name, labels), 0.0)
        out[labels] = v - before if v >= before else v
    return out


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's histogram_quantile over cumulative (upper bound, count) buckets."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


def _group(series: dict[tuple[tuple[str, str], ...], float], by: str) -> dict[str, list[tuple[float, float]]]:
    out: dict[str, list[tuple[float, float]]] = {}
    for labels, v in series.items():
        d = dict(labels)
        out.setdefault(d.get(by, ""), []).append((float(d["le"]), v))
    return out


def numbers(new: dict[Key, float], old: dict[Key, float], seconds: float) -> dict[str, Any]:
    """The page's numbers from two snapshots `seconds` apart (old may be empty: since start)."""
    seconds = max(seconds, 1e-9)
    requests = _delta(new, old, "tabagent_requests_total")
    by_method: dict[str, dict[str, float]] = {}
    errors: dict[str, float] = {}
    for labels, inc in requests.items():
        d = dict(labels)
        m = by_method.setdefault(d["method"], {"requests": 0.0})
        m["requests"] += inc
        if d["code"] not in OK_CODES and inc:
            errors[d["code"]] = errors.get(d["code"], 0.0) + inc
    latency = _group(_delta(new, old, "tabagent_request_seconds_bucket"), "method")
    routes = []
    for method, m in sorted(by_method.items()):
        buckets = latency.get(method, [])
        routes.append({"method": method, "rate_per_s": round(m["requests"] / seconds, 4),
                       "requests": int(m["requests"]),
                       **{f"p{int(q * 100)}_s": _round(quantile(q, buckets)) for q in (0.5, 0.9, 0.99)}})
    rtf_sum = _delta(new, old, "tabagent_realtime_factor_sum")
    rtf_count = _delta(new, old, "tabagent_realtime_factor_count")
    rtf_buckets = _group(_delta(new, old, "tabagent_realtime_factor_bucket"), "stage")
    rtf = []
    for labels, n in sorted(rtf_count.items()):
        stage = dict(labels).get("stage", "")
        if n:
            rtf.append({"stage": stage, "mean": _round(rtf_sum.get(labels, 0.0) / n),
                        "p90": _round(quantile(0.9, rtf_buckets.get(stage, []))), "count": int(n)})
    batch_sum = sum(_delta(new, old, "tabagent_batch_size_sum").values())
    batch_count = sum(_delta(new, old, "tabagent_batch_size_count").values())
    return {
        "window_seconds": round(seconds, 1),
        "routes": routes,
        "errors_by_code": {code: int(n) for code, n in sorted(errors.items())},
        "queue_depth": sum(_series(new, "tabagent_queue_depth").values()),
        "active_streams": sum(_series(new, "tabagent_active_streams").values()),
        "jobs_by_state": {dict(labels).get("state", ""): int(v)
                          for labels, v in sorted(_series(new, "tabagent_http_jobs").items())},
        "batch_size_mean": _round(batch_sum / batch_count) if batch_count else None,
        "realtime_factor": rtf,
        "gpu_memory_bytes": {f"{dict(labels).get('device', '')} {dict(labels).get('kind', '')}": v
                             for labels, v in sorted(_series(new, "tabagent_gpu_memory_bytes").items())},
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class Sampler:
    """Snapshots of a registry every `every` seconds, the last `window` seconds of them kept."""

    def __init__(self, registry: CollectorRegistry, every: float = SAMPLE_SECONDS,
                 window: float = WINDOW_SECONDS, extra: Callable[[], dict[str, Any]] | None = None) -> None:
        self.registry = registry
        self.every = every
        self.window = window
        self.extra = extra
        self.started = time.monotonic()
        self.snaps: deque[tuple[float, dict[Key, float]]] = deque()

    def take(self) -> None:
        """Add a snapshot now and forget those older than the window."""
        t = time.monotonic()
        self.snaps.append((t, snapshot(self.registry)))
        while len(self.snaps) > 1 and t - self.snaps[1][0] >= self.window:
            self.snaps.popleft()

    def current(self) -> dict[str, Any]:
        """The numbers over the window (since start while the window is not full yet)."""
        t = time.monotonic()
        new = snapshot(self.registry)
        if self.snaps:
            t0, old = self.snaps[0]
        else:
            t0, old = self.started, {}
        out = numbers(new, old, t - t0)
        if self.extra is not None:
            out.update(self.extra())
        return out

    async def run(self) -> None:
        """Take snapshots until cancelled."""
        while True:
            self.take()
            await asyncio.sleep(self.every)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Sample in the background for the life of the block (the app's lifespan)."""
        task = asyncio.create_task(self.run(), name="status-sampler")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def router(sampler: Sampler) -> APIRouter:
    """`/status` (HTML, refreshes every 5 s) and `/status.json`."""
    routes = APIRouter(tags=["health"])

    @routes.get("/status.json", summary="The gateway's live numbers (the dashboard's, from its own metrics)")
    async def status_json() -> JSONResponse:
        return JSONResponse(sampler.current())

    @routes.get("/status", response_class=HTMLResponse, summary="The gateway's live numbers as a small page")
    async def status_page() -> HTMLResponse:
        return HTMLResponse(render(sampler.current()))

    return routes


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        value = f"{value:.3g}"
    return html.escape(f"{value}{unit}")


def _table(head: list[str], rows: list[list[Any]]) -> str:
    if not rows:
        return "<p class=none>none in this window</p>"
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def render(n: dict[str, Any]) -> str:
    """The status page's HTML."""
    gpu = n["gpu_memory_bytes"]
    gib = [[k, v / 2**30] for k, v in gpu.items()]
    sections = [
        ("Requests (per route or RPC)", _table(
            ["route", "req/s", "requests", "p50 s", "p90 s", "p99 s"],
            [[r["method"], r["rate_per_s"], r["requests"], r["p50_s"], r["p90_s"], r["p99_s"]] for r in n["routes"]])),
        ("Errors by status code", _table(["code", "count"], [[c, v] for c, v in n["errors_by_code"].items()])),
        ("Queue", _table(["queue depth (gRPC streams waiting)", "active streams", "mean batch size"],
                         [[n["queue_depth"], n["active_streams"], n["batch_size_mean"]]])),
        ("Jobs by state (every gateway sharing the store)",
         _table(["state", "jobs"], [[s, v] for s, v in n["jobs_by_state"].items()])),
        ("Real-time factor (compute s per audio s)",
         _table(["stage", "mean", "p90", "count"], [[r["stage"], r["mean"], r["p90"], r["count"]]
                                                    for r in n["realtime_factor"]])),
        ("GPU memory (GiB)", _table(["device kind", "GiB"], gib) if gib
         else "<p class=none>no CUDA in this process</p>"),
    ]
    extra = "".join(f"<li>{html.escape(str(k))}: {_fmt(v)}</li>" for k, v in n.items()
                    if k in ("worker", "running_here", "slots"))
    body = "".join(f"<section><h2>{html.escape(title)}</h2>{content}</section>" for title, content in sections)
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><meta http-equiv=refresh content=5>
<title>Tab Agent gateway status</title>
<style>body{{font:14px system-ui,sans-serif;margin:1.5em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:right}}th{{background:#f3f3f3}}
td:first-child,th:first-child{{text-align:left}}.none{{color:#888}}h2{{font-size:1.05em;margin:1.2em 0 .4em}}</style>
</head><body><h1>Tab Agent gateway</h1>
<p>Over the last {n["window_seconds"]:.0f} s; refreshes every 5 s. <a href="/status.json">JSON</a> ·
<a href="/metrics">metrics</a></p><ul>{extra}</ul>{body}</body></html>"""
