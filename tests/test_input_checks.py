"""Every way in checks a file before any model works on it, and says truthfully what is wrong.

A FLAC that really holds three hours is too long (413 / INVALID_ARGUMENT) at once, on HTTP,
gRPC and the CLI; a small WAV whose header declares three hours is truncated, not long; the
CLI refuses an empty file before it loads a model.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from http_fixtures import HttpGateway, gateway_config

from launcher.embedded import LocalChain
from tabagent.client import AsyncClient, InvalidInput, process_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    long = folder / "three-hours.flac"  # silence compresses: 3 h of real audio in ~2 MB
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "anullsrc=r=8000:cl=mono",
                    "-t", "10800", "-c:a", "flac", str(long)], check=True)
    rate = 44_100
    lying = folder / "lying.wav"  # 20 KB of data, a header that declares 12174 s
    lying.write_bytes(b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVE" + b"fmt "
                      + struct.pack("<IHHIIHH", 16, 1, 2, rate, rate * 4, 4, 16)
                      + b"data" + struct.pack("<I", 12174 * rate * 4) + b"\x00" * 20_000)
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    return {"long": long, "lying": lying, "empty": empty}


def separate_calls(chain: LocalChain) -> float:
    registry = chain.metrics["separator"].registry
    return sum(registry.get_sample_value("tabagent_requests_total",
                                         {"service": "separator", "method": "Separate", "code": code}) or 0.0
               for code in ("OK", "INVALID_ARGUMENT", "CANCELLED", "UNAVAILABLE", "INTERNAL"))


async def test_grpc_refuses_before_any_model_work(chain: LocalChain, files: dict[str, Path]) -> None:
    before = separate_calls(chain)
    async with AsyncClient(chain.gateway_addr, retries=0) as client:
        started = time.monotonic()
        with pytest.raises(InvalidInput) as long:
            [e async for e in client.process(files["long"], process_config())]
        took = time.monotonic() - started
        with pytest.raises(InvalidInput) as lying:
            [e async for e in client.process(files["lying"], process_config())]
    assert "10800 s long; the limit is 3600 s" in long.value.message and took < 10
    assert "truncated" in lying.value.message and "12174" in lying.value.message
    assert separate_calls(chain) == before  # the separator never saw either song


async def test_http_says_truncated_for_a_lying_header(chain: LocalChain, files: dict[str, Path],
                                                     tmp_path: Path) -> None:
    async with HttpGateway(gateway_config(chain, tmp_path / "data")) as gw, gw.client() as client:
        lying = await client.post("/v1/jobs", content=files["lying"].read_bytes())
        long = await client.post("/v1/jobs", content=files["long"].read_bytes())
    assert lying.status_code == 415 and "truncated" in lying.json()["error"]["message"]
    assert long.status_code == 413 and "limit" in long.json()["error"]["message"]


@pytest.mark.parametrize("name,says", [("empty", "empty"), ("long", "limit is 3600 s"), ("lying", "truncated")])
def test_cli_refuses_before_warming_models(files: dict[str, Path], tmp_path: Path, name: str, says: str) -> None:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "launcher.cli", "run", str(files[name]), "--out",
                           str(tmp_path / "out"), "--no-video"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr
    assert "starting the chain" not in proc.stderr  # no model was loaded
    assert time.monotonic() - started < 30
    assert not (tmp_path / "out").exists()
