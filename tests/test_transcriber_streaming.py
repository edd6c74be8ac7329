"""Streamed Basic Pitch windows give run_inference's frames, for any block size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transcriber_fixtures import (
    stem_22k,
    stream_frames,
    warm_model,
    whole_file_output,
    write_float_wav,
)

from evalkit.examples import Song
from transcriber_svc import basicpitch, notecreation
from transcriber_svc.model import BasicPitchModel
from transcriber_svc.streaming import WindowStream, kept_frames


@pytest.fixture(scope="module")
def bass(song: Song) -> np.ndarray:
    return stem_22k(song, "bass")


@pytest.fixture(scope="module")
def reference(bass: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    path = write_float_wav(tmp_path_factory.mktemp("bp") / "bass.wav", bass)
    return whole_file_output(path)


def test_constants_match_basic_pitch() -> None:
    constants = basicpitch.import_quietly("basic_pitch.constants")
    assert basicpitch.AUDIO_SAMPLE_RATE == constants.AUDIO_SAMPLE_RATE
    assert basicpitch.FFT_HOP == constants.FFT_HOP
    assert basicpitch.AUDIO_N_SAMPLES == constants.AUDIO_N_SAMPLES
    assert basicpitch.ANNOTATIONS_FPS == constants.ANNOTATIONS_FPS
    assert basicpitch.ANNOT_N_FRAMES == constants.ANNOT_N_FRAMES
    assert basicpitch.N_CONTOUR_BINS == constants.N_FREQ_BINS_CONTOURS
    assert basicpitch.onnx_model_path().name == "nmp.onnx"
    assert basicpitch.onnx_model_path().is_file()


def test_frame_times_match_model_frames_to_time() -> None:
    note_creation = basicpitch.note_creation()
    n = 3000
    assert np.array_equal(basicpitch.frame_times(np.arange(n)), note_creation.model_frames_to_time(n))
    # Any subset of absolute indices maps the same way.
    picks = np.array([0, 171, 172, 1999, 2999])
    assert np.array_equal(basicpitch.frame_times(picks), note_creation.model_frames_to_time(n)[picks])


def test_pitch_bends_match_get_pitch_bends() -> None:
    # Every pitch (the window is clipped at both ends of the contour), notes of 1 to 40
    # frames, on random contours: the same bends as basic_pitch's get_pitch_bends.
    note_creation = basicpitch.note_creation()
    constants = basicpitch.import_quietly("basic_pitch.constants")
    assert (basicpitch.CONTOUR_BINS_PER_SEMITONE, basicpitch.CONTOUR_BASE_HZ) == (
        constants.CONTOURS_BINS_PER_SEMITONE, constants.ANNOTATIONS_BASE_FREQUENCY)
    rng = np.random.default_rng(3)
    contours = rng.random((400, basicpitch.N_CONTOUR_BINS)).astype(np.float32)
    notes = []
    for freq in range(basicpitch.N_PITCHES):
        start = int(rng.integers(0, 350))
        notes.append(notecreation.WindowNote(start, start + 1 + freq % 40, freq, 0.5, True, start, start, False))
    expected = note_creation.get_pitch_bends(contours, [(n.start, n.end, n.pitch, n.amplitude) for n in notes])
    assert notecreation.pitch_bends(contours, notes) == [[int(b) for b in e[4]] for e in expected]


@pytest.mark.parametrize("block", [1_000, 22_050, 65_537, 10**9])
def test_streamed_frames_equal_run_inference(bass: np.ndarray, reference: dict[str, np.ndarray], block: int) -> None:
    frames = stream_frames(bass, block)
    for name in ("note", "onset", "contour"):
        got = getattr(frames, name)
        assert got.shape == reference[name].shape
        np.testing.assert_allclose(got, reference[name], rtol=0, atol=1e-6)


@pytest.mark.parametrize("seconds", [0.3, 1.9, 2.0 - 256 / 22050, 3.4])
def test_short_songs_equal_run_inference(bass: np.ndarray, tmp_path: Path, seconds: float) -> None:
    audio = bass[int(3.0 * 22050) : int(3.0 * 22050) + int(round(seconds * 22050))]
    reference = whole_file_output(write_float_wav(tmp_path / "short.wav", audio))
    frames = stream_frames(audio, 4_000)
    assert len(frames) == kept_frames(audio.size) == reference["note"].shape[0]
    np.testing.assert_allclose(frames.note, reference["note"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(frames.contour, reference["contour"], rtol=0, atol=1e-6)


def test_windows_leave_as_soon_as_complete() -> None:
    stream = WindowStream()
    first = basicpitch.AUDIO_N_SAMPLES - basicpitch.OVERLAP_LEN // 2   # the left padding counts
    assert stream.push(np.zeros(first - 1, np.float32)).shape[0] == 0
    assert stream.push(np.zeros(1, np.float32)).shape == (1, basicpitch.AUDIO_N_SAMPLES, 1)
    assert stream.push(np.zeros(basicpitch.HOP_SIZE - 1, np.float32)).shape[0] == 0
    assert stream.push(np.zeros(1, np.float32)).shape[0] == 1
    # The buffer keeps only what the next windows need, not the song.
    stream.push(np.zeros(10 * basicpitch.HOP_SIZE, np.float32))
    assert stream._buffer.size < basicpitch.AUDIO_N_SAMPLES + basicpitch.HOP_SIZE


def test_batched_forward_is_bitwise_identical_with_one_thread(bass: np.ndarray) -> None:
    model = BasicPitchModel(threads=1)
    windows = WindowStream().push(bass[: 5 * basicpitch.HOP_SIZE])
    assert windows.shape[0] >= 3
    batched = model.forward(windows)
    each = model.forward_each(windows)
    for name in ("note", "onset", "contour"):
        assert np.array_equal(getattr(batched, name), getattr(each, name))
    # With more threads, onnxruntime splits the work by batch size: last-bit differences.
    multi = warm_model().forward(windows)
    np.testing.assert_allclose(multi.note, each.note, rtol=0, atol=1e-6)


def test_streamed_frames_bitwise_independent_of_blocks(bass: np.ndarray) -> None:
    first = stream_frames(bass, 3_000)
    for block in (22_050, 10**9):
        other = stream_frames(bass, block)
        assert np.array_equal(first.note, other.note)
        assert np.array_equal(first.onset, other.onset)
        assert np.array_equal(first.contour, other.contour)


def test_model_info() -> None:
    info = warm_model().info
    assert info.name == "basic-pitch"
    assert info.backend == "onnxruntime"
    assert info.version.startswith("0.")
    assert info.device == "cpu"
    assert info.to_proto().sample_rate == 22050
    assert warm_model().warm
