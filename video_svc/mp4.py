"""An in-memory sink for a fragmented MP4 muxer that hands out whole fragments with their media times.

The muxer writes ftyp+moov (the init segment), then one moof+mdat pair per fragment.
The sink cuts the byte stream at those box boundaries and reads each moof's track
fragment headers (tfhd, tfdt, trun) to say which media time a fragment covers.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

_CONTAINERS = {b"moov", b"trak", b"mdia", b"mvex", b"moof", b"traf", b"minf", b"stbl", b"edts"}


@dataclass
class Fragment:
    """Bytes to send: the init segment, or one moof+mdat (or a trailing box)."""

    data: bytes
    init: bool = False
    start: float = 0.0     # media seconds (video track when present)
    end: float = 0.0


@dataclass
class _Track:
    timescale: int = 1
    handler: bytes = b""
    default_duration: int = 0


def iter_boxes(
    data: bytes | bytearray | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[bytes, int, int]]:
    """Yield (type, payload_start, box_end) for the complete boxes in data[start:end]."""
    end = len(data) if end is None else end
    i = start
    while i + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, i)
        header = 8
        if size == 1:
            if i + 16 > end:
                return
            size = struct.unpack_from(">Q", data, i + 8)[0]
            header = 16
        elif size == 0:
            size = end - i
        if size < header or i + size > end:
            return
        yield kind, i + header, i + size
        i += size


@dataclass
class FragmentSink:
    """A write-only file object for PyAV; `take()` returns the fragments completed so far.

    It has no `seek`, so the muxer treats the output as a stream and never goes back.
    """

    _buf: bytearray = field(default_factory=bytearray)
    _pending: list[bytes] = field(default_factory=list)   # moof waiting for its mdat
    _pending_range: tuple[float, float] = (0.0, 0.0)
    _init: list[bytes] = field(default_factory=list)
    _tracks: dict[int, _Track] = field(default_factory=dict)
    _ready: list[Fragment] = field(default_factory=list)
    _last_end: float = 0.0
    bytes_written: int = 0

    def write(self, data: bytes) -> int:
        """Called by the muxer with the next bytes of the file."""
        self._buf += data
        self.bytes_written += len(data)
        self._split()
        return len(data)

    def flush(self) -> None:
        """Nothing is buffered beyond incomplete boxes."""

    def _split(self) -> None:
        consumed = 0
        for kind, _body, end in iter_boxes(self._buf):
            box = bytes(self._buf[consumed:end])
            consumed = end
            if kind in (b"ftyp", b"moov"):
                self._init.append(box)
                if kind == b"moov":
                    self._read_moov(box)
                    self._ready.append(Fragment(b"".join(self._init), init=True))
                    self._init = []
            elif kind == b"moof":
                self._pending = [box]
                self._pending_range = self._moof_range(box)
            elif kind == b"mdat" and self._pending:
                start, stop = self._pending_range
                self._ready.append(Fragment(b"".join([*self._pending, box]), False, start, stop))
                self._last_end = stop
                self._pending = []
            else:
                self._ready.append(Fragment(box, False, self._last_end, self._last_end))
        if consumed:
            del self._buf[:consumed]

    def take(self) -> list[Fragment]:
        """The fragments completed since the last call, in file order."""
        ready, self._ready = self._ready, []
        return ready

    @property
    def buffered(self) -> int:
        """Bytes held waiting for their box to complete."""
        return len(self._buf) + sum(len(b) for b in self._pending)

    # -- box parsing -----------------------------------------------------------------------

    def _read_moov(self, moov: bytes) -> None:
        for kind, body, end in iter_boxes(moov, 8):
            if kind == b"trak":
                track_id, track = self._read_trak(moov, body, end)
                self._tracks[track_id] = track
            elif kind == b"mvex":
                for k2, b2, _ in iter_boxes(moov, body, end):
                    if k2 == b"trex":
                        track_id, _desc, duration = struct.unpack_from(">III", moov, b2 + 4)
                        self._tracks.setdefault(track_id, _Track()).default_duration = duration

    def _read_trak(self, data: bytes, start: int, stop: int) -> tuple[int, _Track]:
        track_id = 0
        track = _Track()
        for kind, body, end in iter_boxes(data, start, stop):
            if kind == b"tkhd":
                version = data[body]
                track_id = struct.unpack_from(">I", data, body + (20 if version == 1 else 12))[0]
            elif kind == b"mdia":
                for k2, b2, _e2 in iter_boxes(data, body, end):
                    if k2 == b"mdhd":
                        version = data[b2]
                        track.timescale = struct.unpack_from(">I", data, b2 + (20 if version == 1 else 12))[0]
                    elif k2 == b"hdlr":
                        track.handler = bytes(data[b2 + 8 : b2 + 12])
        known = self._tracks.get(track_id)
        if known is not None:
            track.default_duration = known.default_duration
        return track_id, track

    def _moof_range(self, moof: bytes) -> tuple[float, float]:
        ranges: dict[bytes, tuple[float, float]] = {}
        for kind, body, end in iter_boxes(moof, 8):
            if kind == b"traf":
                handler, rng = self._traf_range(moof, body, end)
                ranges.setdefault(handler, rng)
        rng = ranges.get(b"vide") or next(iter(ranges.values()), (self._last_end, self._last_end))
        return rng

    def _traf_range(self, data: bytes, start: int, stop: int) -> tuple[bytes, tuple[float, float]]:
        track = _Track()
        base = 0
        default_duration = 0
        total = 0
        for kind, body, _end in iter_boxes(data, start, stop):
            if kind == b"tfhd":
                flags = int.from_bytes(data[body + 1 : body + 4], "big")
                track_id = struct.unpack_from(">I", data, body + 4)[0]
                track = self._tracks.get(track_id, _Track())
                default_duration = track.default_duration
                pos = body + 8
                pos += 8 if flags & 0x01 else 0
                pos += 4 if flags & 0x02 else 0
                if flags & 0x08:
                    default_duration = struct.unpack_from(">I", data, pos)[0]
            elif kind == b"tfdt":
                version = data[body]
                base = struct.unpack_from(">Q" if version == 1 else ">I", data, body + 4)[0]
            elif kind == b"trun":
                flags = int.from_bytes(data[body + 1 : body + 4], "big")
                count = struct.unpack_from(">I", data, body + 4)[0]
                pos = body + 8 + (4 if flags & 0x01 else 0) + (4 if flags & 0x04 else 0)
                per = 4 * sum(1 for bit in (0x100, 0x200, 0x400, 0x800) if flags & bit)
                if flags & 0x100:
                    total += sum(struct.unpack_from(">I", data, pos + i * per)[0] for i in range(count))
                else:
                    total += default_duration * count
        scale = max(track.timescale, 1)
        return track.handler, (base / scale, (base + total) / scale)
