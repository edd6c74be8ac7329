"""The fingering engine: playable, collision-free, complete, streaming like the whole piece."""

from __future__ import annotations

import copy
import io
import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pretty_midi
import pytest

from evalkit.fingering_corpus import PIECES, by_name
from evalkit.scoring import count_collisions
from launcher.fingering_cli import run
from tabagent import fingering, fingering_search
from tabagent import tuning as tunings
from tabagent.errors import BadConfig
from tabagent.fingering import FingeringResult, StreamingFingerer, assign, finger_json, lowest_fret
from tabagent.fretboard import weights_for
from tabagent.notes import Note

GUITAR = tunings.standard("guitar")


def _bare(notes: list[Note]) -> list[Note]:
    out = [copy.copy(n) for n in notes]
    for n in out:
        n.string = n.fret = -1
        n.technique = ""
    return out


def _playable(notes: list[Note], tuning: tunings.Tuning) -> None:
    for n in notes:
        assert 0 <= n.string < len(tuning.strings)
        assert 0 <= n.fret <= tuning.frets
        assert tuning.sounding[n.string] + n.fret == n.pitch


@pytest.mark.parametrize("piece", PIECES, ids=lambda p: p.name)
def test_every_piece_is_placed_playably_without_collisions(piece) -> None:
    tuning = piece.tuning_obj()
    notes = _bare(piece.notes())
    result = assign(notes, tuning)
    assert len(result.notes) == len(notes) and not result.out_of_range
    _playable(result.notes, tuning)
    assert count_collisions(result.notes) == 0
    # Each chord's fretted notes fit one hand.
    chords: dict[float, list[Note]] = {}
    for n in result.notes:
        chords.setdefault(n.start, []).append(n)
    for chord in chords.values():
        fretted = [n.fret for n in chord if n.fret > 0]
        assert not fretted or max(fretted) - min(fretted) <= 5


def test_out_of_range_is_reported_not_dropped() -> None:
    notes = [Note(30, 0.0, 0.5), Note(40, 0.0, 0.5), Note(100, 0.5, 1.0), Note(64, 0.5, 1.0)]
    result = assign(notes, GUITAR)
    assert [n.pitch for n in result.out_of_range] == [30, 100]
    assert all(n.string == -1 and n.fret == -1 for n in result.out_of_range)
    assert sorted(n.pitch for n in result.notes) == [40, 64]


def test_more_notes_than_strings_never_double_up() -> None:
    chord = [Note(p, 0.0, 1.0, velocity=0.5 if p == 52 else 0.8) for p in (40, 45, 50, 52, 55, 59, 64)]
    result = assign(chord, GUITAR)
    assert len(result.notes) == 6 and [n.pitch for n in result.out_of_range] == [52]
    assert len({n.string for n in result.notes}) == 6


def test_sustained_note_keeps_its_string() -> None:
    # A low A rings for two seconds while a melody moves around it.
    drone = Note(45, 0.0, 2.0)
    melody = [Note(p, 0.25 * k + 0.25, 0.25 * k + 0.5) for k, p in enumerate((47, 48, 50, 52, 53, 55))]
    result = assign([drone, *melody], GUITAR)
    assert drone.end == 2.0
    assert all(n.string != drone.string for n in melody)
    assert count_collisions(result.notes) == 0


def test_overlaps_that_cannot_be_avoided_are_cut() -> None:
    # Two sustained low notes only the low E string can play: the first is cut.
    a, b = Note(40, 0.0, 2.0), Note(41, 1.0, 3.0)
    result = assign([a, b], GUITAR)
    assert a.string == b.string == 0 and a.end == 1.0
    assert count_collisions(result.notes) == 0


def test_capo_and_max_fret() -> None:
    capo = tunings.named("guitar", "standard", capo=2)
    notes = [Note(41, 0.0, 0.5), Note(42, 0.5, 1.0), Note(54, 1.0, 1.5)]
    result = assign(notes, capo)
    assert [n.pitch for n in result.out_of_range] == [41]
    assert (notes[1].string, notes[1].fret) == (0, 0)
    assert all(capo.sounding[n.string] + n.fret == n.pitch for n in result.notes)
    short = tunings.named("guitar", "standard", max_fret=12)
    result = assign([Note(88, 0.0, 0.5), Note(76, 0.5, 1.0)], short)
    assert [n.pitch for n in result.out_of_range] == [88] and result.notes[0].fret == 12


