"""Per-instrument post-processing: it must raise onset F1, and never drop playable notes silently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from transcriber_fixtures import stem_22k, warm_model

from evalkit import transcriber_eval as evaluate
from evalkit.examples import Song
from evalkit.scoring import Scores, onset_scores
from tabagent import tuning as tunings
from transcriber_svc.decoder import RawNote
from transcriber_svc.postprocess import PostProcessor, PostSettings

BASS = tunings.standard("bass")
GUITAR = tunings.standard("guitar")


def raw(pitch: int, start: float, end: float, amplitude: float = 0.7, lower: float = 0.0) -> RawNote:
    frames = int(round(start * 86.13))
    return RawNote(frames, frames + int((end - start) * 86.13), pitch, amplitude, [0], start, end, True, lower)


def run(post: PostProcessor, batches: list[tuple[list[RawNote], float]]) -> tuple[list, list]:
    notes, out = [], []
    for batch, until in batches:
        result = post.push(batch, until)
        assert all(n.start < result.final_until for n in result.notes) or result.final_until == until
        notes += result.notes
        out += result.out_of_range
    result = post.flush()
    return notes + result.notes, out + result.out_of_range


@pytest.fixture(scope="module")
def bass_scores(song: Song) -> tuple[Scores, Scores, list]:
    raw_notes, final = evaluate.transcribe(warm_model(), stem_22k(song, "bass"), "bass")
    reference = song.parts["bass"]
    return onset_scores(reference, raw_notes), onset_scores(reference, final), final


def test_bass_postprocessing_raises_onset_f1_on_synth(bass_scores: tuple) -> None:
    raw_scores, post_scores, _ = bass_scores
    assert post_scores.f1 >= raw_scores.f1 + 0.05
    assert post_scores.f1 >= 0.9


def test_bass_output_is_monophonic(bass_scores: tuple) -> None:
    final = sorted(bass_scores[2], key=lambda n: n.start)
    for a, b in zip(final, final[1:], strict=False):
        assert a.end <= b.start + 1e-9


def test_guitar_filter_raises_onset_f1_on_synth(song: Song) -> None:
    raw_notes, final = evaluate.transcribe(warm_model(), stem_22k(song, "guitar"), "guitar")
    reference = song.parts["guitar"]
    assert onset_scores(reference, final).f1 > onset_scores(reference, raw_notes).f1
    assert onset_scores(reference, final).f1 >= 0.9


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("part", "seconds", "least"),
    [
        ("bass", 60.0, 0.93),
        ("guitar", 60.0, 0.82),
        pytest.param("bass", None, 0.92, marks=pytest.mark.slow),
        pytest.param("guitar", None, 0.90, marks=pytest.mark.slow),
    ],
)
def test_postprocessing_raises_onset_f1_on_slakh(shared_track: Path, part: str, seconds: float | None, least: float) -> None:
    """Slakh2100 Track01501: bass S04 and guitar S08 against their MIDI (first minute by default)."""
    raw_scores, post_scores, shift = evaluate.evaluate_slakh(warm_model(), shared_track, part, seconds)
    if part == "bass":
        assert shift == -12      # the fretless bass patch sounds an octave below its MIDI
    assert post_scores.f1 > raw_scores.f1 + 0.03
    assert post_scores.f1 >= least


def test_out_of_range_is_reported_and_noise_dropped() -> None:
    post = PostProcessor(PostSettings(GUITAR))
    notes, out = run(post, [([raw(45, 0.0, 0.5), raw(35, 0.5, 1.0), raw(20, 1.0, 1.5), raw(99, 1.5, 2.0)], 3.0)])
    assert [n.pitch for n in notes] == [45]
    assert [n.pitch for n in out] == [35, 99]      # B1 and D#7: heard, not playable
    assert post.dropped_noise == 1                 # A0: more than an octave below E2


def test_octave_repair_moves_weak_fundamentals_down() -> None:
    post = PostProcessor(PostSettings(BASS, octave_repair=True))
    notes, _ = run(post, [([raw(48, 0.0, 0.5, 0.4, lower=0.8), raw(45, 1.0, 1.5, 0.7, lower=0.1)], 3.0)])
    assert [n.pitch for n in notes] == [36, 45]
    assert post.repaired_octaves == 1


def test_monophony_keeps_the_root_and_drops_ghosts() -> None:
    settings = PostSettings(BASS, monophonic=True)
    batch = [
        raw(28, 0.50, 1.00, 0.7),
        raw(52, 0.52, 0.70, 0.4),      # two octaves up, same onset: a harmonic
        raw(40, 0.75, 0.90, 0.3),      # an octave up inside the root, weak: a ghost
        raw(33, 0.95, 1.40, 0.7),      # the next note cuts the root short
        raw(35, 1.01, 1.40, 0.5),      # same event as 33 (within 80 ms), weaker
    ]
    notes, _ = run(PostProcessor(settings), [(batch, 5.0)])
    assert [(n.pitch, round(n.start, 2), round(n.end, 2)) for n in notes] == [(28, 0.5, 0.95), (33, 0.95, 1.4)]


def test_monophony_streams_like_one_batch() -> None:
    rng = np.random.default_rng(3)
    starts = np.sort(rng.uniform(0, 20, 80))
    notes = [raw(int(rng.integers(28, 60)), float(s), float(s + rng.uniform(0.05, 0.8)), float(rng.uniform(0.3, 0.9))) for s in starts]
    whole, _ = run(PostProcessor(PostSettings(BASS, monophonic=True)), [(notes, 100.0)])
    batches, start = [], 0
    for until in (3.0, 7.5, 7.6, 12.0, 19.0, 30.0):
        # the decoder's promise: every note starting before `until` has been given
        end = int(np.searchsorted(starts, until))
        batches.append((notes[start:end], until))
        start = end
    streamed, _ = run(PostProcessor(PostSettings(BASS, monophonic=True)), batches)
    assert [(n.pitch, n.start, n.end) for n in streamed] == [(n.pitch, n.start, n.end) for n in whole]
