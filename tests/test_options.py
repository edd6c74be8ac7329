"""Bad options get one line listing what is accepted, the same from the CLI, the SDK and HTTP,
before any model work; `tabagent fingering --midi FILE --track`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pretty_midi
import pytest

from gateway.options import parse_options
from gateway.spec import spec_from_config
from tabagent import options
from tabagent.client import process_config
from tabagent.errors import BadConfig
from tabagent.v1 import gateway_pb2, video_pb2
from video_svc.styles import STYLES

ROOT = Path(__file__).resolve().parents[1]

BAD = [
    ({"parts": "drums"}, "unknown part 'drums'; accepted: guitar, bass, lead, rhythm"),
    ({"parts": "gutar,bass"}, "unknown part 'gutar'; accepted: guitar, bass, lead, rhythm"),
    ({"capo": {"guitar": "x"}}, "capo of guitar: 'x' is not a fret; accepted: a whole number 0-12"),
    ({"capo": {"guitar": "13"}}, "capo of guitar: 13 is out of range; accepted: a whole number 0-12"),
    ({"style": "disco"}, "unknown style 'disco'; accepted: guitar_hero, concert, abstract, acoustic, metal, "
                         "jazz, synthwave"),
    ({"tuning": {"bass": "lute"}}, "tuning of bass: unknown bass tuning 'lute'; accepted: standard, drop_d, "),
    ({"parts": "guitar,rhythm"}, "lead and rhythm split the guitar part"),
    ({"parts": "bass", "capo": {"guitar": "2"}}, "capo: 'guitar' is not one of the parts asked for; accepted: bass"),
]


def _sdk(kwargs: dict) -> None:
    args = dict(kwargs)
    if isinstance(args.get("parts"), str):
        args["parts"] = args["parts"].split(",")
    process_config(**args)


def _http(kwargs: dict) -> None:
    fields: dict[str, list[str]] = {}
    for key, value in kwargs.items():
        fields[key] = [f"{p}={v}" for p, v in value.items()] if isinstance(value, dict) else [value]
    parse_options(fields)


@pytest.mark.parametrize(("kwargs", "message"), BAD)
def test_the_sdk_and_http_refuse_with_the_same_line(kwargs: dict, message: str) -> None:
    for front in (_sdk, _http):
        with pytest.raises(BadConfig) as err:
            front(kwargs)
        assert err.value.message.startswith(message), (front.__name__, err.value.message)
        assert "\n" not in err.value.message


def test_good_options_and_guitar_settings_reach_lead_and_rhythm() -> None:
    checked = options.check_song_options("lead, rhythm,bass", {"guitar": "drop_d", "bass": "28,33,38,43"},
                                         {"guitar": "2", "rhythm": 3}, "Concert")
    assert checked.parts == ("lead", "rhythm", "bass")
    assert checked.tunings["lead"].name == "drop_d" and checked.tunings["lead"].capo == 2
    assert checked.tunings["rhythm"].name == "drop_d" and checked.tunings["rhythm"].capo == 3
    assert checked.tunings["bass"].instrument == "bass"
    assert checked.style == "concert"
    cfg = process_config(parts=["lead", "rhythm"], capo={"guitar": 1})
    assert [(p.name, p.instrument, p.tuning.capo) for p in cfg.parts] == [("lead", "guitar", 1), ("rhythm", "guitar", 1)]
    spec = spec_from_config(cfg)
    assert [(p.name, p.instrument) for p in spec.parts] == [("lead", "guitar"), ("rhythm", "guitar")]
    http = parse_options({"parts": ["lead,rhythm,bass"], "capo": ["guitar=2"]})
    assert http.capo == {"lead": 2, "rhythm": 2}


def test_the_style_list_matches_the_video_service() -> None:
    assert tuple(STYLES) == options.STYLE_NAMES


def test_the_grpc_gateway_refuses_an_unknown_style_before_any_stream() -> None:
    cfg = gateway_pb2.ProcessConfig(video=True, video_config=video_pb2.RenderConfig(style="disco"))
    with pytest.raises(BadConfig, match="unknown style 'disco'; accepted: guitar_hero"):
        spec_from_config(cfg)


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "launcher.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--parts", "drums"], "unknown part 'drums'; accepted: guitar, bass, lead, rhythm"),
        (["--capo", "guitar=x"], "capo of guitar: 'x' is not a fret; accepted: a whole number 0-12"),
        (["--style", "disco", "--no-video"], "unknown style 'disco'; accepted: guitar_hero"),
        (["--tuning", "guitar=lute"], "tuning of guitar: unknown guitar tuning 'lute'; accepted: standard"),
    ],
)
def test_the_cli_refuses_before_any_model_starts(tmp_path: Path, flags: list[str], message: str) -> None:
    song = tmp_path / "song.wav"
    song.write_bytes(b"RIFF")  # never read: the options are refused first
    started = time.monotonic()
    proc = _cli("run", str(song), "--out", str(tmp_path / "out"), *flags)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == f"tabagent: {message}" or proc.stderr.startswith(f"tabagent: {message}")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "starting the chain" not in proc.stderr
    assert not (tmp_path / "out").exists()
    assert time.monotonic() - started < 30


def _two_track_midi(path: Path) -> None:
    midi = pretty_midi.PrettyMIDI()
    for name, program, pitches in (("guitar", 25, [64, 67, 71]), ("bass", 33, [40, 43])):
        inst = pretty_midi.Instrument(program=program, name=name)
        inst.notes = [pretty_midi.Note(90, p, 0.5 * i, 0.5 * i + 0.4) for i, p in enumerate(pitches)]
        midi.instruments.append(inst)
    midi.write(str(path))


def test_fingering_a_midi_file_picks_one_track(tmp_path: Path) -> None:
    mid = tmp_path / "notes.mid"
    _two_track_midi(mid)
    merged = _cli("fingering", "--midi", str(mid))
    assert merged.returncode == 2
    assert "2 instrument tracks (0 guitar, 1 bass); choose one with --track NAME|N" in merged.stderr
    guitar = _cli("fingering", "--midi", str(mid), "--track", "guitar")
    assert guitar.returncode == 0, guitar.stderr
    doc = json.loads(guitar.stdout)
    assert [n["pitch"] for n in doc["notes"]] == [64, 67, 71] and doc["instrument"] == "guitar"
    bass = _cli("fingering", "--midi", str(mid), "--track", "1")
    doc = json.loads(bass.stdout)
    assert [n["pitch"] for n in doc["notes"]] == [40, 43]
    assert doc["instrument"] == "bass" and len(doc["tuning"]) == 4
    missing = _cli("fingering", "--midi", str(mid), "--track", "drums")
    assert missing.returncode == 2 and "no track 'drums'; accepted: 0 guitar, 1 bass" in missing.stderr
