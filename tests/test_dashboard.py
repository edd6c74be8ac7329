"""The Grafana dashboard names only metrics and labels the services really export, and is provisioned.

The metric names come from the real registries: each model service's server and the
gateway's (gRPC and HTTP API) built by their own factories, as `python -m <service>`
builds them (not started: the families exist from construction; the transcriber is warmed,
so its model's info carries its real labels). Every panel's PromQL
must name at least one of them and nothing else, group and filter by labels those metrics
carry (or that the scrape adds), and together the panels must cover what the issue asks
for. The monitoring addon must mount this very file into Grafana, point it at its
Prometheus, and scrape the namespace and annotations the services use.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry
from test_k8s import FACTS, K8S, container, of_kind, render

DASHBOARD = K8S / "addons" / "monitoring" / "dashboard" / "tabagent-dashboard.json"
SCRAPE_LABELS = {"namespace", "pod", "app", "instance", "job"}   # added by the scrape (prometheus.yml)
PROMQL_WORDS = {"sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "group_left",
                "group_right", "rate", "increase", "irate", "histogram_quantile", "label_values", "le",
                "and", "or", "unless", "offset", "bool", "topk", "bottomk", "avg_over_time", "max_over_time"}


def exported(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Sample name -> label names, for every family of a registry (with or without samples yet)."""
    out: dict[str, set[str]] = {}
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "summary": ("_sum", "_count", "_created"), "info": ("_info",), "gauge": ("",),
                "unknown": ("",)}
    # A labelled family without samples yet says its label names only through its collector.
    declared: dict[str, set[str]] = {}
    for collector in set(registry._names_to_collectors.values()):  # noqa: SLF001 - no public way
        families = collector.describe() if hasattr(collector, "describe") else []
        for family in families:
            names = getattr(collector, "_labelnames", None) or getattr(family, "_labelnames", ()) or ()
            declared.setdefault(family.name, set()).update(names)
    for family in registry.collect():
        labels = declared.get(family.name, set()) | {k for s in family.samples for k in s.labels}
        for suffix in suffixes.get(family.type, ("",)):
            out.setdefault(family.name + suffix, set()).update(labels)
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
    return out


@pytest.fixture(scope="module")
async def real_metrics(tmp_path_factory: pytest.TempPathFactory) -> dict[str, set[str]]:
    from gateway.config import GatewayConfig
    from gateway.downstream import Downstream
    from gateway.grpc_api import create_server as gateway_server
    from gateway.http_api.app import create_app
    from separator_svc.config import SeparatorConfig
    from separator_svc.holder import ModelHolder as SeparatorHolder
    from separator_svc.server import create_server as separator_server
    from transcriber_svc.config import TranscriberConfig
    from transcriber_svc.holder import ModelHolder as TranscriberHolder
    from transcriber_svc.server import create_server as transcriber_server
    from video_svc.config import VideoConfig
    from video_svc.holder import ModelHolder as VideoHolder
    from video_svc.server import create_server as video_server

    servers = []
    sep = dataclasses.replace(SeparatorConfig.from_env(), metrics_port=0)
    servers.append(separator_server(sep, SeparatorHolder.from_config(sep), "127.0.0.1:0")[0])
    tr = dataclasses.replace(TranscriberConfig.from_env(), metrics_port=0)
    transcriber = transcriber_server(tr, TranscriberHolder.from_config(tr), "127.0.0.1:0")[0]
    servers.append(transcriber)
    await transcriber.warm()  # a warm service publishes its model (tabagent_model_info's labels)
    vid = dataclasses.replace(VideoConfig.from_env(), metrics_port=0)
    servers.append(video_server(vid, VideoHolder(vid), "127.0.0.1:0")[0])
    gw = dataclasses.replace(GatewayConfig(), data_dir=str(tmp_path_factory.mktemp("dashboard")),
                             video_addr="127.0.0.1:1")
    downstream = Downstream(gw)
    servers.append(gateway_server(gw, downstream, "127.0.0.1:0")[0])
    app = create_app(gw, downstream)
    names: dict[str, set[str]] = {}
    for registry in [s.metrics.registry for s in servers] + [app.state.metrics.registry]:
        for name, labels in exported(registry).items():
            names.setdefault(name, set()).update(labels)
    for s in servers:
        await s.server.stop(None)
    await transcriber.model.close()
    await downstream.close()
    return names


def panels() -> list[dict[str, Any]]:
    doc = json.loads(DASHBOARD.read_text())
    return [p for p in doc["panels"] if p["type"] != "row"]


