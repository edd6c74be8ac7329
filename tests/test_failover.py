"""Nothing lost: two replicas of each model service, one killed mid-song, the song goes on.

The gateway dials every service as `ipv4:127.0.0.1:A,127.0.0.1:B` (client-side round-robin,
as over a headless Service's pods). A song runs once undisturbed for reference; then the
same song runs again and, once the stage under test is halfway through, the replica
serving it is stopped without a drain (its streams cut, as SIGKILL does). The stage starts
again on the survivor from the start of the song, drops what it had already passed on,
and the song ends with the same notes as the undisturbed run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from gateway_fixtures import Collected, write_audio
from separator_fixtures import tiny_repo
from transcriber_fixtures import warm_model
from video_fixtures import ffprobe

from evalkit.examples import make_song
from gateway.config import GatewayConfig
from gateway.downstream import Downstream
from gateway.grpc_api import create_server as create_gateway
from tabagent import serving
from tabagent.client import (
    Artifact,
    AsyncClient,
    Done,
    Notes,
    NotReady,
    Progress,
    Started,
    VideoFragment,
    process_config,
)
from tabagent.metrics import ServiceMetrics

pytestmark = pytest.mark.timeout(400)

SERVICES = ("separator", "transcriber", "video")


@dataclass
class Replica:
    service: str
    server: serving.ServiceServer
    port: int
    model: object
    metrics: ServiceMetrics

    @property
    def active(self) -> float:
        return self.metrics.registry.get_sample_value("tabagent_active_streams", {"service": self.service}) or 0.0


async def start_replica(service: str, port: int = 0) -> Replica:
    metrics = ServiceMetrics(service)
    model: object
    if service == "separator":
        from separator_svc.config import SeparatorConfig
        from separator_svc.holder import ModelHolder as SeparatorHolder
        from separator_svc.server import create_server as create_separator

        sconfig = SeparatorConfig(host="127.0.0.1", port=0, metrics_port=0, model_dir=tiny_repo())
        model = SeparatorHolder.from_config(sconfig)
        server, port = create_separator(sconfig, model, f"127.0.0.1:{port}", metrics=metrics)
    elif service == "transcriber":
        from transcriber_svc.config import TranscriberConfig
        from transcriber_svc.holder import ModelHolder as TranscriberHolder
        from transcriber_svc.server import create_server as create_transcriber

        tconfig = TranscriberConfig(host="127.0.0.1", port=0, metrics_port=0)
        model = TranscriberHolder.of(warm_model())
        server, port = create_transcriber(tconfig, model, f"127.0.0.1:{port}", metrics=metrics)
    else:
        from video_svc.config import VideoConfig
        from video_svc.holder import ModelHolder as VideoHolder
        from video_svc.server import create_server as create_video

        vconfig = VideoConfig(host="127.0.0.1", port=0, metrics_port=0, diffusion="off")
        model = VideoHolder(vconfig)
        server, port = create_video(vconfig, model, f"127.0.0.1:{port}", metrics=metrics)
    await server.start()
    await server.warm()
    return Replica(service, server, port, model, metrics)


@dataclass
class Deployment:
    replicas: dict[str, list[Replica]]
    gateway: serving.ServiceServer
    address: str

    def addr(self, service: str) -> str:
        return "ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in self.replicas[service])


@pytest.fixture(scope="module")
async def deployment(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Deployment]:
    """Two replicas of every service, one gateway in front (a fresh set per module)."""
    replicas = {s: [await start_replica(s), await start_replica(s)] for s in SERVICES}
    deployment = Deployment(replicas, None, "")  # type: ignore[arg-type]
    config = dataclasses.replace(
        GatewayConfig(), host="127.0.0.1", port=0, data_dir=str(tmp_path_factory.mktemp("failover")),
        separator_addr=deployment.addr("separator"), transcriber_addr=deployment.addr("transcriber"),
        video_addr=deployment.addr("video"), failover_retries=2)
    gateway, port = create_gateway(config, Downstream(config), address="127.0.0.1:0")
    await gateway.start()
    await gateway.warm()
    deployment.gateway, deployment.address = gateway, f"127.0.0.1:{port}"
    yield deployment
    await gateway.stop(0)
    await gateway.model.close()
    for group in replicas.values():
        for r in group:
            await r.server.stop(0)
            await r.model.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio(tmp_path_factory.mktemp("failover-song") / "song.wav", make_song(12.0, seed=43).mix)


def config(video: bool):  # noqa: ANN201 - a ProcessConfig
    return process_config(filename="song.wav", video=video, size=(320, 180), fps=10)


async def run_song(client: AsyncClient, path: Path, video: bool, out: Path,
                   on_event: object = None) -> Collected:
    got = Collected()
    async for event in client.process(path, config(video), out):
        if on_event is not None:
            await on_event(event)  # type: ignore[operator]
        if isinstance(event, Started):
            got.started = event.job_id
        elif isinstance(event, Notes):
            got.notes.setdefault(event.part, []).extend(event.notes)
        elif isinstance(event, Artifact):
            got.artifacts[event.name] = event
        elif isinstance(event, Done):
            got.done = event
    return got


def key(notes: list) -> list[tuple[int, float, int, int]]:
    return sorted((n.pitch, round(n.start, 3), n.string, n.fret) for n in notes)


STAGE = {"separator": "separate", "transcriber": "transcribe", "video": "render"}


async def kill_mid_stage(deployment: Deployment, service: str, progress: asyncio.Queue) -> Replica:
    """Wait until the service's stage is under way for the song, then stop the busy replica."""
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, f"the {service} stage never got under way"
        event = await progress.get()
        done = isinstance(event, Progress) and event.stage == STAGE[service] and event.done_seconds >= 2.0
        if service == "video":
            done = isinstance(event, VideoFragment) and not event.init and event.end >= 2.0
        if done and not (isinstance(event, Progress) and event.total_seconds):
            break
    busy = [r for r in deployment.replicas[service] if r.active > 0]
    assert busy, f"no {service} replica holds the song's stream"
    victim = busy[0]
    await victim.server.stop(0)  # a crash: no drain, its streams are cut
    return victim


