"""Instruments, tunings and playable ranges of fretted instruments."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tabagent.errors import BadConfig
from tabagent.v1 import audio_pb2

_NOTE_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

# Open-string MIDI pitches, lowest string first.
TUNINGS: dict[str, dict[str, tuple[int, ...]]] = {
    "guitar": {
        "standard": (40, 45, 50, 55, 59, 64),
        "drop_d": (38, 45, 50, 55, 59, 64),
        "d_standard": (38, 43, 48, 53, 57, 62),
        "eb_standard": (39, 44, 49, 54, 58, 63),
        "drop_c": (36, 43, 48, 53, 57, 62),
        "open_g": (38, 43, 50, 55, 59, 62),
        "open_d": (38, 45, 50, 54, 57, 62),
        "dadgad": (38, 45, 50, 55, 57, 62),
        "seven_standard": (35, 40, 45, 50, 55, 59, 64),
    },
    "bass": {
        "standard": (28, 33, 38, 43),
        "drop_d": (26, 33, 38, 43),
        "five_standard": (23, 28, 33, 38, 43),
        "six_standard": (23, 28, 33, 38, 43, 48),
    },
}

DEFAULT_MAX_FRET = {"guitar": 24, "bass": 24}
INSTRUMENTS = tuple(TUNINGS)


def note_name_to_midi(name: str) -> int:
    """'E2' -> 40, 'F#3' -> 54, 'Bb1' -> 34."""
    m = re.fullmatch(r"([A-Ga-g])([#b]?)(-?\d)", name.strip())
    if not m:
        raise BadConfig(f"not a note name: {name!r} (expected e.g. E2, F#3, Bb1)")
    pc = _NOTE_NAMES[m.group(1).upper()] + {"#": 1, "b": -1, "": 0}[m.group(2)]
    return 12 * (int(m.group(3)) + 1) + pc


def midi_to_note_name(pitch: int) -> str:
    """40 -> 'E2'."""
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    return f"{names[pitch % 12]}{pitch // 12 - 1}"


@dataclass(frozen=True)
class Tuning:
    """A fretted instrument's strings (open MIDI pitches, lowest first), capo and max fret."""

    strings: tuple[int, ...]
    capo: int = 0
    max_fret: int = 24
    name: str = ""
    instrument: str = "guitar"
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not 1 <= len(self.strings) <= 12:
            raise BadConfig(f"a tuning needs 1-12 strings, got {len(self.strings)}")
        if any(not 0 <= p <= 127 for p in self.strings):
            raise BadConfig(f"string pitches must be MIDI numbers 0-127, got {list(self.strings)}")
        if not 0 <= self.capo <= 12:
            raise BadConfig(f"capo must be 0-12, got {self.capo}")
        if not 1 <= self.max_fret <= 36:
            raise BadConfig(f"max fret must be 1-36, got {self.max_fret}")
        if self.capo >= self.max_fret:
            raise BadConfig(f"capo {self.capo} leaves no frets below max fret {self.max_fret}")

    @property
    def sounding(self) -> tuple[int, ...]:
        """Open pitches with the capo applied."""
        return tuple(p + self.capo for p in self.strings)

    @property
    def frets(self) -> int:
        """Frets playable above the capo."""
        return self.max_fret - self.capo

    @property
    def lowest(self) -> int:
        return min(self.sounding)

    @property
    def highest(self) -> int:
        return max(self.sounding) + self.frets

    def playable(self, pitch: int) -> bool:
        """Whether some string can play `pitch`."""
        return any(0 <= pitch - p <= self.frets for p in self.sounding)

    def positions(self, pitch: int) -> list[tuple[int, int]]:
        """Every (string, fret) that plays `pitch`; fret is relative to the capo."""
        return [(s, pitch - p) for s, p in enumerate(self.sounding) if 0 <= pitch - p <= self.frets]

    def to_proto(self) -> audio_pb2.Tuning:
        return audio_pb2.Tuning(
            strings=list(self.strings), capo=self.capo, max_fret=self.max_fret, name=self.name
        )

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "strings": list(self.strings),
            "string_names": [midi_to_note_name(p) for p in self.strings],
            "capo": self.capo,
            "max_fret": self.max_fret,
        }


def standard(instrument: str) -> Tuning:
    """The standard tuning of `instrument` ("guitar" or "bass")."""
    return named(instrument, "standard")


def named(instrument: str, name: str, capo: int = 0, max_fret: int | None = None) -> Tuning:
    """A tuning by instrument and name, e.g. ("guitar", "drop_d")."""
    if instrument not in TUNINGS:
        raise BadConfig(f"unknown instrument {instrument!r}; known: {', '.join(INSTRUMENTS)}")
    table = TUNINGS[instrument]
    if name not in table:
        raise BadConfig(f"unknown {instrument} tuning {name!r}; known: {', '.join(table)}")
    return Tuning(
        strings=table[name],
        capo=capo,
        max_fret=max_fret or DEFAULT_MAX_FRET[instrument],
        name=name,
        instrument=instrument,
    )


def parse(spec: str, instrument: str = "guitar", capo: int = 0, max_fret: int | None = None) -> Tuning:
    """Parse a tuning given as a name ("drop_d"), MIDI numbers ("40,45,...") or notes ("E2,A2,...")."""
    spec = spec.strip()
    if not spec:
        return named(instrument, "standard", capo, max_fret)
    if "," not in spec and not spec[0].isdigit():
        try:
            return named(instrument, spec.lower().replace("-", "_").replace(" ", "_"), capo, max_fret)
        except BadConfig:
            if not re.fullmatch(r"([A-Ga-g][#b]?-?\d)+", spec):
                raise
            spec = ",".join(re.findall(r"[A-Ga-g][#b]?-?\d", spec))
    parts = [p for p in re.split(r"[,\s]+", spec) if p]
    pitches = tuple(int(p) if re.fullmatch(r"-?\d+", p) else note_name_to_midi(p) for p in parts)
    return Tuning(pitches, capo, max_fret or DEFAULT_MAX_FRET.get(instrument, 24), "custom", instrument)


def from_proto(msg: audio_pb2.Tuning | None, instrument: str) -> Tuning:
    """A Tuning from its message; an empty message means the instrument's standard tuning."""
    if instrument not in TUNINGS:
        raise BadConfig(f"unknown instrument {instrument!r}; known: {', '.join(INSTRUMENTS)}")
    max_fret = (msg.max_fret if msg is not None else 0) or DEFAULT_MAX_FRET[instrument]
    capo = msg.capo if msg is not None else 0
    if msg is None or not msg.strings:
        return named(instrument, "standard", capo, max_fret)
    name = msg.name or _name_of(instrument, tuple(msg.strings))
    return Tuning(tuple(msg.strings), capo, max_fret, name, instrument)


def _name_of(instrument: str, strings: tuple[int, ...]) -> str:
    for name, pitches in TUNINGS.get(instrument, {}).items():
        if pitches == strings:
            return name
    return "custom"
