"""`tabagent run` end to end as a user runs it: a fresh process, the embedded chain, files out."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit import synth
from evalkit.examples import make_song

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(300)
def test_tabagent_run_writes_the_outputs(tmp_path: Path) -> None:
    song = make_song(6.0, seed=3)
    wav = tmp_path / "riff.wav"
    synth.write_wav(str(wav), song.mix)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "run", str(wav), "--out", str(out), "--no-video", "-q"],
        capture_output=True, text=True, timeout=280, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("result.json", "tab.txt", "notes.mid", "tab.gp5", "tab.musicxml"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "result.json").read_text())
    assert set(doc["parts"]) == {"guitar", "bass"}
    assert doc["parts"]["guitar"]["notes"] and doc["parts"]["bass"]["notes"]


def test_tabagent_run_reports_bad_input_plainly(tmp_path: Path) -> None:
    fake = tmp_path / "song.mp3"
    fake.write_text("definitely not audio\n" * 50)
    proc = subprocess.run(
        [sys.executable, "-m", "launcher.cli", "run", str(fake), "--out", str(tmp_path / "o"), "--no-video", "-q"],
        capture_output=True, text=True, timeout=280, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 2
    assert "not audio" in proc.stderr
    assert "Traceback" not in proc.stderr