async def restore(deployment: Deployment, victim: Replica) -> None:
    """Start the killed replica again on its port, so the next test has two."""
    group = deployment.replicas[victim.service]
    await victim.model.close()  # type: ignore[attr-defined]
    group[group.index(victim)] = await start_replica(victim.service, victim.port)


@pytest.mark.parametrize("service", [
    "transcriber",
    pytest.param("separator", marks=pytest.mark.slow),
    pytest.param("video", marks=pytest.mark.slow),
])
async def test_a_replica_killed_mid_song_loses_nothing(deployment: Deployment, song: Path, service: str,
                                                        tmp_path: Path) -> None:
    video = service == "video"
    async with AsyncClient(deployment.address, retries=0) as client:
        reference = await run_song(client, song, video, tmp_path / "reference")
        assert reference.done is not None
        events: asyncio.Queue = asyncio.Queue()

        async def watch(event: object) -> None:
            await events.put(event)

        running = asyncio.create_task(run_song(client, song, video, tmp_path / "killed", watch))
        victim = await kill_mid_stage(deployment, service, events)
        got = await asyncio.wait_for(running, 180)
    try:
        assert got.done is not None, "the song was lost"
        for part in ("guitar", "bass"):
            assert key(got.notes[part]) == key(reference.notes[part]), part
        result = json.loads((tmp_path / "killed" / "result.json").read_text())
        assert any("started again on another replica" in w for w in result["warnings"]), result["warnings"]
        if video:
            probe = ffprobe(tmp_path / "killed" / "video.mp4")
            duration = float(probe["format"]["duration"])
            assert duration == pytest.approx(12.0, abs=0.6)
            assert (tmp_path / "killed" / "video.mp4").stat().st_size == pytest.approx(
                (tmp_path / "reference" / "video.mp4").stat().st_size, rel=0.02)
    finally:
        await restore(deployment, victim)


async def test_without_retries_a_killed_replica_fails_the_song_clearly(song: Path, tmp_path: Path) -> None:
    replicas = [await start_replica("transcriber"), await start_replica("transcriber")]
    sep = await start_replica("separator")
    config_ = dataclasses.replace(
        GatewayConfig(), host="127.0.0.1", port=0, data_dir=str(tmp_path / "data"),
        separator_addr=f"127.0.0.1:{sep.port}",
        transcriber_addr="ipv4:" + ",".join(f"127.0.0.1:{r.port}" for r in replicas), failover_retries=0)
    gateway, port = create_gateway(config_, Downstream(config_), address="127.0.0.1:0")
    await gateway.start()
    await gateway.warm()
    deployment = Deployment({"transcriber": replicas}, gateway, f"127.0.0.1:{port}")
    try:
        async with AsyncClient(deployment.address, retries=0) as client:
            events: asyncio.Queue = asyncio.Queue()

            async def watch(event: object) -> None:
                await events.put(event)

            running = asyncio.create_task(run_song(client, song, False, tmp_path / "out", watch))
            await kill_mid_stage(deployment, "transcriber", events)
            with pytest.raises(NotReady) as err:  # UNAVAILABLE
                await asyncio.wait_for(running, 30)
        message = err.value.message
        assert "unavailable in the middle of song" in message and "retry" in message
        assert "Traceback" not in message
    finally:
        await gateway.stop(0)
        await gateway.model.close()
        for r in [*replicas, sep]:
            await r.server.stop(0)
            await r.model.close()  # type: ignore[attr-defined]
