"""The lead/rhythm split: the stereo splitter of the guitar stem and the note filter between the parts."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.partsplit import PartSplit
from gateway.stereo_split import StereoSplit
from tabagent.v1 import audio_pb2

SR = 44_100


def _tone(freq: float, seconds: float, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return 0.3 * np.sin(2 * np.pi * freq * t + phase)


def _split(stereo: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, StereoSplit]:
    splitter = StereoSplit(SR)
    outs: dict[str, list[np.ndarray]] = {"lead": [], "rhythm": []}
    for i in range(0, stereo.shape[0], block):
        for name, audio in splitter.push(stereo[i : i + block]).items():
            outs[name].append(audio)
    for name, audio in splitter.finish().items():
        outs[name].append(audio)
    return np.concatenate(outs["lead"]), np.concatenate(outs["rhythm"]), splitter


def _level(audio: np.ndarray, freq: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    k = int(round(freq * audio.size / SR))
    return float(spectrum[k - 2 : k + 3].max())


def _panned_mix(seconds: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(0)
    lead = _tone(880.0, seconds)
    take_a = _tone(220.0, seconds) + 0.02 * rng.standard_normal(lead.size)
    take_b = _tone(220.6, seconds, 1.3) + 0.02 * rng.standard_normal(lead.size)
    return np.stack([lead + take_a, lead + take_b], axis=1)


@pytest.mark.parametrize("block", [4096, 44_100, 100_000])
def test_the_halves_add_up_to_the_mono_stem_whatever_the_blocks(block: int) -> None:
    stereo = _panned_mix()
    lead, rhythm, splitter = _split(stereo, block)
    assert lead.size == rhythm.size == stereo.shape[0]
    np.testing.assert_allclose(lead + rhythm, stereo.mean(axis=1), atol=1e-5)
    reference, _, _ = _split(stereo, stereo.shape[0])
    np.testing.assert_allclose(lead, reference, atol=1e-6)
    assert not splitter.mono


def test_the_centre_goes_to_the_lead_and_the_sides_to_the_rhythm() -> None:
    lead, rhythm, _ = _split(_panned_mix(), 44_100)
    assert _level(lead, 880.0) > 30 * _level(rhythm, 880.0)
    assert _level(rhythm, 220.0) > 1.5 * _level(lead, 220.0)


def test_a_mono_stem_goes_whole_to_both_parts() -> None:
    mono = _panned_mix().mean(axis=1)
    lead, rhythm, splitter = _split(np.stack([mono, mono], axis=1), 44_100)
    assert splitter.mono
    np.testing.assert_allclose(lead, mono, atol=1e-5)
    np.testing.assert_allclose(rhythm, mono, atol=1e-5)


def _note(pitch: int, start: float, velocity: float = 0.7) -> audio_pb2.Note:
    return audio_pb2.Note(pitch=pitch, start=start, end=start + 0.4, velocity=velocity, string=0, fret=0)


def _batch(part: str, notes: list[audio_pb2.Note], final: float) -> audio_pb2.NoteBatch:
    return audio_pb2.NoteBatch(part=part, notes=notes, final_until=final)


def _run(lead: list[audio_pb2.Note], rhythm: list[audio_pb2.Note]) -> dict[str, list[tuple[int, float]]]:
    split = PartSplit()
    out: dict[str, list[tuple[int, float]]] = {"lead": [], "rhythm": []}
    for batch in [*split.add(_batch("lead", lead, 10.0)), *split.add(_batch("rhythm", rhythm, 10.0)), *split.flush()]:
        out[batch.part] += [(n.pitch, round(n.start, 3)) for n in batch.notes]
    return out


def test_each_note_heard_twice_is_kept_in_one_part() -> None:
    chord = [_note(p, 1.0) for p in (52, 55, 59)]               # E minor struck: rhythm
    melody_over_chord = _note(76, 1.01)                          # on top, a sixth above: lead
    loud_in_lead = [_note(62, 2.0, 0.9), _note(62, 2.02, 0.3)]   # heard where it was played
    low_undecided = [_note(50, 3.0), _note(50, 3.0)]             # register: rhythm
    high_undecided = [_note(69, 4.0), _note(69, 4.0)]            # register: lead
    lead = [*chord, melody_over_chord, loud_in_lead[0], low_undecided[0], high_undecided[0], _note(71, 5.0)]
    rhythm = [*[_note(p, 1.005) for p in (52, 55, 59)], _note(76, 1.0), loud_in_lead[1], low_undecided[1],
              high_undecided[1], _note(45, 5.0)]
    got = _run(lead, rhythm)
    assert got["lead"] == [(76, 1.01), (62, 2.0), (69, 4.0), (71, 5.0)]
    assert got["rhythm"] == [(52, 1.005), (55, 1.005), (59, 1.005), (50, 3.0), (45, 5.0)]


def test_a_rhythm_chord_leaking_into_the_lead_alone_is_dropped_there() -> None:
    got = _run([_note(p, 1.0) for p in (48, 52, 55)] + [_note(67, 2.0)], [_note(40, 1.0)])
    assert got["lead"] == [(67, 2.0)]
    assert got["rhythm"] == [(40, 1.0)]


def test_notes_wait_until_both_parts_are_final() -> None:
    split = PartSplit()
    assert all(not b.notes for b in split.add(_batch("lead", [_note(70, 1.0)], 3.0)))  # rhythm unknown yet
    released = split.add(_batch("rhythm", [_note(70, 1.02, 0.2)], 3.0))
    notes = {b.part: [(n.pitch, round(n.start, 2)) for n in b.notes] for b in released}
    assert notes == {"lead": [(70, 1.0)], "rhythm": []}
    assert split.add(_batch("bass", [_note(40, 1.0)], 3.0))[0].part == "bass"   # not its business
