"""The gateway's HTTP API over real HTTP (uvicorn) in front of the real in-process chain.

Upload -> Server-Sent Events to completion -> every artifact downloaded; queueing and
its limits; cancel and delete; listing, replay for late subscribers, OpenAPI, metrics.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path

import pytest
from gateway_fixtures import write_audio
from http_fixtures import HttpGateway, files_under, follow, gateway_config, sse

from evalkit.examples import make_song
from launcher.embedded import LocalChain
from tabagent.metrics import iter_samples

pytestmark = pytest.mark.timeout(300)

TABS = {"result.json", "tab.txt", "notes.mid", "tab.gp5", "tab.musicxml"}
CONTENT_TYPES = {"result.json": "application/json", "tab.txt": "text/plain", "notes.mid": "audio/midi",
                 "tab.gp5": "application/x-guitar-pro", "tab.musicxml": "application/vnd.recordare.musicxml+xml",
                 "video.mp4": "video/mp4", "tab.pdf": "application/pdf"}


@pytest.fixture(scope="module")
def songs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("http-songs")
    return {
        "short": write_audio(d / "short.wav", make_song(4.0, seed=11).mix),
        "flac": write_audio(d / "clip.flac", make_song(3.0, seed=12).mix),
        "long": write_audio(d / "long.wav", make_song(16.0, bpm=110.0, seed=13).mix),
        # The chain runs a song several times faster than real time here: long enough to
        # leave a few seconds between the first final notes and the end.
        "player": write_audio(d / "player.wav", make_song(40.0, bpm=110.0, seed=13).mix),
    }


@pytest.fixture
async def gateway(chain: LocalChain, tmp_path: Path):
    async with HttpGateway(gateway_config(chain, tmp_path / "data", http_max_running=1, http_max_backlog=1)) as gw:
        yield gw


async def upload(client, path: Path, **options: str):
    with open(path, "rb") as f:
        return await client.post("/v1/jobs", files={"file": (path.name, f.read())}, data=options)


async def test_upload_follow_events_and_download_every_artifact(gateway: HttpGateway, songs) -> None:
    async with gateway.client() as c:
        resp = await upload(c, songs["short"], stems="true", title="Short one")
        assert resp.status_code == 202, resp.text
        job = resp.json()
        assert len(job["id"]) == 32 and job["status"] == "queued"
        assert resp.headers["location"] == f"/v1/jobs/{job['id']}"
        assert abs(job["duration"] - 4.0) < 0.05 and job["title"] == "Short one"

        events = await follow(c, job["links"]["events"])
        kinds = [e for e, _ in events]
        assert kinds[:2] == ["status", "status"] and events[1][1]["status"] == "running"
        assert kinds[-1] == "done" and kinds.count("done") == 1
        # Tab events arrive while the song is processed, before the end.
        assert "progress" in kinds and kinds.index("notes") < len(kinds) - 1
        parts = {d["part"]: d for e, d in events if e == "part"}
        assert set(parts) == {"guitar", "bass"} and parts["bass"]["tuning"]["name"] == "standard"
        streamed: dict[str, int] = {}
        for e, d in events:
            if e == "notes":
                streamed[d["part"]] = streamed.get(d["part"], 0) + len(d["notes"])
                for n in d["notes"]:
                    assert {"pitch", "start", "end", "string", "fret"} <= set(n)
        done = events[-1][1]
        assert done["status"] == "done" and done["notes"] == streamed and sum(streamed.values()) > 0

        names = {a["name"] for a in done["artifacts"]}
        assert names >= TABS
        assert {"stem-bass.flac", "stem-other.flac"} <= names
        downloaded = {}
        for a in done["artifacts"]:
            r = await c.get(a["url"])
            assert r.status_code == 200, (a["name"], r.text)
            assert len(r.content) == a["size"] > 0
            expected = "audio/flac" if a["name"].endswith(".flac") else CONTENT_TYPES[a["name"]]
            assert r.headers["content-type"].startswith(expected)
            downloaded[a["name"]] = r.content
        doc = json.loads(downloaded["result.json"])
        assert {p: len(v["notes"]) for p, v in doc["parts"].items()} == streamed
        assert b"|" in downloaded["tab.txt"] and downloaded["notes.mid"][:4] == b"MThd"
        assert downloaded["stem-bass.flac"][:4] == b"fLaC"

        # Range requests (what a <video> element does) get 206 and just those bytes.
        ranged = await c.get(done["artifacts"][0]["url"], headers={"Range": "bytes=0-9"})
        assert ranged.status_code == 206 and len(ranged.content) == 10

        status = (await c.get(f"/v1/jobs/{job['id']}")).json()
        assert status["status"] == "done" and status["notes"] == streamed
        assert {"decode", "separate", "transcribe:guitar", "transcribe:bass"} <= set(status["stages"])
        assert status["stages"]["decode"]["fraction"] == pytest.approx(1.0, abs=0.01)
        assert status["seconds"] == pytest.approx(4.0, abs=0.05) and status["wall_seconds"] > 0
    # Only the artifacts stay: no spooled upload, no stray stems.
    assert files_under(Path(gateway.config.data_dir)) == {
        f"jobs/{job['id']}/artifacts/{n}" for n in names}


async def test_raw_body_with_query_options(gateway: HttpGateway, songs) -> None:
    async with gateway.client() as c:
        resp = await c.post("/v1/jobs", content=songs["flac"].read_bytes(),
                            params=[("parts", "bass"), ("tuning", "bass=drop_d"), ("filename", "../../x.flac")],
                            headers={"content-type": "application/octet-stream"})
        assert resp.status_code == 202, resp.text
        job = resp.json()
        assert job["filename"] == "x.flac"  # a name only, never a path
        assert job["options"]["parts"] == ["bass"] and job["options"]["tuning"] == {"bass": "drop_d"}
        events = await follow(c, job["links"]["events"])
        assert events[-1][0] == "done"
        doc = (await c.get(f"/v1/jobs/{job['id']}/artifacts/result.json")).json()
        assert set(doc["parts"]) == {"bass"}
        assert doc["parts"]["bass"]["tuning"]["strings"] == [26, 33, 38, 43]


async def test_second_upload_is_queued_and_backlog_is_bounded(gateway: HttpGateway, songs) -> None:
    async with gateway.client() as c:
        first = (await upload(c, songs["long"])).json()
        # Wait until the first job holds the only running slot.
        async for event, _, _ in sse(c, first["links"]["events"]):
            if event == "progress":
                break
        second = await upload(c, songs["short"])
        assert second.status_code == 202, second.text
        queued = (await c.get(f"/v1/jobs/{second.json()['id']}")).json()
        assert queued["status"] == "queued" and queued["queue_position"] == 1
        assert (await c.get(f"/v1/jobs/{first['id']}")).json()["status"] == "running"

        before = files_under(Path(gateway.config.data_dir))
        third = await upload(c, songs["short"])
        assert third.status_code == 429, third.text
        assert int(third.headers["retry-after"]) >= 1
        assert "busy" in third.json()["error"]["message"]
        assert files_under(Path(gateway.config.data_dir)) == before

        ends = await asyncio.gather(follow(c, first["links"]["events"]),
                                    follow(c, second.json()["links"]["events"]))
        assert [e[-1][0] for e in ends] == ["done", "done"]
        a = (await c.get(f"/v1/jobs/{first['id']}")).json()
        b = (await c.get(f"/v1/jobs/{second.json()['id']}")).json()
        # One at a time: the second waited its turn.
        assert dt.datetime.fromisoformat(b["started_at"]) >= dt.datetime.fromisoformat(a["finished_at"])
        listed = (await c.get("/v1/jobs")).json()
        assert listed["total"] == 2 and [j["id"] for j in listed["jobs"]] == [b["id"], a["id"]]
        assert (await c.get("/v1/jobs", params={"status": "failed"})).json()["total"] == 0
        assert (await c.get("/v1/jobs", params={"limit": 1, "offset": 1})).json()["jobs"][0]["id"] == a["id"]


async def test_cancel_running_and_delete_finished(gateway: HttpGateway, songs) -> None:
    data = Path(gateway.config.data_dir)
    async with gateway.client() as c:
        running = (await upload(c, songs["long"])).json()
        seen = []
        async for event, _, _ in sse(c, running["links"]["events"]):
            seen.append(event)
            if event == "progress" and seen.count("progress") == 1:
                resp = await c.delete(f"/v1/jobs/{running['id']}")
                assert resp.status_code == 202 and resp.json()["status"] == "cancelled"
        assert seen[-1] == "cancelled"
        assert not (data / "jobs" / running["id"]).exists()
        assert (await c.get(f"/v1/jobs/{running['id']}")).json()["status"] == "cancelled"

        done = (await upload(c, songs["flac"])).json()
        await follow(c, done["links"]["events"])
        assert (data / "jobs" / done["id"] / "artifacts" / "tab.txt").is_file()
        for job in (done, running):
            assert (await c.delete(f"/v1/jobs/{job['id']}")).status_code == 204
            assert (await c.get(f"/v1/jobs/{job['id']}")).status_code == 404
            assert (await c.delete(f"/v1/jobs/{job['id']}")).status_code == 404
        assert files_under(data) == set()
        # The services are free again: a new song runs at once.
        again = (await upload(c, songs["flac"])).json()
        assert (await follow(c, again["links"]["events"]))[-1][0] == "done"


async def test_late_subscribers_get_a_replay_and_last_event_id(gateway: HttpGateway, songs) -> None:
    async with gateway.client() as c:
        job = (await upload(c, songs["flac"])).json()
        live = [(e, i) async for e, _, i in sse(c, job["links"]["events"])]
        assert [i for _, i in live] == [str(n) for n in range(1, len(live) + 1)]
        # A finished job's replay keeps its status, parts, notes and end, under their ids;
        # its progress is summarised in the job's stages.
        replay = [(e, i) async for e, _, i in sse(c, job["links"]["events"])]
        assert replay == [(e, i) for e, i in live if e not in ("progress", "video")]
        assert [e for e, _ in replay].count("notes") == [e for e, _ in live].count("notes") > 0
        notes = [i for e, i in live if e == "notes"]
        rest = [e async for e, _, _ in sse(c, job["links"]["events"], headers={"Last-Event-ID": notes[0]})]
        assert rest == [e for e, i in replay if int(i) > int(notes[0])]
        assert rest[-1] == "done" and (await c.get(f"/v1/jobs/{job['id']}")).json()["stages"]


async def test_openapi_health_and_metrics(gateway: HttpGateway, songs) -> None:
    async with gateway.client() as c:
        spec = (await c.get("/openapi.json")).json()
        for path in ("/v1/jobs", "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/events",
                     "/v1/jobs/{job_id}/artifacts/{name}", "/healthz", "/readyz", "/metrics"):
            assert path in spec["paths"], path
        post = spec["paths"]["/v1/jobs"]["post"]
        assert "multipart/form-data" in post["requestBody"]["content"]
        assert {"202", "413", "415", "429"} <= set(post["responses"])
        assert (await c.get("/docs")).status_code == 200
        assert (await c.get("/healthz")).json() == {"status": "ok", "services": {}}
        ready = await c.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["services"] == {"separator": "SERVING", "transcriber": "SERVING",
                                            "database": "SERVING", "jobs": "SERVING"}
        job = (await upload(c, songs["flac"])).json()
        await follow(c, job["links"]["events"])
        assert (await c.get("/v1/jobs/" + "0" * 32)).status_code == 404
        text = (await c.get("/metrics")).text
        requests = {(s["method"], s["code"]): v for s, v in iter_samples(text, "tabagent_requests_total")}
        assert requests[("POST /v1/jobs", "202")] == 1
        assert requests[("GET /v1/jobs/{job_id}", "404")] == 1
        audio = sum(v for _, v in iter_samples(text, "tabagent_audio_seconds_total"))
        assert audio == pytest.approx(3.0, abs=0.05)


async def test_readyz_reports_a_service_that_is_down(chain: LocalChain, tmp_path: Path) -> None:
    config = gateway_config(chain, tmp_path / "data", transcriber_addr="127.0.0.1:1")
    async with HttpGateway(config) as gw, gw.client() as c:
        resp = await c.get("/readyz")
        assert resp.status_code == 503
        assert resp.json()["services"]["transcriber"].startswith("UNREACHABLE")
        assert (await c.get("/healthz")).status_code == 200


async def test_the_player_data_of_a_running_and_then_a_finished_job(gateway: HttpGateway, songs) -> None:
    """While the job runs: a draft tab of the notes final so far and the upload to play; once
    done: tab.gp5, the beats that sync it, the original audio and the backing tracks."""
    from tabagent.exporters import read_gp5

    async with gateway.client() as c:
        job = (await upload(c, songs["player"], title="Long one")).json()
        base = f"/v1/jobs/{job['id']}"
        queued = await c.get(base + "/player")
        drafts = []
        source = None
        # Ask for the draft as soon as the event stream brings some final notes.
        async with c.stream("GET", base + "/events") as events:
            async for line in events.aiter_lines():
                if not line.startswith("data:") or '"final_until"' not in line:
                    continue
                event = json.loads(line[5:])
                if event.get("final_until", 0) <= 0 or not event.get("notes"):
                    continue
                resp = await c.get(base + "/player")
                if resp.status_code != 200 or resp.json()["final"]:
                    break  # the job ended in between
                data = resp.json()
                if sum(data["final_until"].values()) > 0:
                    drafts.append(data)
                    source = await c.get(data["audio"]["original"]) if "original" in data["audio"] else None
                    break
        for _ in range(600):
            if (await c.get(base)).json()["status"] in ("done", "failed"):
                break
            await asyncio.sleep(0.1)
        final = (await c.get(base + "/player")).json()
        audio = {name: await c.get(url) for name, url in final["audio"].items()}
    assert queued.status_code in (200, 409)
    assert drafts, "never saw a draft while the job ran"
    draft = drafts[-1]
    assert draft["warnings"] and draft["tempo"] > 0
    assert source is not None and source.status_code == 200 and source.content == songs["player"].read_bytes()
    assert final["final"] is True and final["duration"] == pytest.approx(40.0, abs=0.05)
    # The tab to load is the job's tab.gp5, and the beats give the recording's time of the
    # tab's beats: as many of each, both rising.
    assert len(final["beats"]) == len(final["score_beats"]) > 8
    assert final["score_beats"] == sorted(final["score_beats"]) and final["beats"] == sorted(final["beats"])
    assert {c["name"] for c in final["chords"]}
    assert set(final["audio"]) == {"original", "no-guitar", "no-bass"}
    for name, resp in audio.items():
        assert resp.status_code == 200 and resp.content[:4] == b"fLaC", name
    backing = final["backing_tracks"]
    assert set(backing) == {"guitar", "bass"} and all(b["fallback"] and "DSP" in b["note"] for b in backing.values())
    assert any("backing tracks" in w for w in final["warnings"])
    # A draft is a GP5 as the final one is, with at most the final one's notes.
    import base64
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        counts = []
        for data in (draft, final):
            path = Path(tmp) / "t.gp5"
            path.write_bytes(base64.b64decode(data["gp5"]))
            counts.append(sum(len(p["notes"]) for p in read_gp5(path)["parts"].values()))
    assert 0 < counts[0] <= counts[1], counts
