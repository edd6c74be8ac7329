"""The streaming decoder gives basic-pitch's whole-file notes, for any block size, in bounded memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transcriber_fixtures import (
    song_maxima,
    stream_frames,
    whole_file_notes,
    whole_file_output,
    write_float_wav,
)

from evalkit import synth
from evalkit.examples import Song
from tabagent.notes import Note
from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE, N_CONTOUR_BINS, N_PITCHES
from transcriber_svc.decoder import DecoderSettings, RawNote, StreamingDecoder, valid_cuts
from transcriber_svc.notecreation import ENERGY_TOL

BLOCKS = [10**9, 142, 37, 1]


def _phrases() -> np.ndarray:
    """Guitar phrases with rests between them, so that the decoder can cut naturally."""
    notes = []
    t = 0.3
    for phrase in range(4):
        for i, pitch in enumerate((52, 55, 59, 64, 59, 55)):
            start = t + 0.25 * i
            notes.append(Note(pitch + 2 * phrase, start, start + 0.3, 0.8))
        t += 0.25 * 6 + 0.9
    return synth.render_notes(notes, synth.GUITAR, seconds=t + 0.3, sample_rate=AUDIO_SAMPLE_RATE)


@pytest.fixture(scope="module")
def outputs(song: Song, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, np.ndarray]]:
    """run_inference outputs of the bass and guitar stems and of a phrased guitar line."""
    import soxr

    folder = tmp_path_factory.mktemp("decoder")
    audio = {
        part: soxr.resample(song.stems[part], song.sample_rate, AUDIO_SAMPLE_RATE, "HQ").astype(np.float32)
        for part in ("bass", "guitar")
    }
    audio["phrases"] = _phrases()
    return {name: whole_file_output(write_float_wav(Path(folder) / f"{name}.wav", a)) for name, a in audio.items()}


def decode(output: dict[str, np.ndarray], block: int, **settings: object) -> tuple[list[RawNote], StreamingDecoder]:
    decoder = StreamingDecoder(DecoderSettings(**settings))  # type: ignore[arg-type]
    notes: list[RawNote] = []
    final = 0.0
    n = output["note"].shape[0]
    for start in range(0, n, block):
        rows = slice(start, start + block)
        result = decoder.push(output["note"][rows], output["onset"][rows], output["contour"][rows])
        assert result.final_until >= final
        assert all(r.start < result.final_until for r in result.notes)
        assert all(r.start >= final - 1e-9 for r in result.notes)   # never a note from the past
        final = result.final_until
        notes.extend(result.notes)
        assert decoder.buffered <= decoder.settings.capacity
    notes.extend(decoder.flush().notes)
    return notes, decoder


def as_events(notes: list[RawNote]) -> list[tuple[float, float, int, float, list[int]]]:
    return sorted((r.start, r.end, r.pitch, r.amplitude, r.bends) for r in notes)


def assert_same_notes(got: list[tuple], want: list[tuple]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g[2] == w[2]
        assert g[0] == pytest.approx(w[0], abs=1e-9)
        assert g[1] == pytest.approx(w[1], abs=1e-9)
        assert g[3] == pytest.approx(w[3], abs=1e-6)
        assert g[4] == w[4]


@pytest.mark.parametrize("name", ["bass", "guitar", "phrases"])
@pytest.mark.parametrize("block", BLOCKS)
def test_streamed_notes_equal_whole_file(outputs: dict, name: str, block: int) -> None:
    """With the song-wide onset maxima pinned, streaming reproduces predict() exactly."""
    output = outputs[name]
    want = whole_file_notes(output)
    notes, decoder = decode(output, block, onset_scale=song_maxima(output))
    assert_same_notes(as_events(notes), want)
    assert len(want) > 10
    if name != "guitar":     # the guitar stem rings through: one region, no cut
        assert decoder.natural_cuts >= 3
    assert decoder.forced_cuts == 0


@pytest.mark.parametrize("name", ["bass", "guitar"])
def test_running_onset_scale_is_block_independent_and_close(outputs: dict, name: str) -> None:
    """The production mode (running maxima) depends only on the frames, not the chunking;
    its notes stay close to whole-file decoding (the rescale is song-wide there)."""
    output = outputs[name]
    first = as_events(decode(output, BLOCKS[0])[0])
    for block in BLOCKS[1:3]:
        assert as_events(decode(output, block)[0]) == first
    want = {(round(s, 6), p) for s, _, p, _, _ in whole_file_notes(output)}
    got = {(round(s, 6), p) for s, _, p, _, _ in first}
    assert len(want & got) >= 0.9 * max(len(want), len(got))


@pytest.mark.parametrize("block", [4_000, 22_050])
def test_streamed_audio_to_notes_equals_predict(outputs: dict, block: int) -> None:
    """Audio blocks -> WindowStream -> model -> StreamingDecoder == run_inference + predict's notes."""
    audio = _phrases()
    frames = stream_frames(audio, block)
    output = {"note": frames.note, "onset": frames.onset, "contour": frames.contour}
    notes, _ = decode(output, 142, onset_scale=song_maxima(outputs["phrases"]))
    assert_same_notes(as_events(notes), whole_file_notes(outputs["phrases"]))