@pytest.mark.parametrize(
    ("instrument", "name"),
    [("guitar", "drop_d"), ("guitar", "dadgad"), ("guitar", "open_g"), ("guitar", "seven_standard"),
     ("bass", "standard"), ("bass", "five_standard"), ("bass", "six_standard")],
)
def test_any_tuning_plays_its_whole_range(instrument: str, name: str) -> None:
    tuning = tunings.named(instrument, name)
    pitches = list(range(tuning.lowest, tuning.highest + 1))
    notes = [Note(p, 0.2 * i, 0.2 * i + 0.15) for i, p in enumerate(pitches)]
    result = assign(notes, tuning)
    assert not result.out_of_range
    _playable(result.notes, tuning)


def _line(events: list[int | tuple[int, ...]], capo: int = 0, step: float = 0.25) -> list[Note]:
    """Notes a step apart; a tuple is a chord. Pitches are written as if without the capo."""
    notes = []
    for i, event in enumerate(events):
        for pitch in event if isinstance(event, tuple) else (event,):
            notes.append(Note(pitch + capo, i * step, (i + 1) * step))
    return notes


@pytest.mark.parametrize("capo", [0, 4])
def test_open_position_reaches_the_fifth_fret_and_keeps_its_open_strings(capo: int) -> None:
    # Fingerpicking in first position (maroon5_payphone's opening, capo 4): the pinky
    # reaches fret 5 on the top string instead of the hand moving up and fretting
    # the notes the open strings give.
    tuning = tunings.named("guitar", "standard", capo)
    notes = _line([59, 60, 62, 69, 48, 55, (59, 67), 55, (48, 67), 66, 62, 60, 43, 50, (55, 60), 43], capo)
    assign(notes, tuning)
    got = [(n.string, n.fret) for n in notes]
    assert got[:4] == [(4, 0), (4, 1), (4, 3), (5, 5)]
    assert max(n.fret for n in notes) == 5
    assert sum(n.fret == 0 for n in notes) >= 6


def test_fingerpicked_chords_skip_strings_between_bass_and_treble() -> None:
    # A bass note under open treble strings (G: 3 on the low E, open G and B) and a C
    # shape picked without its D-string note are held shapes, not strums with muted strings.
    pinch = _line([(43, 55, 59), 55, 59, 50, (43, 55, 59), 55, 59, 50])
    assign(pinch, GUITAR)
    assert [(n.string, n.fret) for n in pinch[:3]] == [(0, 3), (3, 0), (4, 0)]
    held = _line([(48, 55, 60, 64), 55, 60, 64, (48, 55, 60, 64)])
    assign(held, GUITAR)
    assert [(n.string, n.fret) for n in held[:4]] == [(1, 3), (3, 0), (4, 1), (5, 0)]


def test_lead_lines_are_marked_from_rate_register_and_chords() -> None:
    # Fast single notes high up are a lead line; the same notes slower and lower (an
    # open-position melody), or among chords, are not.
    weights = weights_for(GUITAR)
    fast = fingering._events(_line([67, 66, 67, 66, 67, 69] * 4), GUITAR, weights)[0]
    assert all(e.lead for e in fast)
    melody = fingering._events(_line([64, 65, 67, 65, 64, 62, 60, 59, 57, 59] * 3, step=0.3), GUITAR, weights)[0]
    assert not any(e.lead for e in melody)
    strum = fingering._events(_line([(40, 47, 52), 67, 66, (45, 52, 57), 67, 69] * 4), GUITAR, weights)[0]
    assert not any(e.lead for e in strum)


def test_a_lead_line_sits_in_a_box_up_the_neck() -> None:
    # Aria's intro (a dev song of bench/human_tabs.py): the tabber plays the line on the
    # B string at frets 7-10, not on the top string in second position; so does the
    # streaming fingerer.
    motif = [67, 66, 67, 66, 67, 69] * 4
    notes = _line(motif)
    assign(notes, GUITAR)
    assert {(n.string, n.fret) for n in notes} == {(4, 7), (4, 8), (4, 10)}
    stream = StreamingFingerer(GUITAR)
    streamed = stream.push(_line(motif), 1e9).notes + stream.flush().notes
    assert [(n.string, n.fret) for n in streamed] == [(n.string, n.fret) for n in notes]


