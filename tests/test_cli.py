"""`tabagent run` end to end as a user runs it: a fresh process, the embedded chain, files out."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import unicodedata
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
    for name in ("result.json", "tab.txt", "notes.mid", "tab.gp5", "tab.musicxml", "original.flac",
                 "no-guitar.flac", "no-bass.flac"):
        assert (out / name).stat().st_size > 0, name
    doc = json.loads((out / "result.json").read_text())
    assert set(doc["parts"]) == {"guitar", "bass"}
    assert doc["parts"]["guitar"]["notes"] and doc["parts"]["bass"]["notes"]
    assert set(doc["backing_tracks"]) == {"guitar", "bass"}
    if shutil.which("mscore3") or shutil.which("musescore3"):
        # Every bar the tab has is numbered: as many as the MusicXML's first part holds
        # (the pickup, measure 0, excepted), which follows the notes transcribed.
        import xml.etree.ElementTree as ET

        measures = ET.parse(out / "tab.musicxml").getroot().find("part").findall("measure")  # type: ignore[union-attr]
        bars = sum(1 for m in measures if m.get("implicit") != "yes")
        assert bars >= 2
        check_pdf(out / "tab.pdf", tmp_path / "pages", title="riff", bars=bars)
    else:
        assert not (out / "tab.pdf").exists()
        assert any(w.startswith("tab.pdf: skipped: no MuseScore") for w in doc["warnings"]), doc["warnings"]


def check_pdf(pdf: Path, pages: Path, title: str, bars: int) -> None:
    """tab.pdf renders to page images (pdftoppm) and reads back (pdftotext) with its title, the
    tuning line and numbered bars."""
    if not (shutil.which("pdftoppm") and shutil.which("pdftotext")):
        pytest.skip("needs poppler-utils (pdftoppm, pdftotext); scripts/install.sh installs it")
    pages.mkdir()
    subprocess.run(["pdftoppm", "-r", "40", "-png", str(pdf), str(pages / "page")], check=True, timeout=60)
    images = sorted(pages.glob("page*.png"))
    assert images and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in images)
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    text = unicodedata.normalize("NFKC", text)   # the engraver's fonts set "ff" as one ligature
    assert title in text
    assert "Tuning: E A D G B E" in text and "Tuning: E A D G " in text
    # Bar numbers: among the numbers on the pages (frets are numbers too), one size of type
    # holds 1, 2, 3, ... once each, one per bar.
    boxes = subprocess.run(["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True,
                           check=True, timeout=60).stdout
    by_size: dict[float, list[int]] = {}
    for y0, y1, word in re.findall(r'yMin="([\d.]+)" xMax="[\d.]+" yMax="([\d.]+)">(\d+)<', boxes):
        by_size.setdefault(round(float(y1) - float(y0), 1), []).append(int(word))
    runs = [sorted(n) for n in by_size.values() if sorted(n) == list(range(1, len(n) + 1))]
    assert any(len(r) >= bars for r in runs), by_size


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
