"""Where the fingering engine and the human tabs differ, bucketed, on the dev songs only.

    .venv/bin/python bench/fingering_errors.py              # the bucket tables, dev songs
    .venv/bin/python bench/fingering_errors.py --track Photograph --show 40   # misses in context

Reads the human tabs of `bench/human_tabs.py` (cache only) and fingers each dev track with
`tabagent.fingering.assign`. Every note the engine places elsewhere than the human is
put in a bucket by what differs:

- open / fretted: one of the two plays an open string, the other the same pitch fretted;
- next string up / down: the engine's string is one above (higher, so a lower fret) or
  one below the human's (up the neck);
- 2+ strings: further apart (a 10th-fret-or-more move of the same pitch);

and, separately, by how the miss sits in the piece: inside a *run* (at least `RUN`
consecutive events missed: a phrase fingered in another box), or *isolated*; by event
size (single note, two notes, chord); and by register (single notes above E4, the top
open string, where a lead is played up the neck or not).

It also prices the human's fingering with the engine's own cost (`--costs`): the search
is run once freely and once held to the human's string and fret at every note, and each
cost term (`tabagent.fingering_search.FEATURES` times its weight) is summed along both paths. A
term that the human's path pays more for is one that pushes the engine off the human.

The held-out songs are never read here: their errors must not steer the engine.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import human_tabs  # noqa: E402

from evalkit.tabcorpus import HumanTrack  # noqa: E402
from tabagent import fingering  # noqa: E402
from tabagent.fingering import assign  # noqa: E402
from tabagent.fingering_search import FEATURES, Context, Search, feature_weights  # noqa: E402
from tabagent.fretboard import Weights, group_events, weights_for  # noqa: E402
from tabagent.notes import Note  # noqa: E402
from tabagent.tuning import Tuning  # noqa: E402

RUN = 4          # consecutive missed events that make a phrase-level miss
HIGH_PITCH = 64  # E4: single notes above it are lead register


@dataclass(frozen=True)
class Miss:
    """One note of a dev track the engine placed elsewhere than the human."""

    track: str
    pitch: int
    start: float
    human: tuple[int, int]    # (string, fret)
    engine: tuple[int, int]
    size: int                 # notes in its event
    in_run: bool              # part of RUN or more consecutive missed events

    @property
    def kind(self) -> str:
        (hs, hf), (es, ef) = self.human, self.engine
        if hf == 0 or ef == 0:
            return "open / fretted"
        if es == hs + 1:
            return "next string up (engine lower on the neck)"
        if es == hs - 1:
            return "next string down (engine higher on the neck)"
        return "2+ strings " + ("up" if es > hs else "down")


def dev_tracks(cache: Path = human_tabs.DEFAULT_CACHE) -> list[HumanTrack]:
    """The dev tracks of the human-tab bench (every track `human_tabs.split_of` calls dev)."""
    tracks = human_tabs.load(human_tabs.fetch(cache, offline=True))
    return [t for t in tracks if human_tabs.split_of(t) == "dev"]


def diagnose(track: HumanTrack, engine: Callable[[list[Note], Tuning], object] = assign) -> tuple[int, list[Miss]]:
    """Finger the track and list its misses.

    Returns:
        The number of notes and the misses.
    """
    notes = [Note(n.pitch, n.start, n.end, n.velocity) for n in track.notes]
    engine(notes, track.tuning)
    pairs = {id(e): h for h, e in zip(track.notes, notes, strict=True)}
    events = group_events(sorted(notes, key=lambda n: (n.start, n.pitch)))
    missed = [any((pairs[id(n)].string, pairs[id(n)].fret) != (n.string, n.fret) for n in ev) for ev in events]
    in_run = [False] * len(events)
    i = 0
    while i < len(events):
        j = i
        while j < len(events) and missed[j]:
            j += 1
        if j - i >= RUN:
            for k in range(i, j):
                in_run[k] = True
        i = max(j, i + 1)
    out = []
    for k, ev in enumerate(events):
        for n in ev:
            h = pairs[id(n)]
            if (h.string, h.fret) != (n.string, n.fret):
                out.append(Miss(f"{track.song} / {track.name}", n.pitch, n.start, (h.string, h.fret),
                                (n.string, n.fret), len(ev), in_run[k]))
    return len(notes), out


def _size(m: Miss) -> str:
    return "single" if m.size == 1 else "two notes" if m.size == 2 else "chord (3+)"


def _table(title: str, misses: Sequence[Miss], total: int, key: Callable[[Miss], str]) -> list[str]:
    counts = Counter(key(m) for m in misses)
    lines = [f"| {title} | misses | of misses | of dev notes |", "| --- | ---: | ---: | ---: |"]
    for name, n in counts.most_common():
        lines.append(f"| {name} | {n} | {100 * n / len(misses):.1f}% | {100 * n / total:.1f}% |")
    return lines


def report(tracks: Sequence[HumanTrack]) -> str:
    """Markdown tables of the dev misses by kind, placement in the phrase, size and track."""
    total = 0
    misses: list[Miss] = []
    per_track: list[tuple[str, str, int, int]] = []
    for track in tracks:
        n, m = diagnose(track)
        total += n
        misses.extend(m)
        if n >= human_tabs.SMALL_TRACK:
            per_track.append((f"{track.song} / {track.name}", track.instrument, n, len(m)))
    lines = [f"Dev notes: {total}, missed: {len(misses)} ({100 * len(misses) / total:.1f}%).", ""]
    lines += _table("what differs", misses, total, lambda m: m.kind) + [""]
    lines += _table("where", misses, total,
                    lambda m: ("run of " + str(RUN) + "+ missed events" if m.in_run else "isolated")) + [""]
    lines += _table("event", misses, total, _size) + [""]
    lines += _table("single notes by register", [m for m in misses if m.size == 1], total,
                    lambda m: "above E4" if m.pitch > HIGH_PITCH else "E4 and below") + [""]
    lines += ["| track | instrument | notes | missed | agreement |", "| --- | --- | ---: | ---: | ---: |"]
    for name, instrument, n, k in sorted(per_track, key=lambda r: -r[3]):
        lines.append(f"| {name} | {instrument} | {n} | {k} | {100 * (n - k) / n:.1f}% |")
    return "\n".join(lines)


def show(track: HumanTrack, count: int) -> str:
    """The first `count` events of a track with the human's and the engine's string:fret side by side."""
    notes = [Note(n.pitch, n.start, n.end, n.velocity) for n in track.notes]
    assign(notes, track.tuning)
    pairs = {id(e): h for h, e in zip(track.notes, notes, strict=True)}
    lines = []
    for ev in group_events(sorted(notes, key=lambda n: (n.start, n.pitch)))[:count]:
        human = " ".join(f"{pairs[id(n)].string}:{pairs[id(n)].fret}" for n in ev)
        engine = " ".join(f"{n.string}:{n.fret}" for n in ev)
        mark = "" if human == engine else "   <-- miss"
        pitches = " ".join(str(n.pitch) for n in ev)
        lines.append(f"{ev[0].start:8.2f}  {pitches:<18} human {human:<24} engine {engine}{mark}")
    return "\n".join(lines)


def _search_setup(track: HumanTrack) -> tuple[dict[int, tuple[int, int]], Weights, list, Search, Context, list]:
    """The engine's search over a track's notes, ready to run: the human's (string, fret)
    by id of each copied note, the weights, the events, the search, its start context and
    the states of every event."""
    notes = [Note(n.pitch, n.start, n.end, n.velocity) for n in track.notes]
    human = {id(n): (h.string, h.fret) for h, n in zip(track.notes, notes, strict=True)}
    weights = weights_for(track.tuning)
    playable, _ = fingering._split_range(notes, track.tuning)
    events, _ = fingering._events(playable, track.tuning, weights)
    search = Search(track.tuning, weights)
    return human, weights, events, search, Context.start(len(track.tuning.strings)), search.layers(events)


def cost_gap(track: HumanTrack) -> tuple[np.ndarray, float]:
    """Per cost term (`FEATURES`), the human's path minus the engine's, and the engine's total.

    The human's path is the search held to the human's shapes (the hand position, which a
    tab does not show, is the search's best for them).
    """
    human, weights, events, search, start, layers = _search_setup(track)
    search.run(events, start, layers)
    free = search.path_features(events, start, layers, search.last_states)
    engine_cost = search.last_cost
    held = []
    for event, layer in zip(events, layers, strict=True):
        want = [human[id(n)] for n in event.notes]
        rows = np.flatnonzero(np.all([(layer.strings[:, k] == s) & (layer.frets[:, k] == f)
                                      for k, (s, f) in enumerate(want)], axis=0))
        held.append(layer.take(rows) if len(rows) else layer)
    search.run(events, start, held)
    kept = search.path_features(events, start, held, search.last_states)
    return (kept - free)[:-1] * feature_weights(weights), engine_cost


def box_oracle(track: HumanTrack) -> tuple[int, int]:
    """Notes right when the search is held to the human's hand position at every event.

    The hand may sit at any position from which the human's shape is playable; within it
    the search still picks string and fret. Returns (right when held, right when free).
    """
    human, _, events, search, start, layers = _search_setup(track)
    held = []
    for event, layer in zip(events, layers, strict=True):
        want = [human[id(n)] for n in event.notes]
        match = np.all([(layer.strings[:, k] == s) & (layer.frets[:, k] == f) for k, (s, f) in enumerate(want)],
                       axis=0)
        rows = np.flatnonzero(np.isin(layer.p, layer.p[match]))
        held.append(layer.take(rows) if len(rows) else layer)
    counts = []
    for chosen in (held, layers):
        path = search.run(events, start, chosen)
        right = 0
        for event, (k, _) in zip(events, path, strict=True):
            shape = event.shapes[k]
            right += sum((s, f) == human[id(n)] for n, s, f in zip(event.notes, shape.strings, shape.frets, strict=True))
        counts.append(right)
    return counts[0], counts[1]


def register_report(tracks: Sequence[HumanTrack]) -> str:
    """Markdown: single notes of the dev guitar tracks by register, agreement and where the engine sits."""
    rows: dict[int, list[int]] = {}
    for track in tracks:
        if track.instrument != "guitar" or len(track.notes) < human_tabs.SMALL_TRACK:
            continue
        notes = [Note(n.pitch, n.start, n.end, n.velocity) for n in track.notes]
        assign(notes, track.tuning)
        human = {id(e): h for h, e in zip(track.notes, notes, strict=True)}
        low = min(track.tuning.sounding)
        for event in group_events(sorted(notes, key=lambda n: (n.start, n.pitch))):
            if len(event) != 1:
                continue
            n, h = event[0], human[id(event[0])]
            row = rows.setdefault((n.pitch - low) // 6, [0, 0, 0, 0, 0])
            row[0] += 1
            row[1] += (n.string, n.fret) == (h.string, h.fret)
            row[2] += n.fret < h.fret
            row[3] += h.fret
            row[4] += n.fret
    lines = ["| semitones above the lowest string | single notes | agreement | engine lower on the neck | "
             "mean fret, human / engine |", "| --- | ---: | ---: | ---: | ---: |"]
    for band in sorted(rows):
        n, right, lower, hf, ef = rows[band]
        if n >= 100:
            lines.append(f"| {6 * band}-{6 * band + 5} | {n} | {100 * right / n:.1f}% | {100 * lower / n:.1f}% | "
                         f"{hf / n:.1f} / {ef / n:.1f} |")
    return "\n".join(lines)


def cost_report(tracks: Sequence[HumanTrack], top: int = 4) -> str:
    """Markdown: per dev track, the cost terms that most favour the engine's fingering over the human's."""
    lines = ["| track | notes | human's extra cost per note | terms that cost the human's fingering most |",
             "| --- | ---: | ---: | --- |"]
    for track in tracks:
        if len(track.notes) < human_tabs.SMALL_TRACK:
            continue
        gap, _ = cost_gap(track)
        order = [int(k) for k in np.argsort(-gap)[:top] if gap[k] > 0.5]
        terms = ", ".join(f"{FEATURES[k]} {gap[k]:+.0f}" for k in order) or "-"
        lines.append(f"| {track.song} / {track.name} | {len(track.notes)} | {gap.sum() / len(track.notes):.3f} | "
                     f"{terms} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--track", help="show one dev track (a substring of 'song / track')")
    parser.add_argument("--show", type=int, default=60, help="events to show with --track")
    parser.add_argument("--skip", type=int, default=0, help="events to skip with --track")
    parser.add_argument("--costs", action="store_true", help="the cost terms that part the engine from the human")
    parser.add_argument("--boxes", action="store_true",
                        help="agreement when held to the human's hand position, and single notes by register")
    args = parser.parse_args(argv)
    tracks = dev_tracks()
    if args.costs:
        print(cost_report(tracks))
        return 0
    if args.boxes:
        held = free = total = 0
        for track in tracks:
            if len(track.notes) >= human_tabs.SMALL_TRACK:
                a, b = box_oracle(track)
                held, free, total = held + a, free + b, total + len(track.notes)
        print(f"Dev tracks of {human_tabs.SMALL_TRACK}+ notes: {100 * free / total:.1f}% free, "
              f"{100 * held / total:.1f}% held to the human's hand position.\n")
        print(register_report(tracks))
        return 0
    if args.track:
        for track in tracks:
            if args.track.lower() in f"{track.song} / {track.name}".lower():
                print(f"== {track.song} / {track.name} ({track.tuning.name} {track.tuning.strings})")
                print("\n".join(show(track, args.skip + args.show).splitlines()[args.skip:]))
        return 0
    print(report(tracks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
