"""The web page in a real headless Chromium (Selenium): upload, stages, live tab, tab.txt, video,
downloads; the tab player synced to the recording (speed, mute, loop, the synthesiser); Swagger UI;
and no request leaves the gateway."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from gateway_fixtures import song_artifacts, write_audio
from http_fixtures import HttpGateway, follow, gateway_config

from evalkit.examples import make_song
from launcher.embedded import LocalChain

pytest.importorskip("selenium", reason="needs selenium (the dev extra)")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
KEY = "browser-key"
ARTIFACTS = song_artifacts("guitar", "bass", video=True)

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
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
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
  liveShown: !document.getElementById('live').hidden,
  warnings: document.getElementById('warnings').hidden ? '' : document.getElementById('warnings').textContent,
  jobTop: document.getElementById('job').getBoundingClientRect().top,
  player: !document.getElementById('player').hidden,
};
"""


def requests_seen(driver: Any) -> list[str]:
    """URLs the browser requested since the last call (Chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def use_the_page(driver: Any, url: str, song: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Upload through the form and watch the page until the video plays (runs in a thread)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    requests_seen(driver)
    driver.get(url + "/")
    WebDriverWait(driver, 10).until(lambda d: "API key" in d.execute_script(SNAPSHOT)["jobsNote"])
    time.sleep(0.5)
    before_key = requests_seen(driver)
    assert not [u for u in before_key if "/v1/" in u], before_key   # nothing asked before the key
    assert driver.execute_script("return document.querySelector('link[rel=icon]').href") == url + "/static/favicon.svg"
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
    # The finished tab is shown once (the player and tab.txt; the live tab is gone), the job
    # section was scrolled into view, and the DSP fallback is said up front.
    assert not final["liveShown"] and final["player"]
    assert any(-5 < s["jobTop"] < 200 for s in seen), [s["jobTop"] for s in seen[-3:]]
    assert "DSP" in final["warnings"]
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


# The gateway serves from this test's event loop: the browser is driven from a thread.

async def test_two_digit_frets_stay_apart_in_the_live_tab(gateway: HttpGateway, browser: Any) -> None:
    def run() -> str:
        browser.get(gateway.url + "/")
        return browser.execute_script("""
            const part = TabView.newPart('guitar', null);
            part.notes.push({string: 5, fret: 10, start: 0.0}, {string: 5, fret: 12, start: 0.125},
                            {string: 5, fret: 3, start: 0.25});
            return TabView.render(part);""")

    text = await asyncio.to_thread(run)
    top = [line for line in text.splitlines() if line.startswith("6|")][0]
    assert "10-12-3-" in top, top


# -- the tab player ------------------------------------------------------------------------------

PLAYER_SONG_BPM = 97.5   # not a whole BPM: the tab's constant tempo and the recording part ways


@pytest.fixture(scope="module")
async def played(gateway: HttpGateway, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A finished job (no video) the player tests open."""
    song = make_song(12.0, bpm=PLAYER_SONG_BPM, seed=52)
    path = write_audio(tmp_path_factory.mktemp("player-song") / "player.wav", song.mix)
    async with gateway.client(KEY) as c:
        resp = await c.post("/v1/jobs", files={"file": ("player.wav", path.read_bytes())},
                            data={"video": "false", "title": "Player riff"})
        assert resp.status_code == 202, resp.text
        job = resp.json()
        events = await follow(c, job["links"]["events"])
        assert events[-1][0] == "done", events[-1]
        return (await c.get(f"/v1/jobs/{job['id']}")).json()


def open_player(driver: Any, url: str, job: dict[str, Any]) -> dict[str, Any]:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    driver.execute_script("localStorage.setItem('tabagent-api-key', arguments[0]);", KEY)
    driver.get(url + "/")
    driver.execute_script("openJob(arguments[0]);", job)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return TabPlayer.state().ready"))
    return driver.execute_script("return TabPlayer.state()")


# The state at a rendered frame: the page's own frame callback (which moves the cursor to the
# recording's time) runs first in the frame, this one right after it.
AT_FRAME = "const done = arguments[arguments.length - 1]; requestAnimationFrame(() => done(TabPlayer.state()));"


def sample(driver: Any, count: int, every: float) -> list[dict[str, Any]]:
    out = []
    for _ in range(count):
        time.sleep(every)
        out.append(driver.execute_async_script(AT_FRAME))
    return out


