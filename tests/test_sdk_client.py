"""The gRPC client SDK against real gateways: sync client, typed events and errors, safe retries."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gateway_fixtures import collect, song_artifacts, write_audio

from evalkit.examples import make_song
from gateway.config import GatewayConfig
from gateway.downstream import Downstream
from gateway.grpc_api import create_server
from launcher.embedded import LocalChain
from tabagent.client import (
    Artifact,
    AsyncClient,
    Client,
    Done,
    InvalidInput,
    Notes,
    NotReady,
    Overloaded,
    PartStarted,
    Progress,
    Started,
    TabAgentError,
    process_config,
)
from tabagent.client._async import MAX_BACKOFF, backoff_delay
from tabagent.serving import ServiceServer

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sdk-songs")
    return {"short": write_audio(d / "short.wav", make_song(4.0, seed=11).mix),
            "long": write_audio(d / "long.wav", make_song(12.0, seed=42).mix)}


@contextlib.asynccontextmanager
async def gateway(chain: LocalChain, tmp_path: Path, serving: bool = True,
                  **changes: object) -> AsyncIterator[tuple[str, ServiceServer]]:
    """A gateway gRPC server of its own in front of `chain`'s services."""
    values = {"separator_addr": chain.addrs["separator"], "transcriber_addr": chain.addrs["transcriber"],
              "data_dir": str(tmp_path / "gw"), "service_token": chain.token}
    config = dataclasses.replace(GatewayConfig(), **{**values, **changes})
    downstream = Downstream(config)
    server, port = create_server(config, downstream, address="127.0.0.1:0")
    await server.start()
    if serving:  # SERVING whatever the services say (one test points at a dead transcriber)
        await server.health.set_serving(True)
    try:
        yield f"127.0.0.1:{port}", server
    finally:
        await server.stop(0)
        await downstream.close()


def run_sync(address: str, path: Path, out_dir: Path | None, **client_args: object) -> tuple[list[object], int]:
    with Client(address, **client_args) as client:  # type: ignore[arg-type]
        events = list(client.process(path, process_config(filename=path.name), out_dir))
        return events, client.attempts


async def test_sync_client_streams_typed_events_and_writes_artifacts(chain: LocalChain, songs, tmp_path: Path) -> None:
    events, attempts = await asyncio.to_thread(run_sync, chain.gateway_addr, songs["short"], tmp_path / "out",
                                               retries=0)
    assert attempts == 1
    assert isinstance(events[0], Started) and isinstance(events[-1], Done)
    kinds = {type(e) for e in events}
    assert {Progress, PartStarted, Notes, Artifact} <= kinds
    done = events[-1]
    assert done.job_id == events[0].job_id and done.seconds == pytest.approx(4.0, abs=0.05)
    notes = {}
    for e in events:
        if isinstance(e, Notes):
            notes[e.part] = notes.get(e.part, 0) + len(e.notes)
    assert notes == {k: v for k, v in done.notes.items() if v} and notes
    written = {e.name: e for e in events if isinstance(e, Artifact)}
    assert set(written) == set(done.artifacts) == song_artifacts("guitar", "bass")
    for a in written.values():
        assert a.path == tmp_path / "out" / a.name and a.path.stat().st_size == a.size > 0

    def transcribe() -> Done:
        with Client(chain.gateway_addr, retries=0) as client:
            return client.transcribe(songs["short"], process_config(parts=["bass"]), tmp_path / "bass")

    summary = await asyncio.to_thread(transcribe)
    assert set(summary.notes) == {"bass"} and (tmp_path / "bass" / "tab.txt").is_file()


async def test_sync_client_raises_typed_errors(chain: LocalChain, tmp_path: Path) -> None:
    text = tmp_path / "song.mp3"
    text.write_text("not a song at all\n" * 100)
    with pytest.raises(InvalidInput) as err:
        await asyncio.to_thread(run_sync, chain.gateway_addr, text, None, retries=3)
    assert "text" in err.value.message and isinstance(err.value, TabAgentError)
    with pytest.raises(InvalidInput, match="no such file"):
        await asyncio.to_thread(run_sync, chain.gateway_addr, tmp_path / "missing.wav", None)


