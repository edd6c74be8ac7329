"""tabagent_gpu_memory_bytes on a CUDA device: it follows torch's allocations.

Imports only tabagent.metrics (grpc, prometheus_client) and torch, so it also runs on a
bare GPU machine: `python -m pytest tests/test_metrics_gpu.py --noconftest`.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tabagent.metrics import ServiceMetrics, gpu_memory

pytestmark = pytest.mark.gpu


def gpu_bytes(metrics: ServiceMetrics, kind: str) -> float:
    text = metrics.exposition()[0].decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tabagent_gpu_memory_bytes" and sample.labels == {
                "service": metrics.service, "device": "cuda:0", "kind": kind,
            }:
                return float(sample.value)
    raise AssertionError(f"no tabagent_gpu_memory_bytes{{kind={kind!r}}} in\n{text}")


def test_gpu_memory_follows_allocations() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    metrics = ServiceMetrics("separator")
    warm = torch.zeros(1, device="cuda")  # initialises CUDA in this process
    base = gpu_bytes(metrics, "allocated")
    block = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device="cuda")
    grown = gpu_bytes(metrics, "allocated")
    assert grown - base >= 256 * 1024 * 1024
    assert gpu_bytes(metrics, "reserved") >= grown
    total = gpu_bytes(metrics, "total")
    assert total == torch.cuda.get_device_properties(0).total_memory > grown
    del block
    assert gpu_bytes(metrics, "allocated") < grown
    assert {row[0] for row in gpu_memory()} == {f"cuda:{i}" for i in range(torch.cuda.device_count())}
    del warm