def test_forced_cuts_keep_memory_bounded(outputs: dict) -> None:
    """A 60 s ringing guitar with an 8 s buffer: forced cuts, bounded buffer, near-identical notes."""
    output = {k: np.concatenate([v] * 5) for k, v in outputs["guitar"].items()}
    settings = {"max_buffer_seconds": 8.0, "forced_lookahead_seconds": 1.5, "onset_scale": song_maxima(output)}
    notes, decoder = decode(output, 142, **settings)
    assert decoder.forced_cuts >= 5
    assert decoder.max_buffered <= DecoderSettings(max_buffer_seconds=8.0).capacity
    want = {(round(s, 6), round(e, 6), p) for s, e, p, _, _ in whole_file_notes(output)}
    got = {(round(r.start, 6), round(r.end, 6), r.pitch) for r in notes}
    assert len(want & got) >= 0.95 * len(want)
    assert abs(len(got) - len(want)) <= 0.05 * len(want)
    # Chunking still does not matter with forced cuts.
    assert as_events(decode(output, 1000, **settings)[0]) == as_events(notes)


def test_long_silence_holds_few_frames() -> None:
    decoder = StreamingDecoder()
    zeros = np.zeros((142, N_PITCHES), np.float32)
    contour = np.zeros((142, N_CONTOUR_BINS), np.float32)
    for _ in range(2000):          # about 55 minutes of frames
        decoder.push(zeros, zeros, contour)
    assert decoder.max_buffered < 300
    assert decoder.forced_cuts == 0
    assert decoder.flush().notes == []


def _active(rows: int, spans: list[tuple[int, int, int]]) -> np.ndarray:
    active = np.zeros((rows, N_PITCHES), bool)
    for freq, start, end in spans:
        active[start:end, freq] = True
    return active


def test_valid_cuts_follow_the_energy_tolerance() -> None:
    none = np.zeros((60, N_PITCHES), bool)
    gap = ENERGY_TOL   # 11 frames between two active frames: one walk crosses it
    same = _active(60, [(40, 10, 20), (40, 20 + gap - 1, 40)])
    assert not valid_cuts(same, none, 11, 39).any()
    assert valid_cuts(same, none, 40, 45).all()
    apart = _active(60, [(40, 10, 20), (40, 20 + gap, 40)])
    assert valid_cuts(apart, none, 20, 20 + gap).any()
    neighbour = _active(60, [(40, 10, 20), (41, 20 + gap - 1, 40)])
    assert not valid_cuts(neighbour, none, 20, 30).any()
    far_pitch = _active(60, [(40, 10, 20), (42, 21, 40)])
    assert valid_cuts(far_pitch, none, 20, 21).all()
    # An onset before the cut with energy within 11 frames after it joins that energy.
    peaks = np.zeros((60, N_PITCHES), bool)
    peaks[25, 50] = True
    late = _active(60, [(50, 36, 50)])
    assert not valid_cuts(late, peaks, 26, 36).any()
    assert valid_cuts(late, peaks, 20, 25).all()


@pytest.mark.parametrize("block", [142, 1000])
def test_a_note_held_through_forced_cuts_stays_one_note(block: int) -> None:
    """A 41 s sustained note with an 8 s buffer: held across every forced cut, merged exactly."""
    n = 4000
    note = np.full((n, N_PITCHES), 0.05, np.float32)
    onset = np.full((n, N_PITCHES), 0.05, np.float32)
    contour = np.zeros((n, N_CONTOUR_BINS), np.float32)
    note[50:3600, 19] = 0.8
    onset[50, 19] = 0.9
    note[100:3000:40, 50] = 0.6          # blips elsewhere, too short to be notes
    onset[100:3000:40, 50] = 0.8
    output = {"note": note, "onset": onset, "contour": contour}
    notes, decoder = decode(output, block, max_buffer_seconds=8.0, forced_lookahead_seconds=1.5)
    assert decoder.forced_cuts >= 4
    assert decoder.max_buffered <= DecoderSettings(max_buffer_seconds=8.0).capacity
    assert_same_notes(as_events(notes), whole_file_notes(output))