def test_search_cost_is_its_named_features_times_their_weights() -> None:
    # The bench prices a human's fingering with these features (bench/fingering_errors.py
    # --costs) and fits weights to them (bench/fit_fingering.py): summed along the path
    # the search picks, they give back the cost the search minimised.
    notes = _line([40, (45, 52, 57), 59, 62, 64, 67, (48, 55, 60), 69, 71, 72, (43, 50, 55, 59), 74, 67])
    weights = weights_for(GUITAR)
    events, _ = fingering._events(notes, GUITAR, weights)
    search = fingering_search.Search(GUITAR, weights)
    layers = search.layers(events)
    start = fingering_search.Context.start(len(GUITAR.strings))
    path = search.run(events, start, layers)
    features = search.path_features(events, start, layers, search.last_states)
    assert len(features) == len(fingering_search.FEATURES) + 1
    assert features[:-1] @ fingering_search.feature_weights(weights) + features[-1] == pytest.approx(search.last_cost)
    # The states the search reports are the path it returns.
    assert [(int(layer.shape[k]), int(layer.p[k])) for layer, k in zip(layers, search.last_states, strict=True)] == path


def test_lowest_fret_baseline() -> None:
    notes = [Note(45, 0.0, 0.5), Note(64, 0.5, 1.0), Note(20, 1.0, 1.5)]
    result = lowest_fret(notes, GUITAR)
    assert [(n.string, n.fret) for n in result.notes] == [(1, 0), (5, 0)]
    assert len(result.out_of_range) == 1


def _stream(notes: list[Note], tuning: tunings.Tuning, step: float, **kwargs) -> tuple[FingeringResult, list[int]]:
    fingerer = StreamingFingerer(tuning, **kwargs)
    out = FingeringResult()
    released = []
    notes = sorted(notes, key=lambda n: n.start)
    t, i = 0.0, 0
    end = max(n.end for n in notes)
    while t <= end:
        t += step
        batch = []
        while i < len(notes) and notes[i].start < t:
            batch.append(notes[i])
            i += 1
        got = fingerer.push(batch, t)
        for n in got.notes:
            # A released note is final: nothing later may start before it ends on its string.
            assert n.string >= 0
        released.append(len(got.notes))
        out.extend(got)
    out.extend(fingerer.flush())
    return out, released


def _concatenated(instrument: str) -> tuple[list[Note], tunings.Tuning]:
    notes: list[Note] = []
    offset = 0.0
    for piece in PIECES:
        if piece.instrument != instrument or piece.tuning != "standard" or piece.capo:
            continue
        for n in _bare(piece.notes()):
            n.start += offset
            n.end += offset
            notes.append(n)
        offset = max(n.end for n in notes) + 0.4
    return notes, tunings.standard(instrument)


