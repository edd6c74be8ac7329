"""`tabagent fingering`: strings and frets for notes given as JSON on stdin or a MIDI file.

    tabagent fingering --tuning 40,45,50,55,59,64 [--capo N] [--instrument bass] \\
        [--max-fret N] [--midi file.mid [--track NAME|N]] < notes.json > fingered.json

Input JSON: ``{"tuning": [40, ...], "notes": [{"pitch": 64, "start": 0.0, "end": 0.5}]}``.
Output: the same JSON with ``string`` (0 = lowest) and ``fret`` per note and
``out_of_range`` (see `tabagent.fingering.finger_json`). A MIDI file with several
instrument tracks (Tab Agent's notes.mid has one per part) needs `--track`, by name or
0-based number among the non-drum tracks: merging a guitar and a bass would give one
instrument both lines. A bass track (by name or General MIDI program) is fingered as a
bass unless `--instrument` says otherwise. `add_parser` makes it a subcommand of the
`tabagent` command (launcher.cli).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from tabagent import tuning as tunings
from tabagent.errors import BadConfig, InvalidInput

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the `fingering` subcommand.

    Args:
        subparsers: the result of `ArgumentParser.add_subparsers()`.

    Returns:
        The subcommand's parser (its handler is `run`, set as the `func` default).
    """
    parser = subparsers.add_parser(
        "fingering",
        help="place notes (JSON on stdin, or a MIDI file) on strings and frets",
        description="Reads {\"tuning\": [...], \"notes\": [{\"pitch\", \"start\", \"end\"}]} on stdin "
        "(or a MIDI file) and writes the same JSON with string (0 = lowest) and fret per note.",
    )
    parser.add_argument(
        "--tuning",
        default=None,
        help="open strings, lowest first: MIDI numbers (40,45,50,55,59,64), note names "
        "(E2,A2,D3,G3,B3,E4) or a name (drop_d); default: the JSON's tuning or standard",
    )
    parser.add_argument("--capo", type=int, default=None, help="capo fret; output frets are relative to it")
    parser.add_argument("--instrument", choices=tunings.INSTRUMENTS, default=None, help="guitar (default) or bass")
    parser.add_argument("--max-fret", type=int, default=None, help="highest fret (default 24)")
    parser.add_argument("--midi", type=Path, default=None, help="read notes from this MIDI file instead of stdin")
    parser.add_argument("--track", default=None, metavar="NAME|N",
                        help="the MIDI track to finger, by name or 0-based number among the instrument tracks "
                        "(needed when the file has several)")
    parser.add_argument("--indent", type=int, default=None, help="pretty-print the JSON output")
    parser.set_defaults(func=run)
    return parser


def _midi_notes(path: Path, track: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The notes of one instrument track of a MIDI file, and that track's instrument if it
    says (a bass by name or program), else None.

    Raises:
        InvalidInput: an unreadable file, several tracks and no `track`, or no such track.
    """
    import pretty_midi

    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except Exception as exc:  # pretty_midi raises many types on bad files
        raise InvalidInput(f"cannot read MIDI file {path}: {exc}") from None
    tracks = [inst for inst in midi.instruments if not inst.is_drum and inst.notes]
    listing = ", ".join(f"{i} {inst.name or 'unnamed'}" for i, inst in enumerate(tracks))
    if not tracks:
        raise InvalidInput(f"{path}: no instrument track with notes")
    if track is None:
        if len(tracks) > 1:
            raise InvalidInput(f"{path} has {len(tracks)} instrument tracks ({listing}); "
                               "choose one with --track NAME|N")
        chosen = tracks[0]
    else:
        wanted = track.strip()
        named = [t for t in tracks if (t.name or "").strip().lower() == wanted.lower()]
        if named:
            chosen = named[0]
        elif wanted.isdigit() and int(wanted) < len(tracks):
            chosen = tracks[int(wanted)]
        else:
            raise InvalidInput(f"{path}: no track {wanted!r}; accepted: {listing}")
    notes = [
        {"pitch": n.pitch, "start": round(n.start, 6), "end": round(n.end, 6), "velocity": round(n.velocity / 127, 3)}
        for n in chosen.notes
    ]
    # General MIDI programs 32-39 (0-based) are basses.
    bass = "bass" in (chosen.name or "").lower() or 32 <= chosen.program <= 39
    return sorted(notes, key=lambda d: (d["start"], d["pitch"])), ("bass" if bass else None)


def run(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    """Run `tabagent fingering`.

    Args:
        args: parsed arguments (see `add_parser`).
        stdin: where the JSON comes from (default sys.stdin).
        stdout: where the JSON goes (default sys.stdout).

    Returns:
        0 on success, 2 on bad input (the reason goes to stderr).
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    try:
        if args.midi is not None:
            notes, instrument = _midi_notes(args.midi, getattr(args, "track", None))
            data: dict[str, Any] = {"notes": notes}
            if instrument and args.tuning is None:
                data["instrument"] = instrument
        else:
            if getattr(args, "track", None) is not None:
                raise InvalidInput("--track picks a track of a MIDI file: give it with --midi FILE")
            try:
                data = json.load(stdin)
            except json.JSONDecodeError as exc:
                raise InvalidInput(f"stdin is not JSON: {exc}") from None
            if isinstance(data, list):
                data = {"notes": data}
            if not isinstance(data, dict):
                raise InvalidInput('expected a JSON object {"notes": [...]}')
        if args.instrument:
            data["instrument"] = args.instrument
        if args.max_fret is not None:
            data["max_fret"] = args.max_fret
        # Here rather than at the top: every `tabagent` command (`up` included) imports this
        # module to build its parser, and the engine brings numpy.
        from tabagent.fingering import finger_json

        result = finger_json(data, tuning=args.tuning, capo=args.capo)
    except (BadConfig, InvalidInput) as exc:
        print(f"tabagent fingering: {exc.message}", file=sys.stderr)
        return 2
    json.dump(result, stdout, indent=args.indent)
    stdout.write("\n")
    placed = sum(1 for n in result["notes"] if n["string"] >= 0)
    logger.info("fingered %d notes, %d out of range", placed, len(result["out_of_range"]))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m launcher.fingering_cli`."""
    parser = argparse.ArgumentParser(prog="tabagent")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fingering", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
