"""The options of an HTTP job (form fields or query parameters) and their ProcessConfig.

Every option may come as a query parameter or a multipart form field (a form field wins
over a query parameter of the same name). Per-part options repeat as `PART=VALUE`:

    parts=guitar,bass  tuning=guitar=drop_d  tuning=bass=28,33,38,43  capo=guitar=2
    video=true  style=concert  size=640x360  fps=24  title=My song  stems=true  model=htdemucs
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tabagent import options as core_options
from tabagent.client import process_config
from tabagent.errors import BadConfig
from tabagent.v1 import gateway_pb2

OPTION_DOCS = {
    "parts": "parts to transcribe, comma-separated: guitar, bass, or lead and rhythm instead of guitar "
             "(default guitar,bass)",
    "tuning": "PART=TUNING, repeatable: a name (drop_d), MIDI numbers (38,45,50,55,59,64) or notes (D2,A2,...); "
              "guitar= also reaches lead and rhythm",
    "capo": "PART=FRET, repeatable (0-12)",
    "video": "also render video.mp4 (true/false)",
    "style": f"video style preset ({', '.join(core_options.STYLE_NAMES)}), checked even without video",
    "size": "video size WIDTHxHEIGHT, e.g. 1280x720",
    "fps": "video frame rate",
    "title": "song title for the tabs and the video (default: the file name)",
    "stems": "also keep the separated stems as FLAC artifacts (true/false)",
    "model": "separator model: auto (default: htdemucs_6s when available), htdemucs_6s, htdemucs, htdemucs_ft, dsp",
    "filename": "the file's name for a raw-body upload (shown only; the content decides the format)",
}
KNOWN = tuple(OPTION_DOCS)
PART_NAMES = core_options.PART_NAMES
MAX_TITLE = 200
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass
class JobOptions:
    """What an HTTP client asked for, normalised (stored with the job record)."""

    parts: list[str] = field(default_factory=lambda: ["guitar", "bass"])
    tuning: dict[str, str] = field(default_factory=dict)
    capo: dict[str, int] = field(default_factory=dict)
    video: bool = False
    style: str = ""
    size: tuple[int, int] | None = None
    fps: int = 0
    title: str = ""
    stems: bool = False
    model: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size) if self.size else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobOptions:
        values = {k: d[k] for k in asdict(cls()) if k in d}
        if values.get("size"):
            values["size"] = tuple(values["size"])
        return cls(**values)

    def to_config(self, filename: str = "") -> gateway_pb2.ProcessConfig:
        """The ProcessConfig the chain runs with.

        Raises:
            BadConfig: an impossible tuning or capo.
        """
        return process_config(
            filename=filename, parts=self.parts, tuning=self.tuning, capo=self.capo,
            video=self.video, style=self.style, size=self.size, fps=self.fps,
            separator_model=self.model, return_stems=self.stems, title=self.title,
        )


def _bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise BadConfig(f"{name}: expected true or false, got {value!r}")


def _int(name: str, value: str, low: int, high: int) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise BadConfig(f"{name}: expected a whole number, got {value!r}") from None
    if not low <= n <= high:
        raise BadConfig(f"{name}: must be {low}..{high}, got {n}")
    return n


def _per_part(name: str, values: Sequence[str]) -> dict[str, str]:
    """`PART=VALUE` items (repeated, or `;`-separated) as part -> value, keys as given;
    `tabagent.options` checks them against the parts."""
    out: dict[str, str] = {}
    for raw in values:
        for item in raw.split(";"):
            item = item.strip()
            if not item:
                continue
            part, sep, value = item.partition("=")
            if not sep:  # a bare value is the guitar's (as on the command line)
                part, value = "guitar", item
            part, value = part.strip(), value.strip()
            if not value:
                raise BadConfig(f"{name}: expected PART=VALUE, got {item!r}")
            out[part] = value
    return out


def parse_options(fields: Mapping[str, Sequence[str]]) -> JobOptions:
    """Validate raw option values (every name may repeat) into JobOptions.

    Args:
        fields: option name -> the values given (query parameters, form fields).

    Raises:
        BadConfig: an unknown option or a value out of range, with a readable message.
    """
    unknown = sorted(set(fields) - set(KNOWN))
    if unknown:
        raise BadConfig(f"unknown option(s) {', '.join(unknown)}; known: {', '.join(KNOWN)}")

    def last(name: str, default: str = "") -> str:
        values = fields.get(name) or []
        return values[-1] if values else default

    opts = JobOptions()
    if "parts" in fields:
        opts.parts = list(core_options.check_parts(",".join(fields["parts"])))
    # The one check every front door shares (tabagent.options): parts, tunings, capos, style.
    tuning = _per_part("tuning", fields.get("tuning", []))
    capo = _per_part("capo", fields.get("capo", []))
    checked = core_options.check_song_options(opts.parts, tuning, capo, last("style"))
    opts.tuning = {p: str(v) for p, v in core_options.per_part("tuning", tuning, opts.parts).items()}
    opts.capo = {p: checked.tunings[p].capo for p in core_options.per_part("capo", capo, opts.parts)}
    opts.video = _bool("video", last("video"))
    opts.stems = _bool("stems", last("stems"))
    opts.style = last("style").strip()
    opts.model = last("model").strip()
    opts.title = last("title").strip()
    if len(opts.title) > MAX_TITLE:
        raise BadConfig(f"title: at most {MAX_TITLE} characters")
    size = last("size").strip().lower()
    if size:
        w, sep, h = size.partition("x")
        if not sep:
            raise BadConfig(f"size: expected WIDTHxHEIGHT like 1280x720, got {size!r}")
        opts.size = (_int("size width", w, 16, 7680), _int("size height", h, 16, 4320))
    if last("fps"):
        opts.fps = _int("fps", last("fps"), 1, 120)
    opts.to_config()  # tunings and capos must make sense before the job is accepted
    return opts
