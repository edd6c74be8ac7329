"""DSP fallback separator: streaming STFT, median-filter HPSS, a bass comb and band splits.

Runs when no Demucs weights are found (as on CI machines), with the same streaming
interface as Demucs. Per STFT frame (4096 points, hop 1024, sqrt-Hann analysis and
synthesis windows, so masks that sum to one give back the mix exactly):

* harmonic/percussive split (Fitzgerald 2010) by median filtering the mix magnitude:
  across time (a window of frames centred on the frame, so the filter looks ahead a
  fixed number of frames: bounded latency and memory) for the harmonic estimate, and
  across frequency for the percussive one; soft Wiener-like masks H^p / (H^p + P^p);
* drums = the percussive part;
* bass = the harmonic part below a smooth crossover (250-400 Hz, raised cosine) plus
  the harmonic series of the bass fundamental tracked per frame (`_bass_comb`). The
  crossover is high so that a bass line in D3-A3 (147-220 Hz) keeps its fundamentals
  and second harmonics; the keys' left hand and the guitar's low strings come with
  them, and the transcriber's bass line (transcriber_svc.bassline) picks the bass out;
* guitar (when asked) = the harmonic part above a low crossover (40-70 Hz) but for the
  bass comb's share, below ~6 kHz: a guitar's E2-D3 strings (73-147 Hz) keep their
  fundamentals, only the tracked bass harmonics leave (the gateway's bleed filter
  handles what of the bass remains); other = the harmonic rest;
* vocals = silence: a centre-channel estimate would take every centred guitar and all
  of a mono mix, which hurts the guitar and bass stems the transcriber relies on, so
  vocals stay in other/guitar.

The stems are cut for the transcriber, not for listening, and overlap: measured on
evalkit.examples.make_song (12 s, 100 bpm, seed 1; SDR against each part as it sounds
in the mix): bass 5.7 dB, guitar 6.2 dB, drums 4.1 dB; the bass stem correlates 0.88
with the true bass and 0.36 with the guitar, the guitar stem 0.87 with the guitar and
0.32 with the bass. What they buy is measured at the chain's output, onset F1 per part
(bench/family_accuracy.py, bench/chain_accuracy.py; docs/ACCURACY.md). About 15 ms of
CPU per second of audio for the guitar and bass stems the gateway asks for, 32 ms for
every stem (a 2-core Xeon VM): medians are partitions, only the bins a requested stem
can take are masked, and the long STFT's bass is only synthesised when "other" needs it.

Memory: a few frames of input, the magnitude history of the time median (2*lookahead+1
frames), the spectra awaiting their masks and three hops of overlap-add per stem.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from separator_svc.base import (
    MODEL_CHANNELS,
    MODEL_RATE,
    ModelInfo,
    SeparatorModel,
    StemBlocks,
    StemStream,
)

log = logging.getLogger(__name__)

DSP_SOURCES = ("drums", "bass", "other", "vocals", "guitar")
_MAX_FRAMES = 64  # frames masked per step, bounding the temporary arrays (~20 MB)


@dataclass(frozen=True)
class DspParams:
    """Tuning of the DSP separator (defaults measured on evalkit.examples songs)."""

    n_fft: int = 4096
    hop: int = 1024
    lookahead: int = 5            # frames each side of the harmonic (time) median
    freq_kernel: int = 17         # bins of the percussive (frequency) median
    power: float = 2.0            # mask exponent
    bass_lo: float = 80.0         # Hz: all bass below, crossover starts
    bass_hi: float = 150.0        # Hz: no bass above (but for the comb below)
    # The crossover between bass and guitar when a guitar stem is asked for: lower than
    # the bass stem's own, so a guitar's low strings (E2 82 Hz, drop D 73 Hz) keep their
    # fundamentals, while only the bass comb takes bass harmonics above it.
    guitar_lo: float = 40.0
    guitar_hi: float = 70.0
    guitar_hi_lo: float = 5000.0  # Hz: guitar band fades out from here ...
    guitar_hi_hi: float = 8000.0  # ... to here
    bass_f0_min: float = 35.0     # Hz: range searched for the bass fundamental
    bass_f0_max: float = 130.0
    bass_harmonics: int = 8       # harmonics of the bass f0 given to the bass stem
    bass_rolloff: float = 1.8     # expected bass harmonic k: fundamental * k**-rolloff
    bass_share: float = 1.0       # scale of that expectation (more: bass takes more)
    bass_width: float = 1.6       # bins either side of each harmonic
    bass_confidence: float = 0.5  # fundamental / strongest low peak for full trust


# The bass stem's STFT (see MultiResolutionDspStream), with its crossover at 250-400 Hz:
# a bass line in D3-A3 (147-220 Hz) keeps its fundamentals and second harmonics in the
# stem; the keys and guitars that come with them are the transcriber's bass line's to
# reject (transcriber_svc.bassline).
BASS_PARAMS = DspParams(n_fft=4096, hop=1024, bass_lo=250.0, bass_hi=400.0)


def _bass_comb(harm: np.ndarray, bin_hz: float, p: DspParams) -> np.ndarray:
    """Per frame, the share of each bin that belongs to the bass's harmonic series.

    The bass fundamental is the f0 in [bass_f0_min, bass_f0_max] whose first harmonics
    carry the most harmonic magnitude (weights 0.8**(k-1), so f0/2 does not win with
    the even harmonics alone). Bins near k * f0 go to the bass up to the magnitude a
    bass would have there (fundamental * k**-rolloff), so a louder guitar partial on the
    same bin stays mostly guitar. Frames whose "fundamental" is weak next to the
    strongest low peak (no bass playing) get little comb.

    Args:
        harm: (frames, bins) harmonic magnitude.
        bin_hz: Hz per bin.
        p: tuning.

    Returns:
        (frames, bins) share in [0, 1].
    """
    frames, bins = harm.shape
    k = np.arange(1, p.bass_harmonics + 1)
    f0s = np.arange(p.bass_f0_min, p.bass_f0_max, 0.25)
    pos = f0s[:, None] * k[None, :] / bin_hz                     # (f0s, k) fractional bins
    lo = np.minimum(np.floor(pos).astype(int), bins - 2)
    frac = (pos - lo).astype(np.float32)
    at = harm[:, lo] * (1 - frac) + harm[:, lo + 1] * frac       # (frames, f0s, k)
    best = np.argmax((at * 0.8 ** (k - 1)).sum(axis=-1), axis=-1)
    f0 = f0s[best]
    fundamental = at[np.arange(frames), best, 0]
    band = (np.arange(bins) * bin_hz > 30.0) & (np.arange(bins) * bin_hz < 250.0)
    strongest = harm[:, band].max(axis=-1)
    trust = np.clip(fundamental / np.maximum(strongest, 1e-12) / p.bass_confidence, 0.0, 1.0)
    # Only bins within reach of the highest harmonic can be non-zero: compute those.
    top = min(bins, _comb_reach(bin_hz, p))
    grid = np.arange(top, dtype=np.float32)[None, :]
    low = harm[:, :top]
    comb = np.zeros_like(harm)
    part = comb[:, :top]
    for h in k:
        centre = (h * f0 / bin_hz)[:, None]
        near = np.clip(1.0 - np.abs(grid - centre) / (p.bass_width + 0.05 * h), 0.0, 1.0)
        expected = (p.bass_share * fundamental * float(h) ** -p.bass_rolloff)[:, None]
        share = np.clip(expected / np.maximum(low, 1e-12), 0.0, 1.0)
        np.maximum(part, near * share, out=part)
    return (comb * trust[:, None]).astype(np.float32)


def _comb_reach(bin_hz: float, p: DspParams) -> int:
    """Bins from 0 that hold every non-zero value of `_bass_comb` (and the bins it reads)."""
    reach = p.bass_harmonics * p.bass_f0_max / bin_hz + p.bass_width + 0.05 * p.bass_harmonics
    return int(np.ceil(max(reach, 250.0 / bin_hz))) + 2


def _median(windows: np.ndarray) -> np.ndarray:
    """The median over the last axis of odd-length windows (e.g. a sliding_window_view).

    Equal to np.median for finite input (the middle element is picked, never averaged),
    and about three times faster: np.median also partitions for NaN checks.
    """
    k = windows.shape[-1]
    if k % 2 == 0:
        return np.median(windows, axis=-1)
    return np.partition(windows, k // 2, axis=-1)[..., k // 2]


def _ramp_down(freqs: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """1 below lo, 0 above hi, raised cosine between (a smooth crossover)."""
    x = np.clip((freqs - lo) / max(hi - lo, 1e-9), 0.0, 1.0)
    return (0.5 * (1.0 + np.cos(np.pi * x))).astype(np.float32)


class DspStream(StemStream):
    """One song through the DSP separator (see the module docstring)."""

    def __init__(
        self,
        stems: Sequence[str],
        params: DspParams = DspParams(),
        in_rate: int = MODEL_RATE,
        in_channels: int = MODEL_CHANNELS,
    ) -> None:
        super().__init__(stems, in_rate, in_channels)
        self.p = params
        n_fft, hop = params.n_fft, params.hop
        if n_fft % hop or n_fft // hop != 4:
            raise ValueError("the synthesis assumes 75% overlap (n_fft == 4 * hop)")
        self._window = np.sqrt(np.hanning(n_fft + 1)[:-1]).astype(np.float32)  # periodic
        freqs = np.fft.rfftfreq(n_fft, 1.0 / self.sample_rate)
        self._split_guitar = "guitar" in self.stems
        if self._split_guitar:
            self._low = _ramp_down(freqs, params.guitar_lo, params.guitar_hi)
        else:
            self._low = _ramp_down(freqs, params.bass_lo, params.bass_hi)
        self._mid = _ramp_down(freqs, params.guitar_hi_lo, params.guitar_hi_hi)
        # Input not yet framed; the song is preceded by n_fft - hop zeros so every
        # sample from 0 on is covered by four frames.
        self._in = np.zeros((self.channels, n_fft - hop), np.float32)
        self._bins = n_fft // 2 + 1
        self._active = self._active_bins(freqs)
        a = params.lookahead
        # Time-median history (silence before the song), of the active bins only.
        self._mags = np.zeros((a, self._active), np.float32)
        self._specs: list[np.ndarray] = []                    # (channels, bins) awaiting masks
        self._percs: list[np.ndarray] = []                    # percussive estimate per frame
        self._ola = np.zeros((len(self.stems), self.channels, 3, hop), np.float32)
        self._frames_done = 0     # frames synthesised
        self._emitted = 0         # output frames returned

    def _active_bins(self, freqs: np.ndarray) -> int:
        """How many bins from 0 up can get a non-zero mask in a requested stem.

        Drums and other take every bin; guitar none above guitar_hi_hi, bass none above
        its crossover and comb. Masks (and so medians) are computed for these bins only;
        the others are exactly zero, as the full computation would make them.
        """
        if {"drums", "other"} & set(self.stems):
            return self._bins
        bin_hz = float(freqs[1])
        need = _comb_reach(bin_hz, self.p)  # the comb shapes the guitar's mask too
        if "guitar" in self.stems:
            need = max(need, int(np.searchsorted(freqs, self.p.guitar_hi_hi, side="right")) + 1)
        if "bass" in self.stems:
            need = max(need, int(np.searchsorted(freqs, self.p.bass_hi, side="right")) + 1)
        return min(self._bins, need)

    def _push(self, block: np.ndarray) -> StemBlocks:
        self._in = np.concatenate([self._in, np.ascontiguousarray(block.T)], axis=1)
        self._analyse()
        return self._synthesise(limit=None)

    def _finish(self) -> StemBlocks:
        total = self.frames_in
        n_fft = self.p.n_fft
        # Zeros after the song: enough frames to cover its last sample, and the
        # lookahead of the time median sees silence.
        self._in = np.concatenate([self._in, np.zeros((self.channels, n_fft), np.float32)], axis=1)
        self._analyse()
        for _ in range(self.p.lookahead):
            self._add_frames(np.zeros((0, self.channels, n_fft // 2 + 1), np.complex64), tail=True)
        out = self._synthesise(limit=total)
        self._ola[:] = 0.0
        return out

    def _analyse(self) -> None:
        n_fft, hop = self.p.n_fft, self.p.hop
        count = (self._in.shape[1] - n_fft) // hop + 1 if self._in.shape[1] >= n_fft else 0
        if count <= 0:
            return
        frames = sliding_window_view(self._in, n_fft, axis=1)[:, ::hop][:, :count]  # (C, T, n_fft)
        spec = np.fft.rfft(frames * self._window, axis=-1).astype(np.complex64)     # (C, T, bins)
        self._in = self._in[:, count * hop :].copy()
        self._add_frames(spec.transpose(1, 0, 2), tail=False)

    def _add_frames(self, spec: np.ndarray, tail: bool) -> None:
        """Append analysed frames (T, C, bins); `tail` appends one silent frame instead."""
        active, bins = self._active, self._bins
        if tail:
            mags = np.zeros((1, active), np.float32)
        else:
            k = self.p.freq_kernel
            # The frequency median of bin b reads bins b - k//2 .. b + k//2 (reflected at
            # the edges): the active bins need k//2 more above them.
            cols = min(bins, active + k // 2)
            mags = np.sqrt(np.mean(np.abs(spec[..., :cols]) ** 2, axis=1)).astype(np.float32)
            high = k // 2 if cols == bins else 0
            padded = np.pad(mags, ((0, 0), (k // 2, high)), mode="reflect")
            percs = _median(sliding_window_view(padded[:, : active + k - 1], k, axis=1))
            self._specs.extend(spec)
            self._percs.extend(percs.astype(np.float32))
            mags = mags[:, :active]
        self._mags = np.concatenate([self._mags, mags])

    def _synthesise(self, limit: int | None) -> StemBlocks:
        """Mask every frame whose time-median window is complete, overlap-add, return final audio."""
        a = self.p.lookahead
        outs: list[np.ndarray] = []
        while True:
            ready = min(len(self._specs), self._mags.shape[0] - 2 * a, _MAX_FRAMES)
            if ready <= 0:
                break
            self.check_cancelled()
            outs.append(self._synthesise_frames(ready))
        if not outs:
            return self._trim(self.empty(), limit)
        out = np.concatenate(outs, axis=2)
        result = {name: np.ascontiguousarray(out[i].T) for i, name in enumerate(self.stems)}
        return self._trim(result, limit)

    def _synthesise_frames(self, ready: int) -> np.ndarray:
        """Mask and overlap-add the next `ready` frames; returns (stems, C, n) final audio."""
        a, hop, n_fft = self.p.lookahead, self.p.hop, self.p.n_fft
        window = sliding_window_view(self._mags[: ready + 2 * a], 2 * a + 1, axis=0)
        harm = _median(window)                                              # (ready, bins)
        perc = np.stack(self._percs[:ready])
        specs = np.stack(self._specs[:ready])                               # (ready, C, bins)
        masks = self._masks(harm, perc)                                     # (stems, ready, bins)
        del self._specs[:ready], self._percs[:ready]
        self._mags = self._mags[ready:]
        # (stems, ready, C, n_fft) time frames, windowed for synthesis; 1/2 undoes the
        # summed squared sqrt-Hann windows at 75 % overlap.
        # Bins above the active ones have zero masks: irfft pads them with zeros itself.
        active = self._active
        frames = np.fft.irfft(masks[:, :, None, :] * specs[None, ..., :active], n=n_fft, axis=-1)
        frames = (frames * (self._window * 0.5)).astype(np.float32)
        stems, channels = len(self.stems), self.channels
        # Overlap-add in hop-sized blocks: frame i lands on blocks i..i+3; the three
        # blocks after the last frame stay pending (they need the next frames).
        blocks = np.zeros((stems, channels, ready + 3, hop), np.float32)
        blocks[:, :, :3] += self._ola
        for q in range(4):
            part = frames[..., q * hop : (q + 1) * hop]                    # (stems, ready, C, hop)
            blocks[:, :, q : q + ready] += part.transpose(0, 2, 1, 3)
        self._ola = blocks[:, :, ready:].copy()
        out = blocks[:, :, :ready].reshape(stems, channels, ready * hop)
        self._frames_done += ready
        self.segments += ready
        # The output starts at sample -(n_fft - hop) (the zeros before the song).
        skip = max(0, (n_fft - hop) - (self._frames_done - ready) * hop)
        return out[:, :, skip:]

    def _trim(self, blocks: StemBlocks, limit: int | None) -> StemBlocks:
        n = next(iter(blocks.values())).shape[0] if blocks else 0
        if limit is not None:
            n = min(n, max(0, limit - self._emitted))
            blocks = {k: v[:n] for k, v in blocks.items()}
        self._emitted += n
        return blocks

    def _masks(self, harm: np.ndarray, perc: np.ndarray) -> np.ndarray:
        p = self.p.power
        hp, pp = harm.astype(np.float64) ** p, perc.astype(np.float64) ** p
        h_mask = (hp / np.maximum(hp + pp, 1e-20)).astype(np.float32)
        h_mask[(hp + pp) <= 1e-20] = 0.5
        p_mask = 1.0 - h_mask
        bin_hz = self.sample_rate / self.p.n_fft
        active = self._active
        bassness = np.maximum(self._low[None, :active], _bass_comb(harm * h_mask, bin_hz, self.p))
        bass = h_mask * bassness
        upper = h_mask * (1.0 - bassness)
        guitar = upper * self._mid[:active] if self._split_guitar else np.zeros_like(upper)
        other = upper - guitar
        by_name = {
            "drums": p_mask,
            "bass": bass,
            "other": other,
            "guitar": guitar,
            "vocals": np.zeros_like(h_mask),
        }
        return np.stack([by_name[name] for name in self.stems])


class MultiResolutionDspStream(StemStream):
    """The bass stem from its own STFT (its own crossover), every other stem from the main one.

    The bass stream has its own crossover (250-400 Hz, BASS_PARAMS) while the main one
    splits guitar from bass at 40-70 Hz: the two stems overlap on purpose (see the module
    docstring), and "other" takes the difference so the stems still add up to the mix.
    Both use 4096-point frames: an 8192-point frame spans 186 ms and smears onsets that
    far ahead of the notes (measured with bench/chain_accuracy.py: bass onset F1 0.65 ->
    0.84 on the synthesised mixes with the shorter frame; with it for the guitar too,
    bench/family_accuracy.py's dev songs gained 0.01-0.03 guitar F1).
    """

    def __init__(
        self,
        stems: Sequence[str],
        params: DspParams = DspParams(),
        bass_params: DspParams | None = None,
        in_rate: int = MODEL_RATE,
        in_channels: int = MODEL_CHANNELS,
    ) -> None:
        super().__init__(stems, in_rate, in_channels)
        bass_params = bass_params or BASS_PARAMS
        self._short = DspStream(("bass",), bass_params) if "bass" in self.stems else None
        # The long STFT's bass is only needed to keep "other" complementary to the short
        # bass; with other stems but not "other" it is not computed. (Asked for alone,
        # bass keeps the long stream, whose latency sets the stream's.)
        wanted = [s for s in self.stems if s != "bass" or "other" in self.stems] or ["bass"]
        self._long = DspStream(tuple(wanted), params)
        long_stems = self._long.stems
        self._pending: dict[str, list[np.ndarray]] = {name: [] for name in (*long_stems, "short")}
        self._held = dict.fromkeys(self._pending, 0)
        if self._short is None:
            del self._pending["short"], self._held["short"]

    def _collect(self, long: StemBlocks, short: StemBlocks | None) -> StemBlocks:
        outs = dict(long)
        if short is not None:
            outs["short"] = short["bass"]
        for name, block in outs.items():
            if block.shape[0]:
                self._pending[name].append(block)
                self._held[name] += block.shape[0]
        n = min(self._held.values())
        ready: dict[str, np.ndarray] = {}
        for name in self._pending:
            chunks = self._pending[name]
            joined = np.concatenate(chunks) if chunks else np.zeros((0, self.channels), np.float32)
            ready[name], rest = joined[:n], joined[n:]
            self._pending[name] = [rest] if rest.shape[0] else []
            self._held[name] = rest.shape[0]
        result = {name: ready["short" if name == "bass" and self._short is not None else name]
                  for name in self.stems}
        if self._short is not None and "other" in result:
            # What the short bass does not take stays in "other": the stems still add up
            # to the mix.
            result["other"] = ready["other"] + (ready["bass"] - ready["short"])
        return result

    def _push(self, block: np.ndarray) -> StemBlocks:
        self.check_cancelled()
        long = self._long.push(block)
        short = self._short.push(block) if self._short is not None else None
        self.segments = self._long.segments
        return self._collect(long, short)

    def _finish(self) -> StemBlocks:
        long = self._long.finish()
        short = self._short.finish() if self._short is not None else None
        return self._collect(long, short)


class DspModel(SeparatorModel):
    """The DSP separator as a SeparatorModel (no weights, always available).

    Args:
        name: reported model name ("dsp").
        fallback: True when it replaces a requested Demucs model.
        message: why it is used (sent to clients in ModelInfo.message).
        requested: the model name that was asked for, when falling back.
        params: DSP tuning.
    """

    def __init__(
        self,
        name: str = "dsp",
        fallback: bool = False,
        message: str = "",
        requested: str = "",
        params: DspParams = DspParams(),
    ) -> None:
        self.params = params
        self.requested = requested
        self.sources = DSP_SOURCES
        self.segment_seconds = params.n_fft / MODEL_RATE
        self.info = ModelInfo(
            name=name,
            version="tabagent-dsp-1",
            backend="dsp",
            device="cpu",
            fallback=fallback,
            message=message,
            sample_rate=MODEL_RATE,
        )

    def open_stream(
        self,
        stems: Sequence[str],
        overlap: float = 0.25,
        in_rate: int = MODEL_RATE,
        in_channels: int = MODEL_CHANNELS,
    ) -> StemStream:
        """Start separating one song; `overlap` does not apply to the STFT and is ignored."""
        return MultiResolutionDspStream(self.stems_for(stems), self.params, None, in_rate, in_channels)

    def warm_up(self) -> None:
        """Separate one second of noise (first numpy FFT plans and allocations)."""
        rng = np.random.default_rng(0)
        stream = self.open_stream([])
        stream.push(rng.standard_normal((MODEL_RATE, MODEL_CHANNELS)).astype(np.float32) * 0.01)
        stream.finish()
