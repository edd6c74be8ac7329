"""The bleed filter drops guitar notes that double a bass note, whatever the arrival order."""

from __future__ import annotations

import math

from gateway.crosspart import BleedFilter
from tabagent.v1 import audio_pb2


def batch(part: str, notes: list[tuple[float, int, float]], final_until: float) -> audio_pb2.NoteBatch:
    return audio_pb2.NoteBatch(
        part=part,
        notes=[audio_pb2.Note(pitch=p, start=s, end=s + 0.2, velocity=v) for s, p, v in notes],
        final_until=final_until,
    )


def released(batches: list[audio_pb2.NoteBatch], part: str) -> list[tuple[float, int]]:
    return [(round(n.start, 3), n.pitch) for b in batches if b.part == part for n in b.notes]


GUITAR = [(1.00, 45, 0.8), (1.50, 64, 0.8), (2.02, 57, 0.3), (2.50, 52, 0.9), (3.04, 40, 0.8)]
BASS = [(0.98, 45, 0.9), (2.00, 45, 0.9), (2.49, 40, 0.9), (3.00, 40, 0.9)]
# Dropped: 1.00/45 (same pitch), 2.02/57 (an octave above 45, quiet), 3.04/40 (same pitch).
# Kept: 1.50/64 (no bass note), 2.50/52 (an octave above 40 but loud).
KEPT = [(1.5, 64), (2.5, 52)]


def run(order: list[tuple[str, audio_pb2.NoteBatch]]) -> list[audio_pb2.NoteBatch]:
    f = BleedFilter({"guitar": "guitar", "bass": "bass"})
    out = []
    for part, b in order:
        out += f.add(part, b)
    out += f.end("guitar") + f.end("bass")
    return out


def test_bass_first_then_guitar() -> None:
    out = run([("bass", batch("bass", BASS, 3.5)), ("guitar", batch("guitar", GUITAR, 3.5))])
    assert released(out, "guitar") == KEPT
    assert len(released(out, "bass")) == len(BASS)


def test_guitar_first_is_held_until_the_bass_catches_up() -> None:
    f = BleedFilter({"guitar": "guitar", "bass": "bass"})
    assert released(f.add("guitar", batch("guitar", GUITAR, 3.5)), "guitar") == []
    out = f.add("bass", batch("bass", BASS[:2], 2.2))
    # Only guitar notes the bass has finished are released (before 2.2 - tolerance).
    assert released(out, "guitar") == [(1.5, 64)]
    out = f.add("bass", batch("bass", BASS[2:], 3.5)) + f.end("guitar") + f.end("bass")
    assert released(out, "guitar") == [(2.5, 52)]
    assert f.dropped == {"guitar": 3}


def test_interleaved_small_batches_match_one_big_batch() -> None:
    order = []
    for i in range(4):
        lo, hi = i * 1.0, (i + 1) * 1.0
        order.append(("bass", batch("bass", [n for n in BASS if lo <= n[0] < hi], hi)))
        order.append(("guitar", batch("guitar", [n for n in GUITAR if lo <= n[0] < hi], hi)))
    assert released(run(order), "guitar") == KEPT


def test_final_until_never_passes_the_bass() -> None:
    f = BleedFilter({"guitar": "guitar", "bass": "bass"})
    f.add("guitar", batch("guitar", GUITAR[:2], 2.0))
    out = f.add("bass", batch("bass", BASS[:1], 1.6))
    g = [b for b in out if b.part == "guitar"]
    assert g and all(b.final_until <= 1.6 for b in g)
    assert not math.isinf(f.bass_final_until)


def test_without_a_bass_part_nothing_is_held() -> None:
    f = BleedFilter({"guitar": "guitar"})
    b = batch("guitar", GUITAR, 3.5)
    assert f.add("guitar", b) == [b]


def test_overtones_that_mirror_the_bass_note_are_dropped_ringing_chord_tones_kept() -> None:
    def note(s: float, p: int, length: float, v: float) -> audio_pb2.Note:
        return audio_pb2.Note(pitch=p, start=s, end=s + length, velocity=v)

    bass = audio_pb2.NoteBatch(part="bass", final_until=7.0, notes=[
        note(t, 40, 0.25, 0.6 if t == 3.0 else 0.8) for t in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)])
    guitar = audio_pb2.NoteBatch(part="guitar", final_until=7.0, notes=[
        note(1.01, 59, 0.27, 0.6),   # a twelfth above, quieter, as long: kept (the twelfth
                                     # rule dropped more of the guitar's notes than overtones)
        note(2.02, 52, 0.22, 0.6),   # an octave above, quieter, as long (but over 0.5): overtone
        note(3.00, 59, 0.25, 0.7),   # a twelfth above, louder than the bass: the guitar's
        note(4.00, 52, 1.50, 0.6),   # an octave above but ringing on: a chord tone
        note(5.00, 40, 0.30, 0.7),   # the bass's pitch, quieter, as long: its echo
        note(6.00, 40, 1.00, 0.7),   # the bass's pitch, ringing four times as long: a string
    ])
    f = BleedFilter({"guitar": "guitar", "bass": "bass"})
    out = f.add("bass", bass) + f.add("guitar", guitar) + f.end("bass") + f.end("guitar")
    assert released(out, "guitar") == [(1.01, 59), (3.0, 59), (4.0, 52), (6.0, 40)]
    assert f.dropped == {"guitar": 2}
