"""Every Deployment's probes, ports and env match what the service really serves and reads."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_k8s import FACTS, MODEL_SERVICES, OVERLAYS, SERVICES, container, of_kind, render

from tabagent import serving
from tabagent.serving import lifecycle

PROBES = ("startupProbe", "readinessProbe", "livenessProbe")


def import_or_skip(module: str) -> Any:
    """Import a service module; skip (naming it) only while it does not exist yet."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            pytest.skip(f"{module} does not exist yet")
        raise


def grpc_module(name: str) -> str:
    """The module holding a service's servicer and create_server."""
    return f"{SERVICES[name]['module']}.{SERVICES[name].get('server_module', 'server')}"


def config_class(name: str) -> type:
    """The frozen dataclass with from_env() in `<module>/config.py`."""
    module = import_or_skip(f"{SERVICES[name]['module']}.config")
    found = [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and dataclasses.is_dataclass(obj)
        and obj.__module__ == module.__name__ and hasattr(obj, "from_env")
    ]
    assert len(found) == 1, f"{module.__name__} should hold one config dataclass, found {found}"
    assert found[0].__dataclass_params__.frozen, f"{found[0].__name__} must be frozen"
    return found[0]


def effective_env(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    """The environment the container would see: envFrom ConfigMaps, then env entries."""
    dep = of_kind(docs, "Deployment")[name]
    ctr = container(dep)
    maps = of_kind(docs, "ConfigMap")
    env: dict[str, str] = {}
    for source in ctr.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]]["data"])
    placeholders = SERVICES[name].get("secret_placeholders", {})
    for entry in ctr.get("env", []):
        var = entry["name"]
        if "value" in entry:
            env[var] = re.sub(r"\$\(([A-Z_]+)\)", lambda m: env.get(m.group(1), m.group(0)), entry["value"])
        elif "secretKeyRef" in entry["valueFrom"]:
            assert var in placeholders, f"{name}: no placeholder for secret-backed {var}"
            env[var] = placeholders[var]
        elif "fieldRef" in entry["valueFrom"]:
            env[var] = f"{name}-7d4b9-x2x4q"
        else:
            pytest.fail(f"{name}: unsupported env source for {var}")
    return env


def all_env_names() -> set[str]:
    names = set(FACTS["common_env"])
    for svc in SERVICES.values():
        names |= set(svc["config_env"]) | set(svc["runtime_env"])
    return names


def load_config(monkeypatch: pytest.MonkeyPatch, cls: type, env: dict[str, str]) -> Any:
    """cls.from_env() under exactly `env` (for every variable the project knows of)."""
    with monkeypatch.context() as m:
        for var in all_env_names() | set(env):
            m.delenv(var, raising=False)
        for var, val in env.items():
            m.setenv(var, val)
        return cls.from_env()