async def test_sync_client_leaving_early_cancels_the_song(chain: LocalChain, songs, tmp_path: Path) -> None:
    def leave_then_a_whole_song() -> tuple[str, Done]:
        with Client(chain.gateway_addr, retries=0) as client:
            left_at = ""
            for event in client.process(songs["long"], process_config()):
                if isinstance(event, Progress):
                    left_at = event.stage
                    break
            return left_at, client.transcribe(songs["short"], process_config(), tmp_path)

    stage, done = await asyncio.wait_for(asyncio.to_thread(leave_then_a_whole_song), 60)
    assert stage and sum(done.notes.values()) > 0


def test_backoff_grows_is_capped_and_jittered() -> None:
    for attempt in range(1, 10):
        delays = [backoff_delay(attempt, 0.5) for _ in range(50)]
        step = min(MAX_BACKOFF, 0.5 * 2 ** attempt)
        assert all(step / 2 <= d <= step for d in delays)
        assert len(set(delays)) > 1


async def test_retries_a_busy_gateway_then_succeeds(chain: LocalChain, songs, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tabagent.client._async")
    async with gateway(chain, tmp_path, max_streams=1, max_queue=0) as (address, _), \
            AsyncClient(address, retries=0) as first, AsyncClient(address, retries=0) as impatient, \
            AsyncClient(address, retries=8, backoff=0.2) as patient:
        stream = first.process(songs["long"], process_config())
        assert isinstance(await anext(stream), Started)  # the only slot is taken now
        with pytest.raises(Overloaded) as err:
            await collect(impatient, songs["short"], process_config())
        assert "busy" in err.value.message and impatient.attempts == 1
        waiting = asyncio.create_task(collect(patient, songs["short"], process_config()))
        rest = [e async for e in stream]
        assert isinstance(rest[-1], Done)
        got = await waiting
    assert got.done is not None and patient.attempts > 1
    assert any("RESOURCE_EXHAUSTED" in r.getMessage() and "retry 1 of 8" in r.getMessage()
               for r in caplog.records)


async def test_a_song_waits_for_a_gateway_that_is_not_ready_yet(chain: LocalChain, songs,
                                                                    tmp_path: Path) -> None:
    async with gateway(chain, tmp_path, serving=False) as (address, server), \
            AsyncClient(address, retries=0) as client:
        task = asyncio.create_task(collect(client, songs["short"], process_config()))
        await asyncio.sleep(0.6)
        assert not task.done()
        await server.warm()  # every service is SERVING: so is the gateway, and the song goes on
        got = await task
    assert got.done is not None and client.attempts == 1


async def test_retries_a_gateway_not_ready_within_the_songs_deadline(chain: LocalChain, songs,
                                                                      tmp_path: Path) -> None:
    async with gateway(chain, tmp_path, serving=False, ready_wait=0.3) as (address, server), \
            AsyncClient(address, retries=8, backoff=0.1) as client:
        task = asyncio.create_task(collect(client, songs["short"], process_config()))
        await asyncio.sleep(1.0)
        assert not task.done()
        await server.warm()
        got = await task
    assert got.done is not None and client.attempts > 1


async def test_no_retry_once_work_has_started(chain: LocalChain, songs, tmp_path: Path) -> None:
    # The transcriber is unreachable: the gateway accepts the song (Started), then fails
    # with UNAVAILABLE. Retrying would repeat work the gateway already did: the SDK must not.
    seen: list[str] = []
    async with gateway(chain, tmp_path, transcriber_addr="127.0.0.1:1") as (address, _), \
            AsyncClient(address, retries=5, backoff=0.1) as client:
        with pytest.raises(NotReady) as err:
            async for event in client.process(songs["short"], process_config()):
                seen.append(type(event).__name__)
    assert seen[0] == "Started" and client.attempts == 1
    assert "transcriber" in err.value.message