def assert_in_sync(samples: list[dict[str, Any]]) -> None:
    """The cursor's place, as recording time, within 50 ms of the recording's current time,
    and on the beat (note or rest) the recording is playing."""
    assert all(s["playing"] for s in samples), samples
    times = [s["mediaTime"] for s in samples]
    assert times == sorted(times) and times[-1] - times[0] > 0.5, times
    errors = [abs(s["tickTime"] - s["mediaTime"]) for s in samples]
    print("sync errors (ms):", [round(1000 * e, 1) for e in errors])
    assert max(errors) <= 0.050, errors
    for s in samples:
        assert s["beat"]["start"] - 0.05 <= s["mediaTime"] <= s["beat"]["end"] + 0.05, s


async def test_the_player_follows_the_recording_at_full_and_half_speed(gateway: HttpGateway, browser: Any,
                                                                       played: dict[str, Any]) -> None:
    def run() -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        first = open_player(browser, gateway.url, played)
        browser.execute_script("TabPlayer.play();")
        full = sample(browser, 6, 0.45)
        browser.execute_script("TabPlayer.setSpeed(50);")
        half = sample(browser, 5, 0.45)
        browser.execute_script("TabPlayer.pause();")
        return first, full, half

    first, full, half = await asyncio.to_thread(run)
    assert first["mode"] == "audio" and first["source"] == "original"
    assert first["mediaSrc"].split("?")[0].endswith(f"/v1/jobs/{played['id']}/artifacts/original.flac")
    assert first["tracks"] == [{"name": "guitar", "mute": False, "solo": False},
                               {"name": "bass", "mute": False, "solo": False}]
    assert first["syncPoints"] > 10 and first["bars"] >= 4
    assert_in_sync(full)
    assert_in_sync(half)
    assert all(s["mediaRate"] == 0.5 and s["speed"] == 0.5 and s["preservesPitch"] for s in half)
    # At half speed the recording moves half as fast through the song.
    rate = (half[-1]["mediaTime"] - half[0]["mediaTime"]) / (0.45 * (len(half) - 1))
    assert 0.3 < rate < 0.7, rate
    # The recording's beats are not on the tab's constant (whole-BPM) tempo: read with that
    # tempo alone, the cursor would be more than 50 ms off somewhere in this song.
    async with gateway.client(KEY) as c:
        data = (await c.get(f"/v1/jobs/{played['id']}/player")).json()
        favicon = await c.get("/favicon.ico")
    assert favicon.status_code == 200 and favicon.headers["content-type"].startswith("image/svg")
    drift = max(abs(a - s) for a, s in zip(data["beats"], data["score_beats"], strict=True))
    print("constant-tempo drift (ms):", round(1000 * drift, 1))
    assert drift > 0.05, drift


async def test_the_player_mutes_a_part_loops_bars_and_plays_the_synthesiser(
        gateway: HttpGateway, browser: Any, played: dict[str, Any]) -> None:
    def run() -> dict[str, Any]:
        open_player(browser, gateway.url, played)
        out: dict[str, Any] = {}
        browser.execute_script("""
            const m = document.querySelector('.pl-track[data-name=guitar] .pl-mute');
            m.checked = true; m.dispatchEvent(new Event('change'));""")
        time.sleep(1.0)
        out["muted"] = browser.execute_script("return TabPlayer.state()")
        # Loop bar 3: play from inside it and watch the recording come back to its start.
        browser.execute_script("""
            document.getElementById('pl-loop-from').value = 3;
            document.getElementById('pl-loop-to').value = 3;
            const c = document.getElementById('pl-loop'); c.checked = true; c.dispatchEvent(new Event('change'));
            TabPlayer.play();""")
        out["loop"] = sample(browser, 14, 0.35)
        browser.execute_script("TabPlayer.pause();")
        browser.execute_script("""
            const s = document.getElementById('pl-source'); s.value = 'synth'; s.dispatchEvent(new Event('change'));""")
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 30).until(lambda d: d.execute_script(
            "const s = TabPlayer.state(); return s.mode === 'synth' && s.ready;"))
        browser.execute_script("TabPlayer.play();")
        out["synth"] = sample(browser, 4, 0.4)
        browser.execute_script("TabPlayer.pause();")
        return out

    out = await asyncio.to_thread(run)
    muted = out["muted"]
    assert muted["source"] == "no-guitar"
    assert muted["mediaSrc"].split("?")[0].endswith("/artifacts/no-guitar.flac")
    assert [t["mute"] for t in muted["tracks"]] == [True, False]
    loop = out["loop"]
    start, end = loop[0]["loop"]["times"]
    assert end > start
    times = [s["mediaTime"] for s in loop]
    assert all(start - 0.06 <= t <= end + 0.1 for t in times), (start, end, times)
    assert any(b < a for a, b in zip(times, times[1:], strict=False)), times   # it came back round
    assert max(abs(s["tickTime"] - s["mediaTime"]) for s in loop) <= 0.05
    synth = out["synth"]
    ticks = [s["tick"] for s in synth]
    assert all(s["mode"] == "synth" for s in synth) and ticks == sorted(ticks) and ticks[-1] > ticks[0]
    assert [t["mute"] for t in synth[-1]["tracks"]] == [True, False]


