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
import shutil
import subprocess
import sys
import unicodedata
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


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.mark.browser
@pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                    reason="needs Debian's chromium and chromedriver (/usr/bin/chromium, /usr/bin/chromedriver)")
async def test_the_page_uploads_a_file_named_in_any_script(gateway: HttpGateway, clip: Path, tmp_path: Path,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    pytest.importorskip("selenium", reason="needs selenium (the dev extra)")
    # ChromeDriver types only the Basic Multilingual Plane: the file name is typed (Cyrillic,
    # CJK, Hebrew, a combining accent), the title with its emoji is set from script.
    name = f"{NAMES['cyrillic']} 曲 {NAMES['rtl']} Cafe\u0301.wav"
    song = tmp_path / name
    song.write_bytes(clip.read_bytes())
    title = f"{NAMES['emoji']} {NAMES['cjk']}"

    def use_the_page() -> tuple[str, str]:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By
        from selenium.webdriver.common.keys import Keys
        from selenium.webdriver.support.ui import WebDriverWait

        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", f"--user-data-dir={tmp_path_factory.mktemp('chromium-unicode')}"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
        try:
            driver.get(gateway.url + "/")
            driver.find_element(By.ID, "api-key").send_keys(KEY, Keys.TAB)
            driver.find_element(By.ID, "file").send_keys(str(song))
            driver.execute_script("document.getElementById('title').value = arguments[0];", title)
            driver.find_element(By.ID, "submit").click()
            WebDriverWait(driver, 120, 0.2).until(
                lambda d: d.find_element(By.ID, "job-status").text in ("done", "failed", "cancelled")
                or not d.find_element(By.ID, "error").get_attribute("hidden"))
            status = driver.find_element(By.ID, "job-status").text
            WebDriverWait(driver, 20, 0.2).until(lambda d: title in d.find_element(By.ID, "jobs").text)
            return status, driver.find_element(By.ID, "tab-txt").get_attribute("textContent") or ""
        finally:
            driver.quit()

    status, tab_txt = await asyncio.to_thread(use_the_page)
    assert status == "done"
    assert title in tab_txt
    async with gateway.client(KEY) as client:
        jobs = (await client.get("/v1/jobs")).json()["jobs"]
        job = next(j for j in jobs if j["title"] == title)
        assert job["filename"] == unicodedata.normalize("NFC", name)  # the browser sent it in UTF-8
        got = await client.get(f"/v1/jobs/{job['id']}/artifacts/tab.gp5", params={"download": "1"})
        assert unquote(got.headers["content-disposition"].split("filename*=UTF-8''")[-1]) == f"{title} - tab.gp5"
        folder = tmp_path / "page"
        folder.mkdir()
        for artifact in ("result.json", "tab.txt", "notes.mid", "tab.gp5", "tab.musicxml"):
            (folder / artifact).write_bytes((await client.get(f"/v1/jobs/{job['id']}/artifacts/{artifact}")).content)
    check_artifacts(folder, title, job["filename"])
