"""The whole chain over real gRPC: gateway + separator + transcriber in-process, real models.

The separator runs the DSP fallback (no Demucs weights on this machine) for the accuracy
checks, and a tiny random-weight Demucs bag in the real on-disk format for the model path.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest
from gateway_fixtures import collect, song_artifacts, write_audio

from evalkit.examples import Song, make_song
from evalkit.scoring import count_collisions, onset_scores
from launcher.embedded import LocalChain
from separator_svc.tiny import build_tiny_bag
from tabagent import result as result_doc
from tabagent.client import AsyncClient, InvalidInput, process_config
from tabagent.v1 import gateway_pb2, gateway_pb2_grpc

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
async def client(chain: LocalChain):
    async with AsyncClient(chain.gateway_addr, retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def song_wav(tmp_path_factory: pytest.TempPathFactory, song: Song) -> Path:
    return write_audio(tmp_path_factory.mktemp("songs") / "song.wav", song.mix)


async def test_song_to_tabs(client: AsyncClient, song: Song, song_wav: Path, tmp_path: Path) -> None:
    got = await collect(client, song_wav, process_config(filename="song.wav"), tmp_path)
    assert got.started and got.done is not None
    assert got.order[0] == "Started" and got.order[-1] == "Done"
    assert set(got.artifacts) == song_artifacts("guitar", "bass")
    for a in got.artifacts.values():
        assert a.path is not None and a.path.stat().st_size == a.size > 0
    # Tab events arrive before the song is done, part by part, with final_until rising.
    first_notes = got.order.index("Notes")
    assert first_notes < got.order.index("Artifact")
    for part in ("guitar", "bass"):
        finals = got.final_until[part]
        assert finals == sorted(finals)
        assert count_collisions(got.notes[part]) == 0
    # Accuracy on a synthesised song with known notes (DSP separation + real Basic Pitch).
    assert onset_scores(song.parts["guitar"], got.notes["guitar"]).f1 > 0.8
    assert onset_scores(song.parts["bass"], got.notes["bass"]).f1 > 0.7
    doc = json.loads((tmp_path / "result.json").read_text())
    assert doc["schema_version"] == 1
    assert abs(doc["duration"] - song.seconds) < 0.05
    assert 90 < doc["tempo"] < 110
    sep = [m for m in doc["models"] if m["role"] == "separator"][0]
    assert sep["fallback"] is True and sep["message"]
    # Why: the tests run offline (conftest), and result.json says so.
    assert "TABAGENT_OFFLINE=1" in sep["message"]
    assert any("separator" in w for w in doc["warnings"])
    for name, part in result_doc.load_parts(doc).items():
        tuning, notes = part
        assert len(notes) == len(got.notes[name])
        for n in notes:
            assert n.pitch == tuning.strings[n.string] + tuning.capo + n.fret
    tab = (tmp_path / "tab.txt").read_text()
    assert "|" in tab and "guitar" in tab.lower()
    assert_exports_match(doc, tmp_path)


def assert_exports_match(doc: dict, out: Path) -> None:
    """tab.gp5 (PyGuitarPro) and tab.musicxml (music21) hold result.json's notes, tuning and tempo."""
    from collections import Counter

    from tabagent.exporters import read_gp5, read_musicxml

    parts = result_doc.load_parts(doc)
    for name, reader in (("tab.gp5", read_gp5), ("tab.musicxml", read_musicxml)):
        back = reader(out / name)
        assert round(float(back["tempo"])) == round(doc["tempo"]), name
        for part, (tuning, notes) in parts.items():
            got = back["parts"][part]
            assert list(got["strings"]) == list(tuning.strings), (name, part)
            assert got["capo"] == tuning.capo
            want = Counter((n.pitch, n.string, n.fret) for n in notes)
            have = Counter((n.pitch, n.string, n.fret) for n in got["notes"])
            assert have == want, (name, part, want - have, have - want)