@pytest.mark.parametrize("instrument", ["guitar", "bass"])
def test_streaming_matches_the_whole_piece(instrument: str) -> None:
    notes, tuning = _concatenated(instrument)
    whole = assign(copy.deepcopy(notes), tuning)
    streamed, released = _stream(copy.deepcopy(notes), tuning, step=1.5)
    assert len(streamed.notes) == len(whole.notes) and not streamed.out_of_range
    assert count_collisions(streamed.notes) == 0
    key = {(n.start, n.pitch): (n.string, n.fret) for n in whole.notes}
    agree = sum(key[(n.start, n.pitch)] == (n.string, n.fret) for n in streamed.notes)
    assert agree / len(notes) >= 0.98
    # Notes come out while the stream runs, not only at the end.
    assert sum(released[: len(released) // 2]) > 0


def test_streaming_reports_out_of_range_at_once_and_short_lag_still_works() -> None:
    notes = [Note(20, 0.0, 0.5), *[Note(52 + (k % 5), 0.3 * k, 0.3 * k + 0.25) for k in range(40)]]
    fingerer = StreamingFingerer(GUITAR, lag_seconds=1.0, lag_events=2)
    first = fingerer.push(notes[:5], 1.2)
    assert [n.pitch for n in first.out_of_range] == [20]
    rest = fingerer.push(notes[5:], 100.0)
    final = fingerer.flush()
    assert len(first.notes) + len(rest.notes) + len(final.notes) == 40
    assert fingerer.flush().notes == []


def test_finger_json_keeps_order_fields_and_reports() -> None:
    data = {
        "tuning": [40, 45, 50, 55, 59, 64],
        "title": "kept",
        "notes": [
            {"pitch": 64, "start": 1.0, "end": 1.5, "id": "a"},
            {"pitch": 12, "start": 0.5, "end": 1.0, "id": "b"},
            {"pitch": 40, "start": 0.0, "end": 0.5, "id": "c"},
        ],
    }
    out = finger_json(data)
    assert out["title"] == "kept" and out["tuning"] == data["tuning"] and out["capo"] == 0
    assert [n["id"] for n in out["notes"]] == ["a", "b", "c"]
    assert (out["notes"][0]["string"], out["notes"][0]["fret"]) == (5, 0)
    assert (out["notes"][1]["string"], out["notes"][1]["fret"]) == (-1, -1)
    assert out["out_of_range"] == [{"pitch": 12, "start": 0.5, "end": 1.0, "id": "b", "index": 1}]
    assert "string" not in data["notes"][0]  # input untouched
    capo = finger_json({"notes": [{"pitch": 45, "start": 0, "end": 1}]}, tuning="drop_d", capo=2)
    assert capo["tuning"] == [38, 45, 50, 55, 59, 64] and capo["notes"][0]["fret"] in (0, 5)
    bass = finger_json({"instrument": "bass", "notes": [{"pitch": 28, "start": 0, "end": 1}]})
    assert bass["tuning"] == [28, 33, 38, 43] and bass["notes"][0]["string"] == 0
    inferred = finger_json({"tuning": [23, 28, 33, 38, 43], "notes": [{"pitch": 23, "start": 0, "end": 1}]})
    assert inferred["instrument"] == "bass" and inferred["notes"][0]["string"] == 0
    assert finger_json({"tuning": [35, 40, 45, 50, 55, 59, 64], "notes": []})["instrument"] == "guitar"
    with pytest.raises(BadConfig):
        finger_json({"notes": [{"pitch": "x", "start": 0}]})
    with pytest.raises(BadConfig):
        finger_json({"notes": "nope"})


def _args(**kw) -> Namespace:
    base = {"tuning": None, "capo": None, "instrument": None, "max_fret": None, "midi": None, "indent": None}
    return Namespace(**{**base, **kw})


def test_cli_json_and_midi(tmp_path: Path) -> None:
    piece = by_name("g_minor_riff")
    data = {"notes": [{"pitch": n.pitch, "start": n.start, "end": n.end} for n in piece.notes()]}
    out = io.StringIO()
    assert run(_args(tuning="40,45,50,55,59,64"), io.StringIO(json.dumps(data)), out) == 0
    result = json.loads(out.getvalue())
    assert len(result["notes"]) == len(data["notes"]) and result["out_of_range"] == []
    assert all(n["string"] >= 0 for n in result["notes"])
    midi = pretty_midi.PrettyMIDI()
    bass = pretty_midi.Instrument(program=33)
    bass.notes = [pretty_midi.Note(100, p, 0.5 * i, 0.5 * i + 0.4) for i, p in enumerate((28, 33, 38, 20))]
    midi.instruments.append(bass)
    path = tmp_path / "bass.mid"
    midi.write(str(path))
    out = io.StringIO()
    assert run(_args(instrument="bass", midi=path), io.StringIO(""), out) == 0
    result = json.loads(out.getvalue())
    tuning = tunings.standard("bass").strings
    placed = [(n["pitch"], n["string"], n["fret"]) for n in result["notes"]]
    assert all(s >= 0 and tuning[s] + f == p for p, s, f in placed[:3]) and placed[3][1:] == (-1, -1)
    assert len(result["out_of_range"]) == 1
    assert run(_args(), io.StringIO("not json"), io.StringIO()) == 2
    assert run(_args(tuning="banjo"), io.StringIO('{"notes": []}'), io.StringIO()) == 2


def test_cli_as_a_process() -> None:
    data = json.dumps({"notes": [{"pitch": 43, "start": 0, "end": 1}, {"pitch": 50, "start": 0, "end": 1}]})
    proc = subprocess.run(
        [sys.executable, "-m", "launcher.fingering_cli", "--tuning", "E2,A2,D3,G3,B3,E4", "--capo", "3"],
        input=data, capture_output=True, text=True, timeout=60, check=True,
    )
    result = json.loads(proc.stdout)
    assert result["capo"] == 3
    assert [(n["string"], n["fret"]) for n in result["notes"]] == [(0, 0), (1, 2)]