async def test_count_in_then_the_metronome_over_the_recording(gateway: HttpGateway, browser: Any,
                                                              played: dict[str, Any]) -> None:
    def run() -> list[dict[str, Any]]:
        open_player(browser, gateway.url, played)
        browser.execute_script("""
            for (const id of ['pl-countin', 'pl-metronome']) {
              const c = document.getElementById(id); c.checked = true; c.dispatchEvent(new Event('change'));
            }
            TabPlayer.seek(0); TabPlayer.play();""")
        seen = sample(browser, 10, 0.4)
        browser.execute_script("TabPlayer.pause();")
        return seen

    seen = await asyncio.to_thread(run)
    # One bar of clicks first, the recording still; then it plays, clicked on every beat.
    counting = [s for s in seen if s["countingIn"]]
    assert counting and all(s["mediaTime"] < 0.05 and s["clicks"] >= 4 for s in counting), counting
    after = [s for s in seen if not s["countingIn"] and s["playing"]]
    assert after and after[-1]["mediaTime"] > 0.5, seen
    assert after[-1]["clicks"] > counting[-1]["clicks"]


@pytest.mark.slow
async def test_the_player_shows_a_draft_while_the_job_runs(gateway: HttpGateway, browser: Any,
                                                           tmp_path: Path) -> None:
    path = write_audio(tmp_path / "long.wav", make_song(45.0, seed=53).mix)
    async with gateway.client(KEY) as c:
        job = (await c.post("/v1/jobs", files={"file": ("long.wav", path.read_bytes())},
                            data={"video": "false"})).json()

    def run() -> list[dict[str, Any]]:
        from selenium.webdriver.support.ui import WebDriverWait

        browser.get(gateway.url + "/")
        browser.execute_script("localStorage.setItem('tabagent-api-key', arguments[0]);", KEY)
        browser.get(gateway.url + "/")
        browser.execute_script("openJob(arguments[0]);", job)
        seen = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            snap = browser.execute_script("""return {status: document.getElementById('job-status').textContent,
                notes: document.getElementById('pl-notes').textContent, player: TabPlayer.state()};""")
            seen.append(snap)
            if snap["status"] == "done" and snap["player"].get("ready") and "Draft" not in snap["notes"]:
                break
            time.sleep(0.5)
        WebDriverWait(browser, 10).until(lambda d: d.execute_script("return TabPlayer.state().ready"))
        return seen

    seen = await asyncio.to_thread(run)
    drafts = [s for s in seen if s["status"] == "running" and "Draft" in s["notes"] and s["player"].get("ready")]
    assert drafts, [s["status"] for s in seen]
    assert drafts[0]["player"]["mediaSrc"].split("?")[0].endswith(f"/v1/jobs/{job['id']}/source")
    assert max(d["player"]["bars"] for d in drafts) <= seen[-1]["player"]["bars"]
    assert seen[-1]["player"]["mediaSrc"].split("?")[0].endswith("/artifacts/original.flac")


async def test_swagger_ui_is_served_locally_with_the_bearer_scheme(gateway: HttpGateway, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    def run() -> tuple[bool, str]:
        browser.get(gateway.url + "/docs")
        WebDriverWait(browser, 20).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .opblock"))
        return (bool(browser.find_elements(By.CSS_SELECTOR, "button.authorize")),
                browser.find_element(By.CSS_SELECTOR, ".swagger-ui").text)

    authorize, text = await asyncio.to_thread(run)
    assert authorize and "/v1/jobs" in text


async def test_the_page_makes_no_request_outside_the_gateway(gateway: HttpGateway, browser: Any,
                                                             played: dict[str, Any]) -> None:
    """Every request of this module's browser session (page, player, alphaTab's fonts,
    soundfont and workers, Swagger UI) went to the gateway."""
    await asyncio.to_thread(open_player, browser, gateway.url, played)
    urls = await asyncio.to_thread(requests_seen, browser)
    assert urls, "no requests logged"
    outside = [u for u in urls if not u.startswith((gateway.url + "/", "data:", "blob:"))]
    assert not outside, outside
    assert any("/vendor/alphatab/" in u for u in urls)