@pytest.mark.parametrize("path", OVERLAYS)
@pytest.mark.parametrize("name", list(SERVICES))
def test_deployment_env_is_what_the_config_reads(name: str, path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cls = config_class(name)
    facts = SERVICES[name]
    docs = render(path)
    env = effective_env(docs, name)
    set_here = {e["name"] for e in container(of_kind(docs, "Deployment")[name]).get("env", [])}

    # No stray or misspelt variable: each is read by the config, or declared as runtime's.
    known = set(facts["config_env"]) | set(facts["runtime_env"]) | set(FACTS["common_env"])
    assert set_here <= known, f"{name}: variables nobody reads: {sorted(set_here - known)}"
    for port in facts["ports"].values():
        if port["env"]:
            assert port["env"] in set_here
    assert set(facts["limits"].values()) <= set_here

    config = load_config(monkeypatch, cls, env)
    for port_name, port in facts["ports"].items():
        served = getattr(config, port["field"])
        expected = port["port"] if port["env"] else 0  # 0: served on another port
        assert served == expected, f"{name}: {port_name} is {served}, the Deployment says {expected}"
        if port["env"]:
            assert getattr(cls(), port["field"]) == port["port"], f"{name}: default {port_name} port"

    # Each variable the Deployment sets for the config really changes the config.
    for var in sorted(set_here & set(facts["config_env"])):
        assert facts["config_env"][var] != env[var], f"services.yaml: pick another value for {var}"
        changed = load_config(monkeypatch, cls, {**env, var: facts["config_env"][var]})
        assert changed != config, f"{name}: {cls.__name__}.from_env() ignores {var}"

    grace = getattr(config, "grace", None)
    if grace is not None:  # the server's drain must end before the kubelet's SIGKILL
        pod = of_kind(docs, "Deployment")[name]["spec"]["template"]["spec"]
        pre_stop = container(of_kind(docs, "Deployment")[name])["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert grace + pre_stop < pod["terminationGracePeriodSeconds"], name


@pytest.mark.parametrize("name", list(SERVICES))
def test_probed_service_names_are_the_api(name: str) -> None:
    facts = SERVICES[name]
    proto = importlib.import_module(facts["proto"])
    full_names = {svc.full_name for svc in proto.DESCRIPTOR.services_by_name.values()}
    assert facts["grpc_service"] in full_names
    server = import_or_skip(grpc_module(name))
    if hasattr(server, "SERVICE_NAME"):
        assert facts["grpc_service"] == server.SERVICE_NAME


# -- the probes against real health services -----------------------------------------


async def kubelet_probe(port: int, probe: dict[str, Any]) -> bool:
    """What the kubelet's native gRPC probe does: Check(service), SERVING within timeout."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=probe["grpc"].get("service", "")),
                timeout=probe.get("timeoutSeconds", 1),
            )
        except grpc.RpcError:
            return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING


async def probe_results(name: str, port: int) -> dict[str, bool]:
    ctr = container(of_kind(render("base"), "Deployment")[name])
    return {kind: await kubelet_probe(port, ctr[kind]) for kind in PROBES}


NONE_PASS = dict.fromkeys(PROBES, False)
ALL_PASS = dict.fromkeys(PROBES, True)


@pytest.mark.parametrize("name", list(SERVICES))
async def test_probes_follow_warm_up_and_drain(name: str) -> None:
    """The shared health plumbing every service uses (tabagent.serving.new_server)."""
    server, health = serving.new_server([SERVICES[name]["grpc_service"]])
    port = serving.bind(server, "[::]:0")
    await server.start()
    try:
        assert await probe_results(name, port) == NONE_PASS, "probes pass before warm-up"
        await health.set_serving(True)
        assert await probe_results(name, port) == ALL_PASS
        await health.shutdown()  # SIGTERM: drain
        results = await probe_results(name, port)
        assert results["readinessProbe"] is False
    finally:
        await server.stop(0)


def real_model(name: str, config: Any) -> Any:
    """The model object each service's create_server takes, as cheap as it comes for real.

    Returns:
        A tabagent.serving.WarmModel (`async warm(metrics)`, `async close()`).
    """
    if name == "separator":
        holder, dsp = import_or_skip("separator_svc.holder"), import_or_skip("separator_svc.dsp")
        return holder.ModelHolder.of({"dsp": dsp.DspModel()})  # Demucs' own tests cover loading it
    if name == "transcriber":  # Basic Pitch's shipped ONNX weights, for real
        return import_or_skip("transcriber_svc.holder").ModelHolder.from_config(config)
    if name == "video":
        return import_or_skip("video_svc.holder").ModelHolder(config)
    import_or_skip(grpc_module(name))
    pytest.skip(f"{name}: teach real_model() how to build its model for create_server")


@pytest.mark.parametrize("name", MODEL_SERVICES)
async def test_real_service_probes(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real server, built as serve() builds it: probes fail until warm() is done."""
    cls = config_class(name)
    config = load_config(monkeypatch, cls, effective_env(render("overlays/local"), name))
    model = real_model(name, config)
    srv = import_or_skip(grpc_module(name))
    server, port = srv.create_server(config, model, address="[::]:0")
    await server.start()
    try:
        assert await probe_results(name, port) == NONE_PASS
        await server.warm()
        assert await probe_results(name, port) == ALL_PASS
    finally:
        await server.stop(0)
        await model.close()


@pytest.fixture()
async def downstream() -> AsyncIterator[dict[str, Any]]:
    """Health endpoints standing in for the three model services' (NOT_SERVING at first)."""
    started = {}
    for name in SERVICES["gateway"]["addresses"].values():
        server, health = serving.new_server([SERVICES[name]["grpc_service"]])
        port = serving.bind(server, "[::]:0")
        await server.start()
        started[name] = (server, health, port)
    yield started
    for server, _, _ in started.values():
        await server.stop(0)


async def test_real_gateway_probes(downstream: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway is ready only once every model service is: its probes follow theirs."""
    cls = config_class("gateway")
    srv = import_or_skip(grpc_module("gateway"))
    env = effective_env(render("base"), "gateway")
    for var, name in SERVICES["gateway"]["addresses"].items():
        env[var] = f"127.0.0.1:{downstream[name][2]}"
    config = load_config(monkeypatch, cls, env)
    server, port = srv.create_server(config, address="[::]:0")
    await server.start()
    warm = asyncio.create_task(server.warm())  # what serve() does: SERVING once they all are
    try:
        assert await probe_results("gateway", port) == NONE_PASS
        for _, health, _ in downstream.values():
            await health.set_serving(True)
        await asyncio.wait_for(warm, 20.0)
        assert await probe_results("gateway", port) == ALL_PASS
    finally:
        warm.cancel()
        await server.stop(0)
        await server.model.close()


async def test_connections_age_out_without_cutting_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """max_connection_age: clients reconnect (and re-resolve DNS) but running streams live on."""
    monkeypatch.setattr(lifecycle, "MAX_CONNECTION_AGE_MS", 300)
    server, health = serving.new_server(["tabagent.test.Age"])

    async def slow(request_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        async for _ in request_iterator:
            pass
        for _ in range(6):  # 1.2 s: four times the connection age
            await asyncio.sleep(0.2)
            yield context.peer().encode()

    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "tabagent.test.Age", {"Slow": grpc.stream_stream_rpc_method_handler(slow)})])
    port = serving.bind(server, "[::]:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=serving.channel_options()) as channel:
            call = channel.stream_stream("/tabagent.test.Age/Slow")
            first = [peer async for peer in call(iter([b"x"]))]
            assert len(first) == 6 and len(set(first)) == 1  # one connection, never cut
            second = [peer async for peer in call(iter([b"x"]))]
            assert second[0] != first[0], "the aged connection was not replaced"
    finally:
        await server.stop(0)
