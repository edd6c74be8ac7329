"""Two transcriber replicas behind the gateway's client-side round-robin, on loopback.

The gateway dials `ipv4:127.0.0.1:A,127.0.0.1:B`: one channel, a subchannel per replica,
streams spread round-robin, as `dns:///transcriber...:50052` does over a headless Service's
pods. Each replica has its own metrics registry, which counts the streams it served.
Stopping a replica mid-song either drains it (SIGTERM: the song finishes on it) or kills
it (the song's stream starts again on the survivor); the next songs go to the survivor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gateway_fixtures import Collected, collect, write_audio
from transcriber_fixtures import warm_model

from evalkit.examples import make_song
from launcher.embedded import LocalChain
from tabagent import serving
from tabagent.client import AsyncClient, Progress, Started, process_config
from tabagent.metrics import ServiceMetrics
from transcriber_svc.config import TranscriberConfig
from transcriber_svc.holder import ModelHolder
from transcriber_svc.server import create_server

pytestmark = pytest.mark.timeout(300)


@dataclass
class Replica:
    """One transcriber server: its own holder (sharing the warm model), health and metrics."""

    name: str
    server: serving.ServiceServer
    port: int
    holder: ModelHolder
    metrics: ServiceMetrics

    @property
    def health(self) -> serving.Health:
        return self.server.health

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, {"service": "transcriber", **labels})
        return value or 0.0

    @property
    def streams(self) -> float:
        """Transcribe streams finished here, whatever their status."""
        return sum(self.sample("tabagent_requests_total", method="Transcribe", code=code)
                   for code in ("OK", "CANCELLED", "UNAVAILABLE", "INTERNAL", "UNKNOWN"))

    @property
    def active(self) -> float:
        return self.sample("tabagent_active_streams")


async def start_replica(name: str) -> Replica:
    config = TranscriberConfig(host="127.0.0.1", port=0, metrics_port=0, max_streams=4)
    holder = ModelHolder.of(warm_model())
    metrics = ServiceMetrics("transcriber")
    server, port = create_server(config, holder, "127.0.0.1:0", metrics=metrics)
    await server.start()
    await server.warm()
    return Replica(name, server, port, holder, metrics)


@pytest.fixture()
async def replicas() -> AsyncIterator[list[Replica]]:
    started = [await start_replica("a"), await start_replica("b")]
    yield started
    for r in started:
        await r.server.stop(0)
        await r.holder.close()


@pytest.fixture()
async def chain(replicas: list[Replica]) -> AsyncIterator[LocalChain]:
    both = "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas)
    async with LocalChain(transcriber_addr=both, video=False) as c:
        yield c


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("scale")
    return {
        "short": write_audio(folder / "short.wav", make_song(3.0, seed=41).mix),
        "long": write_audio(folder / "long.wav", make_song(16.0, seed=42).mix),
    }


async def song(client: AsyncClient, path: Path) -> Collected:
    got = await collect(client, path, process_config())
    assert got.done is not None
    return got


async def test_streams_spread_over_both_replicas(chain: LocalChain, replicas: list[Replica],
                                                 songs: dict[str, Path]) -> None:
    async with AsyncClient(chain.gateway_addr, retries=0) as client:
        await asyncio.gather(*(song(client, songs["short"]) for _ in range(4)))
    counts = [r.streams for r in replicas]
    assert sum(counts) == 8  # 4 songs x 2 parts
    assert min(counts) >= 2, f"streams per replica: {counts}"
    for r in replicas:
        assert r.sample("tabagent_requests_total", method="Transcribe", code="OK") == r.streams


async def start_long_song(client: AsyncClient, path: Path, replicas: list[Replica]) -> tuple[asyncio.Task, Replica]:
    """Start the long song; once both its parts are transcribing, the replica holding one."""
    events: asyncio.Queue = asyncio.Queue()
    transcribed = False

    async def run() -> Collected:
        got = Collected()
        async for event in client.process(path, process_config()):
            await events.put(event)
            if isinstance(event, Started):
                got.started = event.job_id
        return got

    task = asyncio.create_task(run())
    deadline = time.monotonic() + 30
    while sum(r.active for r in replicas) < 2 or not transcribed:
        assert time.monotonic() < deadline, "the song's transcribe streams never started"
        try:
            event = await asyncio.wait_for(events.get(), 0.05)
        except TimeoutError:
            continue
        if isinstance(event, Progress) and event.stage == "transcribe":
            assert event.total_seconds == 0, "the song finished transcribing before the replica could be stopped"
            transcribed = transcribed or event.done_seconds > 0  # mid-song: notes are coming
    busy = max(replicas, key=lambda r: r.active)
    return task, busy


async def test_killed_replica_its_song_goes_on_on_the_survivor_and_so_do_the_next(
        chain: LocalChain, replicas: list[Replica], songs: dict[str, Path]) -> None:
    async with AsyncClient(chain.gateway_addr, retries=0) as client:
        running, victim = await start_long_song(client, songs["long"], replicas)
        survivor = next(r for r in replicas if r is not victim)
        before = survivor.streams
        await victim.server.stop(0)  # a crash: no drain, its streams are cut
        got = await asyncio.wait_for(running, 120)  # restarted on the survivor (tests/test_failover.py)
        assert got.started
        # The next songs all go to the survivor, and succeed.
        for _ in range(2):
            await song(client, songs["short"])
    assert survivor.streams - before >= 5


async def test_drained_replica_finishes_its_song_and_the_next_go_to_the_survivor(
        chain: LocalChain, replicas: list[Replica], songs: dict[str, Path]) -> None:
    async with AsyncClient(chain.gateway_addr, retries=0) as client:
        running, victim = await start_long_song(client, songs["long"], replicas)
        survivor = next(r for r in replicas if r is not victim)
        held = victim.active
        drained = asyncio.create_task(victim.server.drain(grace=60))  # SIGTERM
        await asyncio.sleep(0.2)
        assert not victim.health.ready
        during = await song(client, songs["short"])  # while the victim drains
        got = await asyncio.wait_for(running, 60)
        assert got.started
        took = await asyncio.wait_for(drained, 60)
        assert took < 60  # done when its last stream was, not at the end of the grace
        # It finished the streams it held, with success, and took no new ones.
        assert victim.sample("tabagent_requests_total", method="Transcribe", code="OK") == victim.streams == held
        before = survivor.streams
        await song(client, songs["short"])
    assert during.done is not None
    assert survivor.streams - before == 2
