"""`tabagent batch`: a folder or list of songs, resumable, with batch.json and a summary table.

Through a running gateway (the in-process chain's): done songs are skipped on the next
run, failed ones retried (or left with --skip-failed), a changed input runs again, and a
Ctrl-C (SIGINT to the real command) keeps what is done, leaves no half-written song, and
the next run finishes the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
from gateway_fixtures import write_audio

from evalkit.examples import make_song
from launcher import batch_cli
from launcher.cli import main
from launcher.embedded import LocalChain
from tabagent.errors import InvalidInput

pytestmark = pytest.mark.timeout(300)
REPO = Path(__file__).resolve().parents[1]


def batch_args(source: Path, out: Path, gateway: str, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    batch_cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["batch", str(source), "--out", str(out), "--gateway", gateway, "--no-video", "-q",
                              *extra])


def state(out: Path) -> dict[str, dict]:
    return {Path(s["input"]).name: s for s in json.loads((out / "batch.json").read_text())["songs"]}


def test_songs_from_a_folder_or_a_list(tmp_path: Path) -> None:
    (tmp_path / "b.wav").write_bytes(b"x")
    (tmp_path / "a.mp3").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in batch_cli.find_songs(tmp_path)] == ["a.mp3", "b.wav"]
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "a.mp3").write_bytes(b"x")
    listing = tmp_path / "list.txt"
    listing.write_text("# my songs\na.mp3\n\nsub/a.mp3\n")
    songs = batch_cli.find_songs(listing)
    assert songs == [tmp_path / "a.mp3", tmp_path / "sub" / "a.mp3"]
    names = batch_cli.output_names(songs)
    assert names[0].startswith("a-") and names[1].startswith("a-") and names[0] != names[1]
    assert batch_cli.output_names(songs) == names  # stable across runs: resuming finds them
    listing.write_text("missing.wav\n")
    with pytest.raises(InvalidInput, match="line 1"):
        batch_cli.find_songs(listing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidInput, match="no songs"):
        batch_cli.find_songs(empty)
    assert main(["batch", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    # Bad options: one line, before any model is loaded (the same checks as run, SDK and HTTP).
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--capo", "guitar=x"]) == 2
    assert main(["batch", str(tmp_path), "--out", str(tmp_path / "o"), "--tuning", "bass="]) == 2


async def test_a_batch_resumes_skipping_what_is_done(chain: LocalChain, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    songs = tmp_path / "songs"
    songs.mkdir()
    write_audio(songs / "one.wav", make_song(2.0, seed=71).mix)
    write_audio(songs / "two.flac", make_song(2.5, seed=72).mix)
    (songs / "broken.wav").write_text("this is not audio\n" * 50)
    out = tmp_path / "out"
    assert await batch_cli.run_batch(batch_args(songs, out, chain.gateway_addr, "--jobs", "2")) == 1
    rows = state(out)
    assert {n: r["status"] for n, r in rows.items()} == {"one.wav": "done", "two.flac": "done", "broken.wav": "failed"}
    assert "not audio" in rows["broken.wav"]["error"] and rows["one.wav"]["seconds"] > 0
    assert rows["two.flac"]["audio_seconds"] == pytest.approx(2.5, abs=0.05)
    for name in ("one", "two"):
        doc = json.loads((out / name / "result.json").read_text())
        assert set(doc["parts"]) == {"guitar", "bass"} and (out / name / "tab.txt").is_file()
    table = capsys.readouterr().out
    assert "broken" in table and "failed" in table and "not audio" in table and "2 done, 1 failed" in table
    done_at = (out / "one" / "result.json").stat().st_mtime_ns

    # Again: the done songs are skipped, the failed one is tried again.
    assert await batch_cli.run_batch(batch_args(songs, out, chain.gateway_addr)) == 1
    assert (out / "one" / "result.json").stat().st_mtime_ns == done_at
    # --skip-failed: nothing to run at all; a changed input runs again.
    assert await batch_cli.run_batch(batch_args(songs, out, chain.gateway_addr, "--skip-failed")) == 1
    write_audio(songs / "one.wav", make_song(2.0, seed=73).mix)
    assert await batch_cli.run_batch(batch_args(songs, out, chain.gateway_addr, "--skip-failed")) == 1
    assert (out / "one" / "result.json").stat().st_mtime_ns != done_at
    assert not list(out.glob(".*.partial"))


async def test_ctrl_c_keeps_what_is_done_and_the_next_run_finishes(chain: LocalChain, tmp_path: Path) -> None:
    songs = tmp_path / "songs"
    songs.mkdir()
    for i in range(3):
        write_audio(songs / f"song{i}.wav", make_song(6.0, seed=80 + i).mix)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "launcher", "batch", str(songs), "--out", str(out), "--gateway", chain.gateway_addr,
        "--no-video", "--jobs", "1", cwd=str(REPO), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ((out / "batch.json").is_file() and any(r["status"] == "done" for r in state(out).values())):
        assert proc.returncode is None and time.monotonic() < deadline, "the first song never finished"
        await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 130, err.decode()
    assert b"run the same command again" in err and b"Traceback" not in err
    rows = state(out)
    done = [n for n, r in rows.items() if r["status"] == "done"]
    assert 1 <= len(done) < 3 and all(r["status"] in ("done", "pending") for r in rows.values())
    assert not list(out.glob(".*.partial"))  # no half-written song is left
    first = {n: (out / Path(n).stem / "result.json").stat().st_mtime_ns for n in done}
    assert await batch_cli.run_batch(batch_args(songs, out, chain.gateway_addr)) == 0
    assert all(r["status"] == "done" for r in state(out).values())
    assert {n: (out / Path(n).stem / "result.json").stat().st_mtime_ns for n in done} == first
