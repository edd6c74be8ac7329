"""The chain's model work driven directly in one process, without gRPC: the reference for its overhead.

`InProcessChain` holds the same warm models the services hold (the separator from
`separator_svc.model.load_model`, Basic Pitch from `transcriber_svc.model`) and runs one
song through the same stream objects the services drive: the separator's StemStream fed
1 s blocks, each part's stem averaged to mono, resampled to 22,050 Hz with the
transcriber's StreamResampler, cut into windows by a NoteTracker, run one forward pass
per window (the transcriber's DirectRunner) and decoded, post-processed and fingered,
plus the gateway's beat tracker on the mix. Everything runs in one thread, one step
after another; what remains in the chain on top of this is gRPC, protobuf, queues and
task switches (and the parallelism they buy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tabagent.audio import StreamResampler
from tabagent.notes import Note
from tabagent.rhythm import BeatTracker

RATE = 44_100
PARTS = {"guitar": "guitar", "bass": "bass"}


@dataclass
class InProcessResult:
    """Notes per part and where the time went (seconds)."""

    notes: dict[str, list[Note]] = field(default_factory=dict)
    seconds: float = 0.0
    wall: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


class InProcessChain:
    """Warm models and a `process` that runs one song through them.

    The transcriber's settings (threads, decoder buffer, early release) come from the
    environment like the service's (TranscriberConfig.from_env), so both sides decode alike.

    Args:
        separator_model: the separator model name ("" = htdemucs, falling back to DSP).
        model_dir: a Demucs model folder.
    """

    def __init__(self, separator_model: str = "", model_dir: Path | None = None) -> None:
        from separator_svc.model import load_model
        from transcriber_svc.config import TranscriberConfig
        from transcriber_svc.holder import warm_up
        from transcriber_svc.model import BasicPitchModel

        self.config = TranscriberConfig.from_env()
        self.separator = load_model(separator_model or "htdemucs", model_dir, "cpu")
        self.separator.warm_up()
        self.basic_pitch = BasicPitchModel(threads=self.config.threads, device="cpu")
        warm_up(self.basic_pitch)

    def stem_for(self, instrument: str) -> str:
        """The stem the gateway routes a part to (see gateway.chain.stem_for_part)."""
        from gateway.chain import stem_for_part

        return stem_for_part(instrument, list(self.separator.sources))

    def process(self, mix: np.ndarray, block_seconds: float = 1.0) -> InProcessResult:
        """Run one song, (frames, 2) float32 at 44.1 kHz, pushed in blocks as the gateway does."""
        from tabagent.v1 import transcriber_pb2
        from transcriber_svc.basicpitch import AUDIO_SAMPLE_RATE
        from transcriber_svc.pipeline import NoteTracker
        from transcriber_svc.request import parse_config

        started = time.perf_counter()
        spent = dict.fromkeys(("separate", "resample", "model", "notes", "beats"), 0.0)
        stems = {part: self.stem_for(instrument) for part, instrument in PARTS.items()}
        stream = self.separator.open_stream(sorted(set(stems.values())))
        trackers = {}
        for part, instrument in PARTS.items():
            settings = parse_config(transcriber_pb2.TranscribeConfig(instrument=instrument, part=part),
                                    self.config.max_buffer_seconds, self.config.early_seconds)
            trackers[part] = NoteTracker(settings.tuning, instrument, settings.decoder, settings.post,
                                         early=settings.early)
        resamplers = {p: StreamResampler(RATE, AUDIO_SAMPLE_RATE, 1) for p in PARTS}
        notes: dict[str, list[Note]] = {p: [] for p in PARTS}
        beats = BeatTracker(RATE)

        def transcribe(part: str, stem_audio: np.ndarray | None) -> None:
            t = time.perf_counter()
            resampler, tracker = resamplers[part], trackers[part]
            if stem_audio is None:
                tail = resampler.process(np.zeros((0, 1), np.float32), last=True)
                windows = np.concatenate([tracker.push_audio(tail[:, 0]), tracker.finish_audio()])
            else:
                mono = stem_audio.mean(axis=1, keepdims=True, dtype=np.float32)
                windows = tracker.push_audio(resampler.process(mono)[:, 0])
            spent["resample"] += time.perf_counter() - t
            t = time.perf_counter()
            output = self.basic_pitch.forward_each(windows) if len(windows) else None
            spent["model"] += time.perf_counter() - t
            t = time.perf_counter()
            if output is not None:
                notes[part].extend(tracker.add_outputs(output).notes)
            if stem_audio is None:
                notes[part].extend(tracker.flush().notes)
            spent["notes"] += time.perf_counter() - t

        block = int(block_seconds * RATE)
        for lo in range(0, mix.shape[0], block):
            chunk = mix[lo : lo + block]
            t = time.perf_counter()
            beats.push(chunk.mean(axis=1))
            spent["beats"] += time.perf_counter() - t
            t = time.perf_counter()
            out = stream.push(chunk)
            spent["separate"] += time.perf_counter() - t
            for part, stem in stems.items():
                if out[stem].shape[0]:
                    transcribe(part, out[stem])
        t = time.perf_counter()
        out = stream.finish()
        spent["separate"] += time.perf_counter() - t
        for part, stem in stems.items():
            if out[stem].shape[0]:
                transcribe(part, out[stem])
            transcribe(part, None)
        t = time.perf_counter()
        beats.result()
        spent["beats"] += time.perf_counter() - t
        return InProcessResult(notes, mix.shape[0] / RATE, time.perf_counter() - started, spent)
