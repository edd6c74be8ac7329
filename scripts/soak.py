"""`make soak`: bad inputs, killed replicas and a burst of songs against `tabagent up`, bounded.

Starts `tabagent up --no-video` on free loopback ports with two separator and two
transcriber replicas (the second of each started here, on the same service token), then:

1. sends every file of a bad-input corpus it builds (24 kinds) through HTTP and the SDK
   (gRPC), plus an oversized gRPC message: each must end in a clear error (4xx /
   INVALID_ARGUMENT, one line) or, for odd but valid audio, a finished song; anything
   else (5xx, INTERNAL, UNKNOWN, a traceback, a dead process) is a crash;
2. sends a burst of songs through the SDK (default retries) while one separator and one
   transcriber replica are SIGKILLed mid-song: songs sent / finished / lost;
3. sends more songs at once than the gateway takes with no retries: refusals
   (RESOURCE_EXHAUSTED) and how long each took to arrive;
4. prints the peak RSS (VmHWM) of every process.

Bounded: --seconds (default 900) for the whole run, --songs for the burst.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evalkit import synth  # noqa: E402
from evalkit.examples import make_song  # noqa: E402
from tabagent.client import AsyncClient, Done, InvalidInput, NotReady, Overloaded, process_config  # noqa: E402
from tabagent.errors import TabAgentError  # noqa: E402
from tabagent.serving.auth import bearer_interceptors  # noqa: E402
from tabagent.v1 import gateway_pb2, gateway_pb2_grpc  # noqa: E402

KEY = "soak-key"
MAX_UPLOAD = 8 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *args], check=True)


def wav_float(path: Path, audio: np.ndarray, rate: int = 44_100) -> None:
    """A float32 WAV (format 3), which may hold NaN and Inf."""
    data = audio.astype("<f4").tobytes()
    ch = audio.shape[1] if audio.ndim == 2 else 1
    path.write_bytes(b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt "
                     + struct.pack("<IHHIIHH", 16, 3, ch, rate, rate * 4 * ch, 4 * ch, 32)
                     + b"data" + struct.pack("<I", len(data)) + data)


def corpus(folder: Path) -> dict[str, Path]:
    """The bad (and odd) inputs, by kind."""
    rng = np.random.default_rng(7)
    song = make_song(2.0, seed=5).mix
    ok = folder / "ok.wav"
    synth.write_wav(str(ok), song)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        files[name] = folder / name
        files[name].write_bytes(data)

    good = ok.read_bytes()
    put("empty.wav", b"")
    put("text-renamed.mp3", b"This is a text file, not audio.\n" * 200)
    put("truncated.wav", good[: len(good) // 4])
    rate = 44_100
    put("lying-header.wav", b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVE" + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 2, rate, rate * 4, 4, 16) + b"data"
        + struct.pack("<I", 12174 * rate * 4) + b"\x00" * 20_000)
    files["three-hours.flac"] = folder / "three-hours.flac"
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono", "-t", "10800", "-c:a", "flac",
           str(files["three-hours.flac"]))
    files["eight-channels.wav"] = folder / "eight-channels.wav"
    synth.write_wav(str(files["eight-channels.wav"]), np.repeat(song[:, :1], 8, axis=1) * 0.5, rate)
    files["192khz.wav"] = folder / "192khz.wav"
    ffmpeg("-i", str(ok), "-ar", "192000", str(files["192khz.wav"]))
    nan = song.copy()
    nan[1000:1100] = np.nan
    wav_float(folder / "nans.wav", nan)
    files["nans.wav"] = folder / "nans.wav"
    inf = song.copy()
    inf[5000] = np.inf
    wav_float(folder / "infs.wav", inf)
    files["infs.wav"] = folder / "infs.wav"
    files["silence.wav"] = folder / "silence.wav"
    synth.write_wav(str(files["silence.wav"]), np.zeros((2 * rate, 2), np.float32), rate)
    files["one-sample.wav"] = folder / "one-sample.wav"
    synth.write_wav(str(files["one-sample.wav"]), np.zeros((1, 2), np.float32), rate)
    put("random-bytes.wav", rng.integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    put("png-renamed.mp3", b"\x89PNG\r\n\x1a\n" + rng.integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    files["video-no-audio.mp4"] = folder / "video-no-audio.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64:rate=10", "-t", "1", "-an", str(files["video-no-audio.mp4"]))
    mp3 = folder / "ok.mp3"
    ffmpeg("-i", str(ok), str(mp3))
    put("truncated.mp3", mp3.read_bytes()[: mp3.stat().st_size // 3])
    flac = folder / "ok.flac"
    ffmpeg("-i", str(ok), str(flac))
    put("truncated.flac", flac.read_bytes()[: flac.stat().st_size // 3])
    put("header-only.wav", good[:44])
    data = bytearray(mp3.read_bytes())
    data[len(data) // 3: len(data) // 3 + 4000] = rng.integers(0, 256, 4000, dtype=np.uint8).tobytes()
    put("corrupt-middle.mp3", bytes(data))
    files["u8-8khz-mono.wav"] = folder / "u8-8khz-mono.wav"
    ffmpeg("-i", str(ok), "-ac", "1", "-ar", "8000", "-c:a", "pcm_u8", str(files["u8-8khz-mono.wav"]))
    ogg = folder / "ok.ogg"
    ffmpeg("-i", str(ok), "-c:a", "libvorbis", str(ogg))
    put("truncated.ogg", ogg.read_bytes()[: ogg.stat().st_size // 2])
    m4a = folder / "ok.m4a"
    ffmpeg("-i", str(ok), "-c:a", "aac", "-movflags", "-faststart", str(m4a))
    put("m4a-without-moov.m4a", m4a.read_bytes()[: m4a.stat().st_size // 2])
    put("riff-then-text.wav", b"RIFF\x00\x00\x00\x00WAVE" + b"hello world " * 1000)
    put("zip-renamed.wav", b"PK\x03\x04" + rng.integers(0, 256, 30_000, dtype=np.uint8).tobytes())
    put("over-size-limit.wav", good + b"\x00" * (MAX_UPLOAD + 1024))
    return files


@dataclass
class Tally:
    tried: int = 0
    clear: int = 0
    finished: int = 0
    crashes: list[str] = field(default_factory=list)
    outcomes: dict[str, dict[str, str]] = field(default_factory=dict)   # kind -> way -> outcome

    def note(self, kind: str, way: str, outcome: str) -> None:
        self.outcomes.setdefault(kind, {})[way] = outcome


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message.strip() and "Traceback" not in message


async def http_input(client: httpx.AsyncClient, path: Path, tally: Tally) -> None:
    tally.tried += 1
    resp = await client.post("/v1/jobs", content=path.read_bytes(), params={"parts": "guitar"})
    if resp.status_code == 202:
        job = resp.json()["id"]
        for _ in range(600):
            state = (await client.get(f"/v1/jobs/{job}")).json()
            if state["status"] in ("done", "failed", "cancelled"):
                break
            await asyncio.sleep(0.5)
        error = state.get("error") or {}
        if state["status"] == "done":
            tally.finished += 1
            tally.note(path.name, "http", "done")
        elif 400 <= int(error.get("status") or 500) < 500 and one_line(str(error.get("message", ""))):
            tally.clear += 1
            tally.note(path.name, "http", f"job failed {error['status']}: {error['message']}")
        else:
            tally.crashes.append(f"http {path.name}: job {state['status']}: {error}")
            tally.note(path.name, "http", "CRASH")
    elif 400 <= resp.status_code < 500 and one_line(resp.json()["error"]["message"]):
        tally.clear += 1
        tally.note(path.name, "http", f"{resp.status_code}: {resp.json()['error']['message']}")
    else:
        tally.crashes.append(f"http {path.name}: {resp.status_code} {resp.text[:200]}")
        tally.note(path.name, "http", "CRASH")


async def grpc_input(address: str, path: Path, tally: Tally) -> None:
    tally.tried += 1
    try:
        async with AsyncClient(address, retries=3, api_key=KEY) as client:
            async for event in client.process(path, process_config(filename=path.name, parts=["guitar"])):
                if isinstance(event, Done):
                    tally.finished += 1
                    tally.note(path.name, "grpc", "done")
    except InvalidInput as exc:
        if one_line(exc.message):
            tally.clear += 1
            tally.note(path.name, "grpc", "INVALID_ARGUMENT")
        else:
            tally.crashes.append(f"grpc {path.name}: {exc.message[:200]}")
    except TabAgentError as exc:
        tally.crashes.append(f"grpc {path.name}: {type(exc).__name__} {exc.message[:200]}")


async def huge_message(address: str, tally: Tally) -> None:
    """One 5 MB message, over the 4 MiB limit: gRPC refuses it (RESOURCE_EXHAUSTED)."""
    tally.tried += 1
    async with grpc.aio.insecure_channel(address, interceptors=bearer_interceptors(KEY)) as channel:
        call = gateway_pb2_grpc.GatewayStub(channel).Process(iter([
            gateway_pb2.ProcessRequest(config=process_config(filename="huge.wav")),
            gateway_pb2.ProcessRequest(data=b"\x00" * (5 * 1024 * 1024))]), timeout=30)
        try:
            async for _ in call:
                pass
            tally.crashes.append("grpc huge message: accepted")
        except grpc.RpcError as exc:
            if exc.code() in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INVALID_ARGUMENT):
                tally.clear += 1
            else:
                tally.crashes.append(f"grpc huge message: {exc.code().name} {exc.details()}")


def rss_peak_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Deployment:
    """`tabagent up --no-video` plus a second separator and transcriber, on free ports."""

    def __init__(self, log: Path) -> None:
        self.ports = {name: free_port() for name in ("gateway", "http", "sep_a", "sep_b", "tr_a", "tr_b")}
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "TABAGENT_API_KEY": KEY,
                    "TABAGENT_SERVICE_TOKEN": "soak-service-token", "TABAGENT_LOG_LEVEL": "WARNING",
                    "GATEWAY_PORT": str(self.ports["gateway"]), "GATEWAY_HTTP_PORT": str(self.ports["http"]),
                    "SEPARATOR_PORT": str(self.ports["sep_a"]), "TRANSCRIBER_PORT": str(self.ports["tr_a"]),
                    "SEPARATOR_METRICS_PORT": "0", "TRANSCRIBER_METRICS_PORT": "0", "GATEWAY_METRICS_PORT": "0",
                    "SEPARATOR_ADDR": f"ipv4:127.0.0.1:{self.ports['sep_a']},127.0.0.1:{self.ports['sep_b']}",
                    "TRANSCRIBER_ADDR": f"ipv4:127.0.0.1:{self.ports['tr_a']},127.0.0.1:{self.ports['tr_b']}",
                    "SEPARATOR_MODELS": "dsp", "GATEWAY_MAX_STREAMS": "2", "GATEWAY_MAX_QUEUE": "2",
                    "TABAGENT_MAX_UPLOAD_BYTES": str(MAX_UPLOAD), "TABAGENT_DATA_DIR": str(log.parent / "data"),
                    "TABAGENT_HTTP_MAX_RUNNING": "2", "TABAGENT_HTTP_MAX_BACKLOG": "32"}
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        py = sys.executable
        self.procs["up"] = subprocess.Popen([py, "-m", "launcher.cli", "up", "--no-video"], env=self.env,
                                            stdout=self.log, stderr=subprocess.STDOUT)
        self.procs["separator-b"] = subprocess.Popen(
            [py, "-m", "separator_svc"], env={**self.env, "SEPARATOR_PORT": str(self.ports["sep_b"]),
                                              "SEPARATOR_HOST": "127.0.0.1"}, stdout=self.log, stderr=subprocess.STDOUT)
        self.procs["transcriber-b"] = subprocess.Popen(
            [py, "-m", "transcriber_svc"], env={**self.env, "TRANSCRIBER_PORT": str(self.ports["tr_b"]),
                                                "TRANSCRIBER_HOST": "127.0.0.1"}, stdout=self.log,
            stderr=subprocess.STDOUT)

    def children(self) -> dict[str, int]:
        """Every process's pid by name (the four `tabagent up` starts, found under it)."""
        pids = {"separator-b": self.procs["separator-b"].pid, "transcriber-b": self.procs["transcriber-b"].pid}
        up = self.procs["up"].pid
        try:
            kids = Path(f"/proc/{up}/task/{up}/children").read_text().split()
        except OSError:
            kids = []
        for pid in kids:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            module = cmd[2].decode() if len(cmd) > 2 else "?"
            pids[{"separator_svc": "separator-a", "transcriber_svc": "transcriber-a"}.get(module, module)] = int(pid)
        return pids

    async def ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.ports['http']}") as c:
            while time.monotonic() < deadline:
                try:
                    if (await c.get("/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(1.0)
        raise SystemExit("the deployment did not become ready")

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        self.log.close()


async def burst(address: str, song: Path, n: int, dep: Deployment, kill: bool,
                peaks: dict[str, float]) -> tuple[int, int, list[str]]:
    """n songs at once (SDK defaults); with `kill`, one separator and one transcriber replica
    are SIGKILLed once songs are being transcribed (the ones started here: `tabagent up`
    stops everything when one of its own children dies)."""
    started = asyncio.Event()

    async def one(i: int) -> str:
        try:
            async with AsyncClient(address, api_key=KEY) as client:
                async for event in client.process(song, process_config(filename=f"burst-{i}.wav")):
                    if type(event).__name__ == "Notes":
                        started.set()
                    if isinstance(event, Done):
                        return "finished"
            return "lost: no summary"
        except Overloaded as exc:  # never accepted: the gateway was full even after the retries
            return f"refused: {exc.message[:120]}"
        except TabAgentError as exc:
            return f"lost: {type(exc).__name__}: {exc.message[:160]}"

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    if kill:
        await asyncio.wait_for(started.wait(), 300)
        await asyncio.sleep(1.0)
        pids = dep.children()
        for name in ("separator-b", "transcriber-b"):
            peaks[name] = max(peaks.get(name, 0.0), rss_peak_mib(pids[name]))
            os.kill(pids[name], signal.SIGKILL)
    outcomes = await asyncio.gather(*tasks)
    return n, outcomes.count("finished"), [o for o in outcomes if o != "finished"]


async def refusals(address: str, song: Path, n: int) -> tuple[int, list[float], int]:
    """n songs at once with no retries: how many are refused, and how fast."""
    times: list[float] = []
    finished = 0

    async def one() -> None:
        nonlocal finished
        t0 = time.monotonic()
        try:
            async with AsyncClient(address, retries=0, api_key=KEY) as client:
                async for event in client.process(song, process_config()):
                    if isinstance(event, Done):
                        finished += 1
        except (Overloaded, NotReady):
            times.append(time.monotonic() - t0)

    await asyncio.gather(*(one() for _ in range(n)))
    return n, times, finished


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=900.0, help="bound on the whole run")
    parser.add_argument("--songs", type=int, default=8, help="songs in the burst with replica kills")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tabagent-soak-"))
    t_start = time.monotonic()
    (work / "corpus").mkdir()
    files = corpus(work / "corpus")
    song = work / "song.wav"
    synth.write_wav(str(song), make_song(6.0, seed=9).mix)
    dep = Deployment(work / "processes.log")
    dep.start()
    try:
        async def run() -> None:
            await dep.ready(300)
            address = f"127.0.0.1:{dep.ports['gateway']}"
            tally = Tally()
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dep.ports['http']}",
                                         headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as c:
                for path in files.values():
                    await http_input(c, path, tally)
            for path in files.values():
                await grpc_input(address, path, tally)
            await huge_message(address, tally)
            alive = {n: p.poll() is None for n, p in dep.procs.items()}
            print(f"bad inputs: {len(files)} kinds x 2 ways + 1 huge gRPC message = {tally.tried} tried; "
                  f"{tally.clear} clear errors, {tally.finished} finished (odd but valid audio), "
                  f"{len(tally.crashes)} crashes; processes alive: {all(alive.values())}")
            for crash in tally.crashes:
                print("  crash:", crash)
            for kind, ways in tally.outcomes.items():
                print(f"  {kind:24} gRPC {ways.get('grpc', 'CRASH'):16} HTTP {ways.get('http', '?')}")
            peaks = {name: rss_peak_mib(pid) for name, pid in dep.children().items()}
            sent, done, other = await burst(address, song, args.songs, dep, True, peaks)
            refused = [o for o in other if o.startswith("refused")]
            lost = [o for o in other if not o.startswith("refused")]
            print(f"burst with a separator and a transcriber replica SIGKILLed mid-song: {sent} songs sent, "
                  f"{done} finished, {len(refused)} refused (busy after the SDK's retries, never accepted), "
                  f"{len(lost)} lost")
            for why in lost:
                print(" ", why)
            n, times, finished = await refusals(address, song, 8)
            if times:
                print(f"overload: {n} songs at once, no retries, limits 2 running + 2 queued: {len(times)} refused "
                      f"(RESOURCE_EXHAUSTED), {finished} finished; refusal latency median "
                      f"{np.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")
            else:
                print(f"overload: {n} songs at once: none refused, {finished} finished")
            for name, pid in dep.children().items():
                if dep.procs.get(name) is None or dep.procs[name].poll() is None:
                    peaks[name] = max(peaks.get(name, 0.0), rss_peak_mib(pid))
            print("peak RSS (VmHWM): " + ", ".join(f"{k} {v:.0f} MiB" for k, v in sorted(peaks.items())))

        await asyncio.wait_for(run(), max(10.0, args.seconds - (time.monotonic() - t_start)))
    finally:
        dep.stop()
        shutil.rmtree(work, ignore_errors=True)
    print(f"soak took {time.monotonic() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
