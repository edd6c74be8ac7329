"""Tempo and beat tracking on synthesised songs, the grid, quantisation and bars."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest

from evalkit import synth
from evalkit.examples import make_song
from tabagent.notes import Note
from tabagent.rhythm import BeatTracker, Grid, Rhythm, quantize


def _track(mix: np.ndarray, sample_rate: int, block: int) -> BeatTracker:
    tracker = BeatTracker(sample_rate)
    mono = mix.mean(axis=1) if mix.ndim == 2 else mix
    for i in range(0, mono.size, block):
        tracker.push(mono[i : i + block])
    return tracker


@pytest.mark.parametrize("bpm", [87.0, 100.0, 132.0])
def test_tempo_and_beats_of_a_synthesised_song(bpm: float) -> None:
    song = make_song(16.0, bpm=bpm, drums=True, seed=3)
    rhythm = _track(song.mix, song.sample_rate, 4096).result()
    assert rhythm.tempo == pytest.approx(bpm, abs=1.0)
    truth = 0.5 + np.arange(64) * 60.0 / bpm
    truth = truth[truth < song.seconds - 0.2]
    assert mir_eval.beat.f_measure(truth, np.array(rhythm.beats)) > 0.9
    assert rhythm.beats_per_bar == 4 and rhythm.time_signature == (4, 4)
    # Downbeats are beats, one per bar.
    assert set(np.round(rhythm.downbeats, 6)) <= set(np.round(rhythm.beats, 6))
    assert np.allclose(np.diff(rhythm.downbeats), 4 * 60.0 / bpm, atol=0.05)


def test_block_size_does_not_change_the_envelope_and_memory_stays_small() -> None:
    song = make_song(8.0, bpm=110.0, drums=True, seed=4)
    reference = _track(song.mix, song.sample_rate, song.mix.shape[0]).envelope()
    for block in (512, 1000, 44_100):
        env = _track(song.mix, song.sample_rate, block).envelope()
        np.testing.assert_allclose(env, reference, atol=1e-5)
    # The tracker keeps about 100 floats a second, never the audio.
    assert reference.size == pytest.approx(8.0 * 100, rel=0.02)


def test_other_sample_rates() -> None:
    song = make_song(12.0, bpm=120.0, drums=True, seed=5)
    mono = song.mix.mean(axis=1)[::2]  # 22.05 kHz, crude but enough for onsets
    rhythm = _track(mono, 22_050, 3000).result()
    assert rhythm.tempo == pytest.approx(120.0, abs=1.0)


def test_waltz_is_three_four() -> None:
    bpm, seconds = 120.0, 16.0
    beat = 60.0 / bpm
    hits = []
    for i in range(int(seconds / beat)):
        t = 0.25 + i * beat
        hits.append(("kick" if i % 3 == 0 else "hat", t))
        if i % 3 == 0:
            hits.append(("snare", t))
    drums = synth.render_drums(hits, seconds)
    bass = synth.render_notes(
        [Note(40 if (i // 3) % 2 == 0 else 45, 0.25 + i * beat, 0.25 + i * beat + 0.3, 0.9) for i in range(0, 30, 3)],
        synth.BASS,
        seconds,
    )
    rhythm = _track(drums + bass, synth.SAMPLE_RATE, 8192).result()
    assert rhythm.tempo == pytest.approx(bpm, abs=1.0)
    assert rhythm.beats_per_bar == 3 and rhythm.time_signature == (3, 4)


def test_silence_and_short_input_give_a_default() -> None:
    tracker = BeatTracker(16_000)
    tracker.push(np.zeros(16_000, dtype=np.float32))
    rhythm = tracker.result()
    assert rhythm.tempo == 120.0 and rhythm.beats == []
    with pytest.raises(ValueError):
        BeatTracker(1000)


def test_grid_and_bars_with_an_anacrusis() -> None:
    rhythm = Rhythm.constant(120.0, 10.0, beats_per_bar=4, first_downbeat=0.75)
    grid = rhythm.grid(4)
    assert grid.step_seconds == pytest.approx(0.125)
    assert grid.phase == 6  # 0.75 s = 6 sixteenths before the first full bar
    bars = grid.bars(40)
    # The anacrusis is a pickup bar under the song's own metre, not a 3/8 bar.
    assert bars[0].steps == 6 and bars[0].pickup and bars[0].time_signature == (4, 4)
    assert all(b.steps == 16 and b.time_signature == (4, 4) and not b.pickup for b in bars[1:])
    assert bars[1].start_step == 6 and bars[-1].start_step + 16 >= 40
    assert grid.time_of(grid.step_of(1.31)) == pytest.approx(1.25)
    with pytest.raises(ValueError):
        rhythm.grid(3)


def test_quantize_snaps_to_the_grid_and_keeps_originals() -> None:
    notes = [Note(60, 0.49, 0.74), Note(62, 0.51, 0.52), Note(64, 1.06, 1.4)]
    out = quantize(notes, Rhythm.constant(120.0, 4.0), subdivision=4)
    assert [(n.start, n.end) for n in out] == [(0.5, 0.75), (0.5, 0.625), (1.0, 1.375)]
    assert notes[0].start == 0.49  # untouched
    grid = Grid(100.0, subdivision=2)
    (q,) = quantize([Note(40, 0.31, 0.9)], grid)
    assert q.start == pytest.approx(0.3) and q.end == pytest.approx(0.9)


def test_rhythm_dict() -> None:
    d = Rhythm.constant(90.0, 4.0).to_dict()
    assert d["tempo"] == 90.0 and d["time_signature"] == [4, 4] and len(d["beats"]) == 7
