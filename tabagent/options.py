"""What a song may ask for (parts, tunings, capos, video style), checked once for every front door.

The CLI (`tabagent run`), the SDK (`tabagent.client.process_config`) and the HTTP API
(`gateway.options`) all call `check_song_options` before any model work, so a typo gets
the same one-line `BadConfig` everywhere, and that line lists what is accepted:

    unknown part 'gutar'; accepted: guitar, bass, lead, rhythm
    capo of guitar: 'x' is not a fret; accepted: a whole number 0-12
    unknown style 'disco'; accepted: guitar_hero, concert, abstract, ...

Parts: `guitar` and `bass` are the two stems; `lead` and `rhythm` split the guitar stem
in two (see gateway.partsplit), so they replace `guitar` rather than join it. A tuning
or capo given for `guitar` applies to `lead` and `rhythm` when those are asked for.

The video styles are named here because the core cannot import the video service;
tests/test_options.py checks this list against `video_svc.styles.STYLES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tabagent import tuning as tunings
from tabagent.errors import BadConfig
from tabagent.tuning import Tuning

# Part name -> the instrument (and so the tunings) it is played on.
PART_INSTRUMENTS: dict[str, str] = {"guitar": "guitar", "bass": "bass", "lead": "guitar", "rhythm": "guitar"}
PART_NAMES = tuple(PART_INSTRUMENTS)
SPLIT_PARTS = ("lead", "rhythm")       # the two halves of the guitar stem
DEFAULT_PARTS = ("guitar", "bass")
MAX_CAPO = 12
STYLE_NAMES = ("guitar_hero", "concert", "abstract", "acoustic", "metal", "jazz", "synthwave")
DEFAULT_STYLE = "guitar_hero"


@dataclass(frozen=True)
class SongOptions:
    """Checked options: parts in order, each part's Tuning (capo included), the style key."""

    parts: tuple[str, ...]
    tunings: dict[str, Tuning] = field(default_factory=dict)
    style: str = DEFAULT_STYLE


def instrument_of(part: str) -> str:
    """The instrument of a known part name (`check_parts` first)."""
    return PART_INSTRUMENTS[part]


def check_parts(parts: Sequence[str] | str) -> tuple[str, ...]:
    """Part names, checked: known, each once, at least one, not `guitar` with `lead`/`rhythm`.

    Args:
        parts: names, or one comma-separated string ("lead,rhythm,bass").

    Returns:
        The names, stripped and lower-cased, in the order given.

    Raises:
        BadConfig: naming what is wrong and listing the accepted names.
    """
    items = parts.split(",") if isinstance(parts, str) else list(parts)
    names = [p.strip().lower() for p in items if p and p.strip()]
    accepted = ", ".join(PART_NAMES)
    if not names:
        raise BadConfig(f"no part asked for; accepted: {accepted}")
    for name in names:
        if name not in PART_INSTRUMENTS:
            raise BadConfig(f"unknown part {name!r}; accepted: {accepted}")
    if len(set(names)) != len(names):
        raise BadConfig(f"each part once, got {','.join(names)}; accepted: {accepted}")
    if "guitar" in names and any(p in names for p in SPLIT_PARTS):
        raise BadConfig("lead and rhythm split the guitar part: ask for guitar, or for lead and/or rhythm, "
                        f"not both (got {','.join(names)})")
    return tuple(names)


def check_capo(part: str, value: object) -> int:
    """A capo fret: a whole number 0-12 (a string from a command line or a form, or an int).

    Raises:
        BadConfig: anything else, saying what is accepted.
    """
    accepted = f"accepted: a whole number 0-{MAX_CAPO}"
    if isinstance(value, bool):
        raise BadConfig(f"capo of {part}: {value!r} is not a fret; {accepted}")
    if isinstance(value, int):
        fret = value
    else:
        text = str(value).strip()
        if not text.lstrip("+").isdigit():
            raise BadConfig(f"capo of {part}: {text!r} is not a fret; {accepted}")
        fret = int(text)
    if not 0 <= fret <= MAX_CAPO:
        raise BadConfig(f"capo of {part}: {fret} is out of range; {accepted}")
    return fret


def check_tuning(part: str, spec: str, capo: int = 0) -> Tuning:
    """A part's tuning from a name, MIDI numbers or note names.

    Raises:
        BadConfig: an unknown name or an unplayable set of strings, listing the names.
    """
    instrument = PART_INSTRUMENTS.get(part, "guitar")
    try:
        return tunings.parse(spec, instrument, capo)
    except BadConfig as exc:
        names = ", ".join(tunings.TUNINGS[instrument])
        raise BadConfig(f"tuning of {part}: {_reason(exc.message)}; accepted: {names}, or the open strings "
                        "lowest first as MIDI numbers (40,45,50,55,59,64) or notes (E2,A2,D3,G3,B3,E4)") from None


def _reason(message: str) -> str:
    """The first clause of a tuning error (its own list of names is replaced by ours)."""
    return message.split("; known:")[0]


def check_style(style: str) -> str:
    """A video style preset's key ("" = the default).

    Raises:
        BadConfig: an unknown name, listing the presets.
    """
    key = (style or DEFAULT_STYLE).strip().lower().replace("-", "_").replace(" ", "_")
    if key not in STYLE_NAMES:
        raise BadConfig(f"unknown style {style!r}; accepted: {', '.join(STYLE_NAMES)}")
    return key


def per_part(name: str, values: Mapping[str, object], parts: Sequence[str]) -> dict[str, object]:
    """`values` keyed by the parts they apply to: a `guitar` key reaches `lead` and `rhythm`.

    Raises:
        BadConfig: a key that is not one of `parts`.
    """
    out: dict[str, object] = {}
    for key, value in values.items():
        part = key.strip().lower()
        if part == "guitar" and "guitar" not in parts and any(p in parts for p in SPLIT_PARTS):
            for split in SPLIT_PARTS:
                if split in parts:
                    out.setdefault(split, value)
            continue
        if part not in parts:
            raise BadConfig(f"{name}: {key!r} is not one of the parts asked for; accepted: {', '.join(parts)}")
        out[part] = value
    # An explicit lead=/rhythm= value beats one given for guitar, whatever the order.
    for key, value in values.items():
        if key.strip().lower() in SPLIT_PARTS:
            out[key.strip().lower()] = value
    return out


def check_song_options(
    parts: Sequence[str] | str = DEFAULT_PARTS,
    tuning: Mapping[str, str] | None = None,
    capo: Mapping[str, object] | None = None,
    style: str = "",
) -> SongOptions:
    """Every option a song takes, checked before any model work (CLI, SDK and HTTP).

    Args:
        parts: part names (or "lead,rhythm,bass").
        tuning: part -> tuning (name, MIDI numbers or notes); `guitar` reaches lead/rhythm.
        capo: part -> capo fret (int or text).
        style: the video style preset, checked whether or not a video is asked for.

    Returns:
        The checked options.

    Raises:
        BadConfig: the first problem, in one line that lists what is accepted.
    """
    names = check_parts(parts)
    capos = {p: check_capo(p, v) for p, v in per_part("capo", dict(capo or {}), names).items()}
    specs = per_part("tuning", dict(tuning or {}), names)
    built = {p: check_tuning(p, str(specs.get(p, "")), capos.get(p, 0)) for p in names}
    return SongOptions(parts=names, tunings=built, style=check_style(style))