@pytest.mark.parametrize("suffix", [".mp3", ".flac", ".ogg", ".m4a"])
async def test_formats_decode_by_content(client: AsyncClient, tmp_path: Path, suffix: str) -> None:
    short = make_song(4.0, seed=5)
    path = write_audio(tmp_path / f"clip{suffix}", short.mix)
    renamed = path.rename(tmp_path / "clip.bin")  # the name says nothing
    got = await collect(client, renamed, process_config(filename="clip.bin"))
    assert got.done is not None and abs(got.done.seconds - 4.0) < 0.1
    assert sum(got.done.notes.values()) > 0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"this is text, not audio\n" * 40, "text"),
        (b"\x00\x01\x02\x03garbage" * 1000, "audio format"),
    ],
)
async def test_unreadable_input_is_invalid_argument(client: AsyncClient, tmp_path: Path,
                                                    content: bytes, message: str) -> None:
    path = tmp_path / "song.wav"
    path.write_bytes(content)
    with pytest.raises(InvalidInput) as err:
        await collect(client, path, process_config(filename="song.wav"))
    assert message in err.value.message
    assert "Traceback" not in err.value.message


async def test_truncated_mp3_and_the_chain_keeps_serving(client: AsyncClient, tmp_path: Path) -> None:
    clip = write_audio(tmp_path / "clip.mp3", make_song(6.0, seed=6).mix)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InvalidInput) as err:
        await collect(client, cut, process_config())
    assert "truncated" in err.value.message
    # The services are unharmed: the next song goes through.
    got = await collect(client, clip, process_config())
    assert got.done is not None


async def test_nan_and_many_channels(client: AsyncClient, tmp_path: Path) -> None:
    import numpy as np

    audio = make_song(3.0, seed=7).mix
    eight = np.repeat(audio[:, :1], 8, axis=1) * 0.5
    path = write_audio(tmp_path / "eight.flac", eight, 96_000)
    got = await collect(client, path, process_config())  # downmixed and resampled, not refused
    assert got.done is not None and abs(got.done.seconds - 3.0 * 44_100 / 96_000) < 0.1
    bad = audio.copy()
    bad[1000:1010] = np.nan
    import soundfile

    nan_path = tmp_path / "nan.wav"
    soundfile.write(str(nan_path), bad, 44_100, subtype="FLOAT")
    with pytest.raises(InvalidInput) as err:
        await collect(client, nan_path, process_config())
    assert "NaN" in err.value.message


async def test_bad_config_and_missing_config(chain: LocalChain) -> None:
    async with grpc.aio.insecure_channel(chain.gateway_addr) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)

        async def data_first():
            yield gateway_pb2.ProcessRequest(data=b"RIFF")

        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Process(data_first()):
                pass
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "ProcessConfig" in err.value.details()

        async def bad_part():
            yield gateway_pb2.ProcessRequest(config=gateway_pb2.ProcessConfig(
                parts=[gateway_pb2.PartConfig(name="kazoo")]))

        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in stub.Process(bad_part()):
                pass
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "kazoo" in err.value.details()


async def test_deadline_reaches_the_chain(chain: LocalChain, song_wav: Path, tmp_path: Path) -> None:
    from tabagent.errors import DeadlineExceeded

    # A 90 s song takes a few seconds here (about 25x real time): far past the deadline.
    long_song = write_audio(tmp_path / "long.wav", make_song(90.0, seed=4).mix)
    async with AsyncClient(chain.gateway_addr, retries=0, timeout=0.4) as short:
        with pytest.raises(DeadlineExceeded):
            await collect(short, long_song, process_config())
    # Every stream downstream ended with it: the next song runs at once.
    async with AsyncClient(chain.gateway_addr, retries=0) as c:
        got = await collect(c, song_wav, process_config(parts=["bass"]))
        assert set(got.notes) == {"bass"}


def active_streams(chain: LocalChain) -> dict[str, float]:
    """`tabagent_active_streams` of the gateway and of every service the chain started."""
    return {name: m.registry.get_sample_value("tabagent_active_streams", {"service": name}) or 0.0
            for name, m in chain.metrics.items()}


