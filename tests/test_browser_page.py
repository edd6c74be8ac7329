"""The web page in a real headless Chromium (Selenium): upload, stages, live tab, tab.txt, video, downloads."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from gateway_fixtures import write_audio
from http_fixtures import HttpGateway, gateway_config

from evalkit.examples import make_song
from launcher.embedded import LocalChain

pytest.importorskip("selenium", reason="needs selenium (the dev extra)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
KEY = "browser-key"
ARTIFACTS = {"result.json", "tab.txt", "notes.mid", "tab.gp5", "tab.musicxml", "video.mp4"}

pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()),
                       reason="needs Debian's chromium and chromedriver (/usr/bin/chromium, /usr/bin/chromedriver)"),
]


@pytest.fixture(scope="module")
async def chain():
    async with LocalChain(video=True) as c:
        yield c


@pytest.fixture(scope="module")
async def gateway(chain: LocalChain, tmp_path_factory: pytest.TempPathFactory):
    config = gateway_config(chain, tmp_path_factory.mktemp("browser") / "data", api_key=KEY)
    async with HttpGateway(config) as gw:
        yield gw


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--autoplay-policy=no-user-gesture-required", "--window-size=1280,1600",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio(tmp_path_factory.mktemp("browser-song") / "riff.mp3", make_song(8.0, seed=51).mix)


SNAPSHOT = """
const rows = [...document.querySelectorAll('#stages .stage')];
return {
  status: document.getElementById('job-status').textContent,
  stages: Object.fromEntries(rows.map(r => [r.dataset.stage, Number(r.querySelector('progress').value || 0)])),
  liveTab: [...document.querySelectorAll('#live-tab .part-tab')].map(p => p.textContent).join('\\n'),
  tabTxt: document.getElementById('tab-txt').textContent,
  links: [...document.querySelectorAll('#artifacts a')].map(a => [a.textContent, a.getAttribute('href')]),
  error: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
  video: (v => ({readyState: v.readyState, duration: v.duration || 0, src: v.currentSrc,
                 error: v.error ? v.error.code : 0}))(document.getElementById('video')),
  jobs: [...document.querySelectorAll('#jobs tbody tr')].map(r => r.dataset.job),
  jobsNote: document.getElementById('jobs-note').textContent,
};
"""


def use_the_page(driver: Any, url: str, song: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Upload through the form and watch the page until the video plays (runs in a thread)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(url + "/")
    WebDriverWait(driver, 10).until(lambda d: "API key" in d.execute_script(SNAPSHOT)["jobsNote"])
    key = driver.find_element(By.ID, "api-key")
    key.send_keys(KEY, Keys.TAB)  # "change": stored, the job list reloads with the key
    driver.find_element(By.ID, "file").send_keys(str(song))
    Select(driver.find_element(By.ID, "size")).select_by_value("640x360")
    driver.find_element(By.ID, "title").send_keys("Browser riff")
    driver.find_element(By.ID, "submit").click()
    seen = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        snap = driver.execute_script(SNAPSHOT)
        seen.append(snap)
        if snap["error"] or snap["status"] in ("failed", "cancelled"):
            break
        if snap["status"] == "done" and snap["tabTxt"] and snap["video"]["readyState"] >= 1:
            break
        time.sleep(0.1)
    WebDriverWait(driver, 10).until(lambda d: d.execute_script(SNAPSHOT)["jobs"])
    return seen, driver.execute_script(SNAPSHOT)


async def test_the_page_uploads_shows_progress_tab_video_and_downloads(gateway: HttpGateway, browser: Any,
                                                                       song: Path) -> None:
    seen, final = await asyncio.to_thread(use_the_page, browser, gateway.url, song)
    assert not final["error"], final["error"]
    assert final["status"] == "done", final
    # Stages moved while the job ran, and the tab grew before the job was done.
    running = [s for s in seen if s["status"] == "running"]
    assert running, "never saw the job running"
    assert any(s["stages"] for s in running)
    assert any("|" in s["liveTab"] and any(ch.isdigit() for ch in s["liveTab"]) for s in running + seen)
    assert {"decode", "separate", "transcribe:guitar", "transcribe:bass", "render"} <= set(final["stages"])
    assert all(v > 0 for v in final["stages"].values()), final["stages"]
    assert "|" in final["tabTxt"] and "Browser riff" in final["tabTxt"]
    # The video element loaded the artifact (metadata at least) and knows its length.
    assert final["video"]["error"] == 0 and final["video"]["readyState"] >= 1
    assert final["video"]["duration"] == pytest.approx(8.0, abs=0.5)
    assert "/artifacts/video.mp4" in final["video"]["src"] and "sig=" in final["video"]["src"]
    links = dict(final["links"])
    assert set(links) == ARTIFACTS
    # Every download link works as it stands (signed: no header needed).
    async with gateway.client() as anon:
        for name, href in links.items():
            resp = await anon.get(href)
            assert resp.status_code == 200, (name, resp.text)
            assert "attachment" in resp.headers["content-disposition"]
    assert len(final["jobs"]) == 1
