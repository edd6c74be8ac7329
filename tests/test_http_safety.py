"""The HTTP API's safety: the API key, signed links, size/duration/content checks, no traversal.

Every refused request is checked to leave nothing behind in the data dir.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gateway_fixtures import write_audio
from http_fixtures import HttpGateway, files_under, follow, gateway_config

from evalkit.examples import make_song
from gateway.auth import LINK_SECONDS, Auth
from launcher.embedded import LocalChain

pytestmark = pytest.mark.timeout(300)

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_audio(tmp_path_factory.mktemp("safety") / "song.wav", make_song(3.0, seed=21).mix)


@pytest.fixture(scope="module")
async def secured(chain: LocalChain, tmp_path_factory: pytest.TempPathFactory):
    data = tmp_path_factory.mktemp("secured") / "data"
    config = gateway_config(chain, data, api_key=KEY, max_upload_bytes=1_000_000, max_seconds=10.0)
    async with HttpGateway(config) as gw:
        yield gw


@pytest.fixture(scope="module")
async def finished(secured: HttpGateway, song: Path) -> dict:
    """A done job of the secured gateway."""
    async with secured.client(KEY) as c:
        job = (await c.post("/v1/jobs", files={"file": ("song.wav", song.read_bytes())})).json()
        events = await follow(c, job["links"]["events"])
        assert events[-1][0] == "done"
        return events[-1][1]


def assert_error(resp, status: int, *words: str) -> None:
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["status"] == status
    for w in words:
        assert w in error["message"], error["message"]
    assert "Traceback" not in error["message"]


async def test_the_key_is_needed_everywhere_but_health_and_the_page(secured: HttpGateway, finished: dict,
                                                                     song: Path) -> None:
    job_id = finished["id"]
    data = Path(secured.config.data_dir)
    before = files_under(data)
    async with secured.client() as anon, secured.client("wrong-key") as wrong:
        for client in (anon, wrong):
            for method, path in (("GET", "/v1/jobs"), ("GET", f"/v1/jobs/{job_id}"),
                                 ("GET", f"/v1/jobs/{job_id}/events"),
                                 ("GET", f"/v1/jobs/{job_id}/artifacts/tab.txt"),
                                 ("DELETE", f"/v1/jobs/{job_id}")):
                resp = await client.request(method, path)
                assert_error(resp, 401, "API key")
                assert resp.headers["www-authenticate"].startswith("Bearer")
            resp = await client.post("/v1/jobs", files={"file": ("song.wav", song.read_bytes())})
            assert_error(resp, 401)
        for path in ("/healthz", "/readyz", "/metrics", "/", "/static/app.js", "/static/tab.js", "/openapi.json"):
            assert (await anon.get(path)).status_code == 200, path
        page = (await anon.get("/")).text
        assert "api-key" in page and "/static/app.js" in page
    assert files_under(data) == before
    async with secured.client(KEY) as c:
        assert (await c.get(f"/v1/jobs/{job_id}")).json()["status"] == "done"


async def test_signed_links_open_one_path_only(secured: HttpGateway, finished: dict) -> None:
    links = {a["name"]: a["url"] for a in finished["artifacts"]}
    assert all("sig=" in url and "exp=" in url for url in links.values())
    async with secured.client() as anon:
        assert (await anon.get(links["tab.txt"])).status_code == 200
        events = await follow(anon, finished["links"]["events"])
        assert events[-1][0] == "done"
        # A signature is for its own path: not another artifact, not a tampered one.
        query = links["tab.txt"].split("?", 1)[1]
        other = f"/v1/jobs/{finished['id']}/artifacts/result.json?{query}"
        assert_error(await anon.get(other), 401)
        tampered = links["tab.txt"][:-4] + ("0000" if not links["tab.txt"].endswith("0000") else "1111")
        assert_error(await anon.get(tampered), 401)
        path = links["tab.txt"].partition("?")[0]
        expired = Auth(KEY).link(path, now=time.time() - LINK_SECONDS - 60)
        assert_error(await anon.get(expired), 401)
        assert (await anon.get(Auth(KEY).link(path))).status_code == 200
        assert_error(await anon.get(Auth("another-key").link(path)), 401)


async def test_oversized_uploads_get_413_early_and_while_streaming(secured: HttpGateway) -> None:
    data = Path(secured.config.data_dir)
    before = files_under(data)
    big = b"\0" * 1_200_000
    async with secured.client(KEY) as c:
        # Declared too long: refused by Content-Length before the body is read.
        resp = await c.post("/v1/jobs", content=big, headers={"content-type": "audio/wav"})
        assert_error(resp, 413, "larger than", "limit")

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(big), 32_768):
                yield big[i:i + 32_768]

        # No Content-Length (chunked): refused while the bytes arrive.
        resp = await c.post("/v1/jobs", content=chunks(), headers={"content-type": "audio/wav"})
        assert_error(resp, 413, "larger than")
        resp = await c.post("/v1/jobs", files={"file": ("big.wav", big)})
        assert_error(resp, 413, "larger than")
    assert files_under(data) == before


async def test_duration_limit(secured: HttpGateway, tmp_path: Path) -> None:
    long = write_audio(tmp_path / "long.mp3", make_song(14.0, seed=22).mix)  # small file, 14 s > 10 s limit
    before = files_under(Path(secured.config.data_dir))
    async with secured.client(KEY) as c:
        resp = await c.post("/v1/jobs", files={"file": ("long.mp3", long.read_bytes())})
    assert_error(resp, 413, "14 s long", "limit is 10 s")
    assert files_under(Path(secured.config.data_dir)) == before


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"Dear diary, this is not a song.\n" * 200, ("not audio", "text")),
        (b"", ("empty",)),
        (bytes(range(256)) * 64, ("not in an audio format",)),
    ],
    ids=["text-renamed-mp3", "empty", "binary-garbage"],
)
async def test_not_audio_is_refused_by_content_with_415(secured: HttpGateway, content: bytes,
                                                        words: tuple[str, ...]) -> None:
    before = files_under(Path(secured.config.data_dir))
    async with secured.client(KEY) as c:
        resp = await c.post("/v1/jobs", files={"file": ("song.mp3", content, "audio/mpeg")})
        assert_error(resp, 415, *words)
        raw = await c.post("/v1/jobs?filename=song.mp3", content=content, headers={"content-type": "audio/mpeg"})
        assert_error(raw, 415, *words)
    assert files_under(Path(secured.config.data_dir)) == before


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"parts": "kazoo"}, ("unknown part", "kazoo")),
        ({"tuning": "guitar=lute"}, ("unknown guitar tuning", "lute")),
        ({"capo": "guitar=40"}, ("capo",)),
        ({"video": "maybe"}, ("video", "true or false")),
        ({"size": "huge"}, ("size",)),
        ({"colour": "blue"}, ("unknown option", "colour")),
        ({"parts": "bass", "tuning": "guitar=drop_d"}, ("not one of the parts",)),
        ({"parts": "drums"}, ("unknown part 'drums'", "accepted: guitar, bass, lead, rhythm")),
        ({"capo": "guitar=x"}, ("capo of guitar", "accepted: a whole number 0-12")),
        ({"style": "disco"}, ("unknown style 'disco'", "accepted: guitar_hero")),
        ({"parts": "guitar,lead"}, ("lead and rhythm split the guitar part",)),
    ],
)
async def test_bad_options_get_422(secured: HttpGateway, song: Path, fields: dict[str, str],
                                   words: tuple[str, ...]) -> None:
    before = files_under(Path(secured.config.data_dir))
    async with secured.client(KEY) as c:
        resp = await c.post("/v1/jobs", files={"file": ("song.wav", song.read_bytes())}, data=fields)
        assert_error(resp, 422, *words)
        raw = await c.post("/v1/jobs", content=song.read_bytes(), params=fields)
        assert_error(raw, 422, *words)
        missing = await c.post("/v1/jobs", data={"parts": "bass"})
        assert_error(missing, 422, "no file")
    assert files_under(Path(secured.config.data_dir)) == before


async def test_no_path_from_a_request_reaches_the_filesystem(secured: HttpGateway, finished: dict) -> None:
    job_id = finished["id"]
    data = Path(secured.config.data_dir)
    (data / "secret.txt").write_text("not for you")
    try:
        async with secured.client(KEY) as c:
            for name in ("..%2F..%2Fsecret.txt", "..%2Fjobs.db", "%2E%2E", "artifacts%2Ftab.txt",
                         "tab.txt%00", "upload", "stem-x.flac"):
                resp = await c.get(f"/v1/jobs/{job_id}/artifacts/{name}")
                assert resp.status_code == 404, (name, resp.text)
                assert "not for you" not in resp.text
            for bad_id in ("..", "..%2F..%2Fsecret.txt", job_id.upper(), job_id[:-1], "0" * 32):
                resp = await c.get(f"/v1/jobs/{bad_id}/artifacts/tab.txt")
                assert resp.status_code == 404, bad_id
    finally:
        (data / "secret.txt").unlink()


async def test_an_abandoned_upload_leaves_nothing(secured: HttpGateway, song: Path) -> None:
    data = Path(secured.config.data_dir)
    before = files_under(data)
    body = song.read_bytes()

    class Gone(Exception):
        pass

    partial: list[int] = []

    async def half_then_gone() -> AsyncIterator[bytes]:
        yield body[: len(body) // 2]
        for _ in range(50):  # until the server has stored part of it
            partial.extend(p.stat().st_size for p in (data / "jobs").glob("*/upload"))
            if partial:
                break
            await asyncio.sleep(0.05)
        raise Gone()

    async with secured.client(KEY) as c:
        jobs_before = (await c.get("/v1/jobs")).json()["total"]
        with pytest.raises(Gone):
            await c.post("/v1/jobs", content=half_then_gone(), headers={"content-type": "audio/wav"})
        for _ in range(50):
            if files_under(data) == before and not list((data / "jobs").glob("*/upload")):
                break
            await asyncio.sleep(0.1)
        assert partial and 0 < partial[0] < len(body)
        assert files_under(data) == before
        assert (await c.get("/v1/jobs")).json()["total"] == jobs_before


async def test_a_job_that_fails_mid_way_keeps_its_record_and_no_files(secured: HttpGateway, tmp_path: Path) -> None:
    clip = write_audio(tmp_path / "clip.mp3", make_song(6.0, seed=23).mix)
    cut = clip.read_bytes()[: clip.stat().st_size // 2]  # the header promises 6 s
    data = Path(secured.config.data_dir)
    before = files_under(data)
    async with secured.client(KEY) as c:
        resp = await c.post("/v1/jobs", files={"file": ("cut.mp3", cut)})
        assert resp.status_code == 202, resp.text  # the start decodes: the cut shows only later
        job = resp.json()
        events = await follow(c, job["links"]["events"])
        assert events[-1][0] == "failed"
        error = events[-1][1]["error"]
        assert error["status"] == 415 and "truncated" in error["message"]
        assert (await c.get(f"/v1/jobs/{job['id']}")).json()["status"] == "failed"
        assert files_under(data) == before
        assert (await c.delete(f"/v1/jobs/{job['id']}")).status_code == 204