async def test_cancel_mid_song_frees_every_service(song_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cancelled song gives its slot back in every service: with one slot each and no
    queue, a slot kept would refuse the next song (RESOURCE_EXHAUSTED) and show in
    `tabagent_active_streams`."""
    for service in ("GATEWAY", "SEPARATOR", "TRANSCRIBER"):
        monkeypatch.setenv(f"{service}_MAX_STREAMS", "1")
        monkeypatch.setenv(f"{service}_MAX_QUEUE", "0")
    one_part = process_config(parts=["guitar"])
    async with LocalChain(video=False) as chain, AsyncClient(chain.gateway_addr, retries=0) as client:
        assert set(active_streams(chain)) == {"gateway", "separator", "transcriber"}
        agen = client.process(song_wav, one_part)
        async for event in agen:
            if type(event).__name__ == "Notes":
                assert active_streams(chain)["gateway"] == 1
                break
        await agen.aclose()
        for _ in range(100):
            if not any(active_streams(chain).values()):
                break
            await asyncio.sleep(0.05)
        assert active_streams(chain) == {"gateway": 0, "separator": 0, "transcriber": 0}
        got = await collect(client, song_wav, one_part)
        assert got.done is not None


async def test_tiny_demucs_bag_through_the_chain(tmp_path: Path) -> None:
    repo = build_tiny_bag(tmp_path / "demucs", "htdemucs", segment=2.0)
    clip = write_audio(tmp_path / "clip.wav", make_song(5.0, seed=8).mix)
    async with LocalChain(video=False, model_dir=str(repo)) as c, AsyncClient(c.gateway_addr, retries=0) as client:
        got = await collect(client, clip, process_config(return_stems=True), tmp_path / "out")
    assert got.done is not None
    sep = [m for m in got.done.models if m.backend == "torch"]
    assert sep and sep[0].name == "htdemucs" and not sep[0].fallback
    stems = {n for n in got.artifacts if n.startswith("stem-")}
    assert {"stem-bass.flac", "stem-drums.flac", "stem-other.flac", "stem-vocals.flac"} <= stems
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert not doc["warnings"]


async def test_video_through_the_chain(tmp_path: Path) -> None:
    import subprocess

    song = make_song(6.0, seed=9)
    clip = write_audio(tmp_path / "clip.wav", song.mix)
    config = process_config(video=True, size=(320, 180), fps=15, style="concert")
    async with LocalChain(video=True) as c, AsyncClient(c.gateway_addr, retries=0) as client:
        got = await collect(client, clip, config, tmp_path / "out")
    video = got.artifacts["video.mp4"]
    assert video.path is not None and video.size > 10_000
    # Fragments arrived while the song was still being processed, before the tab files.
    assert got.order.index("VideoFragment") < got.order.index("Artifact")
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "stream=codec_name,codec_type:format=duration",
         "-of", "json", str(video.path)], capture_output=True, text=True, check=True)
    info = json.loads(probe.stdout)
    codecs = {s["codec_type"]: s["codec_name"] for s in info["streams"]}
    assert codecs == {"video": "h264", "audio": "aac"}
    assert abs(float(info["format"]["duration"]) - song.seconds) < 0.1


async def test_lead_and_rhythm_parts_from_a_panned_mix(client: AsyncClient, tmp_path: Path) -> None:
    from evalkit import lead_rhythm

    song = next(lead_rhythm.song(7, "dev", "synth", ("stereo",), seconds=8.0))
    wav = write_audio(tmp_path / "panned.wav", song.mix)
    config = process_config(filename="panned.wav", parts=["lead", "rhythm", "bass"])
    got = await collect(client, wav, config, tmp_path)
    assert got.done is not None
    doc = json.loads((tmp_path / "result.json").read_text())
    assert list(doc["parts"]) == ["lead", "rhythm", "bass"]
    assert doc["parts"]["lead"]["instrument"] == doc["parts"]["rhythm"]["instrument"] == "guitar"
    right = wrong = 0
    for part, other in (("lead", "rhythm"), ("rhythm", "lead")):
        assert got.notes[part] and count_collisions(got.notes[part]) == 0
        right += round(onset_scores(song.truth[part], got.notes[part]).precision * len(got.notes[part]))
        wrong += round(onset_scores(song.truth[other], got.notes[part]).precision * len(got.notes[part]))
    assert right / (right + wrong) > 0.85, (right, wrong)
    tab = (tmp_path / "tab.txt").read_text()
    assert " - lead (guitar" in tab and " - rhythm (guitar" in tab and " - bass (bass" in tab
    assert_exports_match(doc, tmp_path)
