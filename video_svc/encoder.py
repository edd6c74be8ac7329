"""H.264 + AAC into fragmented MP4 with PyAV, fragment by fragment as frames and audio arrive.

The audio track is the song's own samples, AAC-encoded as they stream in (compressed
audio is all that waits for the video to catch up). AAC starts with the encoder's
priming samples and a progressively written fragmented MP4 carries no edit list, so the
sound of song time s plays at media time s + priming: frames are therefore drawn for
song time = media time - `delay` (see `Mp4Encoder.delay`), which keeps picture and
sound together in every player.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from fractions import Fraction

import av
import numpy as np

from tabagent.audio import StreamResampler
from video_svc.canvas import Canvas
from video_svc.mp4 import Fragment, FragmentSink

log = logging.getLogger(__name__)

AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
_BT709 = 1          # AVCOL_PRI_BT709 / AVCOL_TRC_BT709 / AVCOL_SPC_BT709
_MPEG_RANGE = 1     # AVCOL_RANGE_MPEG (limited)


def aac_rate(sample_rate: int) -> int:
    """The rate the AAC track uses: the input's when AAC supports it, else 48 kHz."""
    return sample_rate if sample_rate in AAC_RATES else 48000


def _layout(channels: int) -> str:
    return "mono" if channels == 1 else "stereo"


@functools.lru_cache(maxsize=32)
def aac_priming(sample_rate: int, channels: int) -> int:
    """Samples of priming the AAC encoder puts before the first input sample (measured once)."""
    codec = av.CodecContext.create("aac", "w")
    codec.sample_rate = sample_rate
    codec.layout = _layout(channels)
    codec.format = "fltp"
    codec.time_base = Fraction(1, sample_rate)
    codec.open()
    size = codec.frame_size or 1024
    first = None
    for i in range(4):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((channels, size), dtype=np.float32), format="fltp", layout=_layout(channels)
        )
        frame.sample_rate = sample_rate
        frame.pts = i * size
        for packet in codec.encode(frame):
            if first is None and packet.pts is not None:
                first = int(packet.pts)
    for packet in codec.encode(None):
        if first is None and packet.pts is not None:
            first = int(packet.pts)
    return max(0, -(first or 0))


class Mp4Encoder:
    """Encodes frames and audio of one stream into fragmented MP4 held in memory.

    Args:
        width, height, fps: the video.
        sample_rate, channels: the incoming audio.
        preset, crf, threads: x264 settings (zerolatency: no frame is held back).
        audio_bitrate: AAC bit rate.
        gop_seconds: keyframe interval, hence fragment length.
    """

    def __init__(
        self,
        width: int,
        height: int,
        fps: int,
        sample_rate: int,
        channels: int,
        preset: str = "superfast",
        crf: int = 23,
        threads: int = 2,
        audio_bitrate: int = 192_000,
        gop_seconds: float = 1.0,
    ) -> None:
        self.width, self.height, self.fps = width, height, fps
        self.channels = channels
        self.rate = aac_rate(sample_rate)
        self.resampler = StreamResampler(sample_rate, self.rate, channels) if self.rate != sample_rate else None
        self.priming = aac_priming(self.rate, channels)
        self.sink = FragmentSink()
        self.container = av.open(
            self.sink, "w", format="mp4", options={"movflags": MOVFLAGS, "flush_packets": "1"}, buffer_size=65536
        )
        gop = max(1, int(round(gop_seconds * fps)))
        self.video = self.container.add_stream(
            "libx264",
            rate=fps,
            options={
                "preset": preset,
                "tune": "zerolatency",
                "crf": str(crf),
                # Frame threads rather than slices: one frame of latency, better compression.
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:sliced-threads=0",
            },
        )
        self.video.width = width
        self.video.height = height
        self.video.pix_fmt = "yuv420p"
        cc = self.video.codec_context
        cc.thread_count = threads
        cc.color_primaries = _BT709
        cc.color_trc = _BT709
        cc.colorspace = _BT709
        cc.color_range = _MPEG_RANGE
        self.audio = self.container.add_stream("aac", rate=self.rate)
        self.audio.layout = _layout(channels)
        self.audio.bit_rate = audio_bitrate
        self._pcm = np.zeros((0, channels), dtype=np.float32)
        self._samples_in = 0            # at self.rate, encoded or buffered
        self._packets: deque[av.Packet] = deque()
        self.frames = 0
        self.closed = False

    @property
    def delay(self) -> float:
        """Media time at which song time 0 plays (the AAC priming)."""
        return self.priming / self.rate

    @property
    def audio_seconds(self) -> float:
        """Song seconds of audio taken so far."""
        return self._samples_in / self.rate

    def add_audio(self, samples: np.ndarray, last: bool = False) -> None:
        """Take the next (frames, channels) float32 samples of the song."""
        block = samples
        if self.resampler is not None:
            block = self.resampler.process(samples, last=last)
        if block.size:
            self._pcm = np.concatenate([self._pcm, block.astype(np.float32, copy=False)])
        size = self.audio.codec_context.frame_size or 1024
        whole = (self._pcm.shape[0] // size) * size
        if last:
            whole = self._pcm.shape[0]
        for start in range(0, whole, size):
            self._encode_audio(self._pcm[start : start + size])
        self._pcm = self._pcm[whole:]

    def _encode_audio(self, block: np.ndarray | None) -> None:
        if block is None:
            self._packets.extend(self.audio.encode(None))
            return
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(block.T), format="fltp", layout=_layout(self.channels)
        )
        frame.sample_rate = self.rate
        # Shifted by the priming so the first packet starts at media time 0.
        frame.pts = self._samples_in + self.priming
        self._samples_in += block.shape[0]
        self._packets.extend(self.audio.encode(frame))

    def add_frame(self, canvas: Canvas) -> None:
        """Encode the next video frame, then the audio that plays up to its end."""
        frame = canvas.to_frame()
        frame.pts = self.frames
        frame.time_base = Fraction(1, self.fps)
        for packet in self.video.encode(frame):
            self.container.mux(packet)
        self.frames += 1
        self._mux_audio(self.frames / self.fps)

    def _mux_audio(self, until: float) -> None:
        limit = until * self.rate
        while self._packets and (self._packets[0].pts or 0) < limit:
            self.container.mux(self._packets.popleft())

    def take(self) -> list[Fragment]:
        """Fragments completed since the last call."""
        return self.sink.take()

    def finish(self) -> list[Fragment]:
        """Flush both encoders and close the file; returns the last fragments."""
        if self.closed:
            return []
        self.add_audio(np.zeros((0, self.channels), dtype=np.float32), last=True)
        self._encode_audio(None)
        for packet in self.video.encode(None):
            self.container.mux(packet)
        self._mux_audio(float("inf"))
        self.container.close()
        self.closed = True
        return self.sink.take()

    def close(self) -> None:
        """Release the encoders without finishing the file (cancelled streams)."""
        if not self.closed:
            self.closed = True
            try:
                self.container.close()
            except Exception:  # the muxer may refuse to close a file with no packets
                log.debug("closing an unfinished MP4", exc_info=True)