def metric_names(expr: str) -> set[str]:
    """Identifiers in a PromQL expression that are metric names (not functions, labels or keywords)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_labels = re.sub(r"\{[^}]*\}", "", without_strings)
    without_groupings = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", without_labels)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_groupings)
    tokens = set(re.findall(r"(?<![\w$])[a-zA-Z_:][a-zA-Z0-9_:]*", without_ranges))
    return {t for t in tokens if t not in PROMQL_WORDS and not re.fullmatch(r"\d.*|e", t)}


def labels_used(expr: str) -> set[str]:
    used = set(re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr))
    names = {n.strip() for group in used for n in group.split(",") if n.strip()}
    for matchers in re.findall(r"\{([^}]*)\}", expr):
        names |= set(re.findall(r"([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)", matchers))
    return names


def test_the_dashboard_is_well_formed() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] == "tabagent-overview" and doc["schemaVersion"] >= 36
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for p in panels():
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        assert p["targets"] and p["description"], p["title"]
        for t in p["targets"]:
            expr = t["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            assert expr.count("[") == expr.count("]"), expr
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]


def test_every_query_names_metrics_the_services_export(real_metrics: dict[str, set[str]]) -> None:
    assert "tabagent_http_jobs" in real_metrics and "tabagent_gpu_memory_bytes" in real_metrics
    for p in panels():
        for t in p["targets"]:
            names = metric_names(t["expr"])
            assert names, f"{p['title']}: no metric in {t['expr']}"
            unknown = names - set(real_metrics)
            assert not unknown, f"{p['title']}: {sorted(unknown)} are not exported by any service"
            allowed = set().union(*(real_metrics[n] for n in names)) | SCRAPE_LABELS | {"le"}
            stray = labels_used(t["expr"]) - allowed
            assert not stray, f"{p['title']}: labels {sorted(stray)} are on none of {sorted(names)}"
    for v in json.loads(DASHBOARD.read_text())["templating"]["list"]:
        if v["type"] == "query":  # label_values(<metric>, <label>)
            metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", v["definition"]).groups()
            assert metric in real_metrics and label in real_metrics[metric]


def test_the_panels_cover_what_an_operator_watches() -> None:
    exprs = " ".join(t["expr"] for p in panels() for t in p["targets"])
    wanted = {
        "request rate per service": r"rate\(tabagent_requests_total",
        "latency percentiles": r"histogram_quantile\(0\.99, sum by \(service, le\) \(rate\(tabagent_request_seconds_bucket",
        "queue depth": r"tabagent_queue_depth",
        "batch size": r"tabagent_batch_size_bucket",
        "real-time factor": r"tabagent_realtime_factor_sum",
        "GPU memory": r"tabagent_gpu_memory_bytes",
        "errors by status code": r"sum by \(service, code\) \(rate\(tabagent_requests_total\{[^}]*code!~",
        "jobs by state": r"max by \(state\) \(tabagent_http_jobs\)",
    }
    for what, pattern in wanted.items():
        assert re.search(pattern, exprs), what


def test_the_monitoring_addon_provisions_the_dashboard_next_to_prometheus() -> None:
    docs = render("addons/monitoring")
    maps = of_kind(docs, "ConfigMap")
    dashboard = maps["tabagent-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"  # kube-prometheus-stack's sidecar
    assert json.loads(dashboard["data"]["tabagent-dashboard.json"]) == json.loads(DASHBOARD.read_text())
    deps = of_kind(docs, "Deployment")
    grafana = container(deps["grafana"])
    mounts = {m["mountPath"]: m for m in grafana["volumeMounts"]}
    volumes = {v["name"]: v for v in deps["grafana"]["spec"]["template"]["spec"]["volumes"]}
    board = mounts["/var/lib/grafana/dashboards/tabagent"]
    assert volumes[board["name"]]["configMap"]["name"] == "tabagent-dashboard"
    provisioning = next(m for name, m in maps.items() if name.startswith("grafana-provisioning"))
    providers = yaml.safe_load(provisioning["data"]["dashboards.yaml"])["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards/tabagent"
    (source,) = yaml.safe_load(provisioning["data"]["datasources.yaml"])["datasources"]
    service = of_kind(docs, "Service")["prometheus"]
    assert source["url"] == f"http://prometheus.monitoring.svc.cluster.local:{service['spec']['ports'][0]['port']}"
    prom_cfg = next(m for name, m in maps.items() if name.startswith("prometheus-config"))
    (job,) = yaml.safe_load(prom_cfg["data"]["prometheus.yml"])["scrape_configs"]
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [FACTS["namespace"]]
    kept = {r["target_label"] for r in job["relabel_configs"] if "target_label" in r}
    assert {"namespace", "pod", "__address__", "__metrics_path__"} <= kept
    # Every Tab Agent pod asks to be scraped, on the port its metrics are served.
    for name, dep in of_kind(render("base"), "Deployment").items():
        notes = dep["spec"]["template"]["metadata"].get("annotations", {})
        assert notes.get("prometheus.io/scrape") == "true", name


def test_status_page_numbers_follow_promql(real_metrics: dict[str, set[str]]) -> None:
    """/status computes quantiles as histogram_quantile does (same bucket interpolation)."""
    from gateway.http_api.status import quantile

    buckets = [(0.1, 0.0), (0.5, 50.0), (1.0, 90.0), (float("inf"), 100.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.5)
    assert quantile(0.7, buckets) == pytest.approx(0.5 + 0.5 * 20 / 40)
    assert quantile(0.99, buckets) == pytest.approx(1.0)  # in the +Inf bucket: the highest finite bound
    assert quantile(0.5, []) is None and quantile(0.5, [(1.0, 0.0)]) is None
    assert {"tabagent_requests_total", "tabagent_request_seconds_bucket"} <= set(real_metrics)


def test_names_are_read_from_real_families() -> None:
    from tabagent.metrics import ServiceMetrics

    names = exported(ServiceMetrics("x").registry)
    assert names["tabagent_requests_total"] >= {"service", "method", "code"}
    assert "tabagent_request_seconds_bucket" in names and "tabagent_model_info" in names
    assert Path(DASHBOARD).is_file()
