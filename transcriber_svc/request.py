"""A Transcribe stream's config message, checked and turned into the settings of its tracker."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tabagent import tuning as tunings
from tabagent.errors import BadConfig
from tabagent.tuning import Tuning
from tabagent.v1 import transcriber_pb2
from transcriber_svc.decoder import DecoderSettings
from transcriber_svc.pipeline import EarlyRelease
from transcriber_svc.postprocess import PostSettings

DEFAULT_ONSET_THRESHOLD = 0.5
DEFAULT_FRAME_THRESHOLD = 0.3
# A guitar heard in a stem it shares with other instruments (the DSP fallback's, a 4-stem
# model's "other") sounds quieter there than alone, and its notes' activation falls
# under 0.3 sooner: a lower frame threshold keeps a decaying chord's notes whole instead
# of cut into fragments (measured on bench/family_accuracy.py's dev songs, guitar F1:
# gbd +0.02, chords +0.01, band +0.01, acoustic -0.00; bench/chain_accuracy.py's
# synthesised mixes within 0.003).
SHARED_GUITAR_FRAME_THRESHOLD = 0.2
DEFAULT_MIN_NOTE_MS = 127.70
MIN_NOTE_MS_RANGE = (12.0, 5000.0)   # under one model frame (11.6 ms) no note survives


@dataclass(frozen=True)
class StreamSettings:
    """Everything one stream's NoteTracker needs, from its TranscribeConfig."""

    instrument: str
    part: str
    tuning: Tuning
    decoder: DecoderSettings
    post: PostSettings
    song_id: str = ""
    early: EarlyRelease | None = None


def default_frame_threshold(instrument: str, isolated: bool) -> float:
    """The frame threshold a stream gets when its config sends 0."""
    return SHARED_GUITAR_FRAME_THRESHOLD if instrument == "guitar" and not isolated else DEFAULT_FRAME_THRESHOLD


def _threshold(value: float, default: float, name: str) -> float:
    if value == 0:
        return default
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        raise BadConfig(f"{name} {value} is outside (0, 1); send 0 for the default {default}")
    return float(value)


def parse_config(
    cfg: transcriber_pb2.TranscribeConfig, max_buffer_seconds: float, early_seconds: float = 0.0
) -> StreamSettings:
    """Check a stream's config and build its settings.

    Args:
        cfg: the first message of the stream.
        max_buffer_seconds: the service's decoder buffer limit.
        early_seconds: for this long from the start, release notes early: the decoder
            forces cuts at 8 s of buffer (not max_buffer_seconds) and the fingerer looks
            2 s ahead (see pipeline.EarlyRelease); 0 = off.

    Returns:
        The stream's settings.

    Raises:
        BadConfig: an unknown instrument, an unplayable tuning or a value out of range.
    """
    instrument = (cfg.instrument or "guitar").strip().lower()
    if instrument not in tunings.INSTRUMENTS:
        raise BadConfig(
            f"unknown instrument {cfg.instrument!r}; this transcriber knows {', '.join(tunings.INSTRUMENTS)}"
        )
    tuning = tunings.from_proto(cfg.tuning if cfg.HasField("tuning") else None, instrument)
    onset = _threshold(cfg.onset_threshold, DEFAULT_ONSET_THRESHOLD, "onset_threshold")
    frame = _threshold(cfg.frame_threshold, default_frame_threshold(instrument, cfg.isolated_stem), "frame_threshold")
    min_ms = float(cfg.min_note_ms) or DEFAULT_MIN_NOTE_MS
    lo, hi = MIN_NOTE_MS_RANGE
    if not math.isfinite(min_ms) or not lo <= min_ms <= hi:
        raise BadConfig(f"min_note_ms {cfg.min_note_ms} is outside {lo:.0f}-{hi:.0f} ms; send 0 for the default")
    lookahead = min(3.0, max_buffer_seconds / 5)
    decoder = DecoderSettings(
        onset_threshold=onset,
        frame_threshold=frame,
        min_note_ms=min_ms,
        melodia_trick=not cfg.no_melodia_trick,
        max_buffer_seconds=max_buffer_seconds,
        forced_lookahead_seconds=lookahead,
        early_seconds=early_seconds,
        early_buffer_seconds=min(max_buffer_seconds, 2.5 * lookahead + 0.5),
    )
    post = PostSettings.for_instrument(instrument, tuning, polyphonic=cfg.polyphonic, isolated=cfg.isolated_stem)
    return StreamSettings(
        instrument=instrument,
        part=cfg.part.strip() or instrument,
        tuning=tuning,
        decoder=decoder,
        post=post,
        song_id=cfg.song_id,
        early=EarlyRelease(until_seconds=early_seconds) if early_seconds > 0 else None,
    )
