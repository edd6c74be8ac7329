"""No one in without a token: the gateway's gRPC API takes the HTTP API's key, the model
services take the gateway's service token, health checks stay open, reflection is off."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from gateway_fixtures import write_audio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from evalkit.examples import make_song
from gateway.config import GatewayConfig
from gateway.downstream import Downstream
from gateway.grpc_api import create_server
from launcher.embedded import LocalChain
from tabagent import serving
from tabagent.client import AsyncClient, Done, Unauthenticated, process_config
from tabagent.v1 import separator_pb2, separator_pb2_grpc

KEY = "grpc-key"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
async def gateway(chain: LocalChain, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    config = dataclasses.replace(
        GatewayConfig(), separator_addr=chain.addrs["separator"], transcriber_addr=chain.addrs["transcriber"],
        data_dir=str(tmp_path_factory.mktemp("auth")), api_key=KEY, service_token=chain.token)
    server, port = create_server(config, Downstream(config), address="127.0.0.1:0")
    await server.start()
    await server.warm()
    yield f"127.0.0.1:{port}"
    await server.stop(0)
    await server.model.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio(tmp_path_factory.mktemp("auth-song") / "clip.wav", make_song(2.0, seed=71).mix)


async def test_the_gateway_takes_the_api_key_and_refuses_the_rest(gateway: str, clip: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TABAGENT_API_KEY", raising=False)
    for key in ("", "wrong-key"):
        async with AsyncClient(gateway, retries=3, api_key=key) as client:
            with pytest.raises(Unauthenticated) as err:
                [e async for e in client.process(clip, process_config())]
        assert "API key" in err.value.message and client.attempts == 1  # never retried
    monkeypatch.setenv("TABAGENT_API_KEY", KEY)  # the SDK reads the key from the environment
    async with AsyncClient(gateway, retries=0) as client:
        events = [e async for e in client.process(clip, process_config(parts=["bass"]))]
    assert isinstance(events[-1], Done)
    async with grpc.aio.insecure_channel(gateway) as channel:  # probes need no key
        resp = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_a_model_service_answers_only_the_gateway(chain: LocalChain) -> None:
    assert chain.token  # the embedded chain made one
    config = separator_pb2.SeparateRequest(config=separator_pb2.SeparateConfig(model="dsp"))
    for token in ("", "not-the-token"):
        interceptors = serving.auth.bearer_interceptors(token)
        async with grpc.aio.insecure_channel(chain.addrs["separator"], interceptors=interceptors) as channel:
            call = separator_pb2_grpc.SeparatorStub(channel).Separate(iter([config]), timeout=10)
            with pytest.raises(grpc.RpcError) as err:
                [r async for r in call]
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
            assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_is_off_unless_a_setting_turns_it_on(chain: LocalChain) -> None:
    async def services(address: str, token: str = "") -> list[str]:
        interceptors = serving.auth.bearer_interceptors(token)
        async with grpc.aio.insecure_channel(address, interceptors=interceptors) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            call = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                             timeout=5)
            return [s.name async for r in call for s in r.list_services_response.service]

    with pytest.raises(grpc.RpcError) as err:
        await services(chain.addrs["separator"], chain.token)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    server, health = serving.new_server(["tabagent.test.Open"], reflection_on=True,
                                        authenticate=serving.auth.token_check("t"))
    port = serving.bind(server, "127.0.0.1:0")
    await server.start()
    try:
        with pytest.raises(grpc.RpcError) as err:
            await services(f"127.0.0.1:{port}")  # reflection asks for the token too
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "tabagent.test.Open" in await services(f"127.0.0.1:{port}", "t")
    finally:
        await server.stop(0)
