"""Titles and file names of any script, through every way in, into every artifact and header.

Cyrillic, CJK, emoji, right-to-left and combining characters go in as the song's file name
and title through the SDK (gRPC), the HTTP API (multipart, raw body, RFC 5987 file names)
and the `tabagent` CLI. Each artifact keeps what its format can hold: result.json,
MusicXML, MIDI and tab.txt the title as sent; Guitar Pro 5 (Windows-1252) a Latin
spelling. Downloads are named after the title with RFC 5987's `filename*`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import quote, unquote

import mido
import pytest
from gateway_fixtures import write_audio
from http_fixtures import HttpGateway, follow, gateway_config

from evalkit.examples import make_song
from launcher.embedded import LocalChain
from tabagent.client import AsyncClient, Done, process_config
from tabagent.exporters import read_gp5
from tabagent.exporters.text import for_codepage

ROOT = Path(__file__).resolve().parents[1]
KEY = "unicode-key"

NAMES = {
    "cyrillic": "Песня про гитару",
    "cjk": "曲 ギター 기타",
    "emoji": "Riff 🎸🔥",
    "rtl": "שיר עם גיטרה",
    "combining": "Cafe\u0301 Noe\u0308l",   # e + combining acute, e + combining diaeresis
}

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(scope="module")
async def chain():
    async with LocalChain(video=False) as c:
        yield c


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio(tmp_path_factory.mktemp("unicode") / "clip.wav", make_song(3.0, seed=61).mix)


def check_artifacts(folder: Path, title: str, filename: str) -> None:
    """Every artifact holds the title as its format can: exactly, or spelled in Latin."""
    doc = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    assert doc["source"]["title"] == title
    assert doc["source"]["filename"] == filename
    work = ET.parse(folder / "tab.musicxml").getroot().find("work/work-title")
    assert work is not None and work.text == title
    assert title in (folder / "tab.txt").read_text(encoding="utf-8")
    names = [m.name for m in mido.MidiFile(folder / "notes.mid", charset="utf-8").tracks[0] if m.type == "track_name"]
    assert names == [title]
    gp5_title = str(read_gp5(folder / "tab.gp5")["title"])
    assert gp5_title == for_codepage(title) and gp5_title
    assert "?" not in gp5_title and all(ord(c) < 256 for c in gp5_title)


async def test_sdk_any_script_in_title_and_file_name(chain: LocalChain, clip: Path, tmp_path: Path) -> None:
    async def one(script: str, name: str) -> None:
        song = tmp_path / script / f"{name}.wav"
        song.parent.mkdir()
        song.write_bytes(clip.read_bytes())
        out = tmp_path / script / "out"
        async with AsyncClient(chain.gateway_addr, retries=0) as client:
            done = [e async for e in client.process(song, process_config(filename=song.name, parts=["guitar"]),
                                                    out) if isinstance(e, Done)]
        assert done, script
        check_artifacts(out, name, song.name)

    await asyncio.gather(*(one(script, name) for script, name in NAMES.items()))


@pytest.fixture(scope="module")
async def gateway(chain: LocalChain, tmp_path_factory: pytest.TempPathFactory):
    config = gateway_config(chain, tmp_path_factory.mktemp("unicode-http") / "data", api_key=KEY)
    async with HttpGateway(config) as gw:
        yield gw


def multipart(filename_header: bytes, data: bytes) -> tuple[bytes, str]:
    """A multipart body with a Content-Disposition header given as raw bytes (what browsers send)."""
    boundary = "----tabagent-unicode"
    body = (f"--{boundary}\r\n".encode() + b"Content-Disposition: form-data; name=\"file\"; " + filename_header
            + b"\r\nContent-Type: audio/wav\r\n\r\n" + data + f"\r\n--{boundary}--\r\n".encode())
    return body, f"multipart/form-data; boundary={boundary}"


async def test_http_uploads_named_in_any_script(gateway: HttpGateway, clip: Path, tmp_path: Path) -> None:
    data = clip.read_bytes()
    cases = {  # how the name travels -> the name the job must have
        "utf8": ('filename="曲.wav"'.encode(), "曲.wav"),
        "latin": ('filename="café.wav"'.encode(), "café.wav"),
        "rfc5987": (b"filename=\"x.wav\"; filename*=UTF-8''" + quote(NAMES["emoji"] + ".wav").encode(),
                    NAMES["emoji"] + ".wav"),
        "rtl": (f'filename="{NAMES["rtl"]}.wav"'.encode(), NAMES["rtl"] + ".wav"),
        "combining": (f'filename="{NAMES["combining"]}.wav"'.encode(), "Café Noël.wav"),  # kept NFC
    }
    async with gateway.client(KEY) as client:
        for case, (header, expected) in cases.items():
            body, ctype = multipart(header, data)
            resp = await client.post("/v1/jobs?parts=guitar", content=body, headers={"content-type": ctype})
            assert resp.status_code == 202, (case, resp.text)
            job = resp.json()
            assert job["filename"] == expected, case
            events = await follow(client, f"/v1/jobs/{job['id']}/events")
            assert events[-1][0] == "done", (case, events[-1])
            title = Path(expected).stem
            folder = tmp_path / case
            folder.mkdir()
            for name in ("result.json", "tab.txt", "notes.mid", "tab.gp5", "tab.musicxml"):
                got = await client.get(f"/v1/jobs/{job['id']}/artifacts/{name}", params={"download": "1"})
                assert got.status_code == 200, (case, name)
                disposition = got.headers["content-disposition"]
                assert disposition.startswith("attachment; filename=\"") and disposition.isascii()
                star = disposition.split("filename*=UTF-8''")[-1]
                assert unquote(star) == f"{title} - {name}", (case, disposition)
                (folder / name).write_bytes(got.content)
            check_artifacts(folder, title, expected)
        # The title as an option, in a raw body upload: any script there too.
        resp = await client.post("/v1/jobs", params={"parts": "guitar", "title": NAMES["cjk"]}, content=data,
                                 headers={"content-type": "application/octet-stream"})
        assert resp.status_code == 202, resp.text
        events = await follow(client, f"/v1/jobs/{resp.json()['id']}/events")
        assert events[-1][0] == "done"
        doc = (await client.get(f"/v1/jobs/{resp.json()['id']}/artifacts/result.json")).json()
        assert doc["source"]["title"] == NAMES["cjk"]


@pytest.mark.timeout(300)
def test_cli_any_script_in_the_file_name(clip: Path, tmp_path: Path) -> None:
    name = f"{NAMES['cyrillic']} {NAMES['cjk']} {NAMES['emoji']}"
    song = tmp_path / f"{name}.wav"
    song.write_bytes(clip.read_bytes())
    out = tmp_path / "выход 出力"
    proc = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "run", str(song), "--out", str(out), "--no-video", "-q"],
        capture_output=True, text=True, encoding="utf-8", timeout=280,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "ascii"},  # a terminal that is not UTF-8
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    check_artifacts(out, name, song.name)
