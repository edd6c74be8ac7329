"""Spans of batched model calls: one forward span per batch, linked to every stream in it.

A batch runs in a thread (separator) or task (transcriber) of its own, serving several
songs at once: its span takes the first request's context as its parent, explicitly, and
links the others; each stream's own span learns the size of the batch it ran in.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from transcriber_fixtures import warm_model

from separator_svc.runner import BatchingSegmentRunner
from separator_svc.tiny import tiny_models
from tabagent import telemetry
from transcriber_svc.basicpitch import AUDIO_N_SAMPLES
from transcriber_svc.runner import BatchingRunner

tracer = telemetry.tracer(__name__)


@pytest.fixture(scope="module")
def exporter() -> Iterator[InMemorySpanExporter]:
    spans = InMemorySpanExporter()
    telemetry.setup("tabagent-tests", spans)
    yield spans
    spans.shutdown()


def linked(forward: ReadableSpan) -> set[int]:
    return {link.context.span_id for link in forward.links}


def test_separator_batch_span_links_every_stream(exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    models, sigs, _ = tiny_models("htdemucs", segment=1.0)
    model = models[0]
    model._sig = sigs[0]
    sizes: list[int] = []
    runner = BatchingSegmentRunner(model, "cpu", max_batch=3, max_wait=2.0, name=sigs[0])
    runner.on_batch = sizes.append
    length = int(model.samplerate * model.segment)
    start = threading.Barrier(3)

    def stream(i: int) -> None:
        # Each "stream" is its own song: its own trace, a segment span current in its thread.
        with tracer.start_as_current_span(f"song-{i}"), tracer.start_as_current_span("separate.segment"):
            start.wait()
            runner.run(torch.zeros(2, length))

    try:
        threads = [threading.Thread(target=stream, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        runner.close()
    assert sizes == [3]
    spans = exporter.get_finished_spans()
    segments = [s for s in spans if s.name == "separate.segment"]
    forward = [s for s in spans if s.name == "separate.forward"]
    assert len(segments) == 3 and len(forward) == 1
    assert len({s.context.trace_id for s in segments}) == 3
    f = forward[0]
    assert f.attributes["batch.size"] == 3 and f.attributes["model.name"] == sigs[0]
    assert f.attributes["device"] == "cpu"
    ids = {s.context.span_id for s in segments}
    assert f.parent is not None and f.parent.span_id in ids  # the first request's segment
    assert linked(f) == ids - {f.parent.span_id}               # and a link to each other one
    assert all(s.attributes["batch.size"] == 3 for s in segments)


async def test_transcriber_batch_span_links_every_stream(exporter: InMemorySpanExporter) -> None:
    exporter.clear()
    model = warm_model()
    sizes: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        runner = BatchingRunner(model, pool, max_batch=8, max_wait=0.5, on_batch=sizes.append)
        windows = np.zeros((2, AUDIO_N_SAMPLES, 1), np.float32)

        async def stream(i: int) -> int:
            with tracer.start_as_current_span(f"song-{i}"), tracer.start_as_current_span("transcribe.model"):
                out = await runner.run(windows)
            return len(out)

        try:
            assert await asyncio.gather(*(stream(i) for i in range(3))) == [2, 2, 2]
        finally:
            await runner.close()
    assert sizes == [6]
    spans = exporter.get_finished_spans()
    streams = [s for s in spans if s.name == "transcribe.model"]
    forward = [s for s in spans if s.name == "transcribe.forward"]
    assert len(streams) == 3 and len(forward) == 1
    f = forward[0]
    assert f.attributes["batch.size"] == 6 and f.attributes["streams"] == 3
    assert f.attributes["model.name"] == "basic-pitch" and f.attributes["device"] == "cpu"
    ids = {s.context.span_id for s in streams}
    assert f.parent is not None and f.parent.span_id in ids
    assert linked(f) == ids - {f.parent.span_id}
    assert all(s.attributes["batch.size"] == 6 for s in streams)
