"""Receiving an HTTP upload into a job's folder under the limits, and checking it is audio.

The body (multipart `file` field, or the raw body) streams into one file: nothing is
held in memory or spooled anywhere else, and the size limit is enforced twice, first by
Content-Length before a byte is read, then while the bytes arrive (chunked uploads or a
lying header). The content decides whether the file is audio, never its name.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

import av

from gateway.decode import check_declared, declared_seconds
from tabagent.errors import AudioTooLong, BadConfig, UnreadableAudio

log = logging.getLogger(__name__)

FORM_OVERHEAD = 64 * 1024       # multipart headers and option fields beyond the file itself
MAX_FIELD_BYTES = 4096
MAX_FIELDS = 64
PROBE_FRAMES = 8                # audio frames decoded to prove the codec really works
SNIFF_BYTES = 4096


def _mib(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.0f} MiB"
    return f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} bytes"


def too_large(limit: int) -> AudioTooLong:
    """The error (HTTP 413) for an upload over `limit` bytes."""
    return AudioTooLong(f"the upload is larger than the {_mib(limit)} limit")


def check_length(content_length: str | None, limit: int, multipart: bool) -> None:
    """Refuse a body whose declared length is over the limit, before reading it.

    Raises:
        AudioTooLong: (HTTP 413) the Content-Length is over the limit.
        BadConfig: the Content-Length is not a number.
    """
    if not content_length:
        return
    try:
        length = int(content_length)
    except ValueError:
        raise BadConfig(f"Content-Length {content_length!r} is not a number") from None
    if length > limit + (FORM_OVERHEAD if multipart else 0):
        raise too_large(limit)


@dataclass
class Received:
    """What arrived: the file's size and name, and the form's text fields.

    With several files allowed (a batch), `files` lists each as (path, name, size).
    """

    size: int = 0
    filename: str = ""
    fields: dict[str, list[str]] = field(default_factory=dict)
    got_file: bool = False
    files: list[tuple[Path, str, int]] = field(default_factory=list)


@dataclass
class _Part:
    """The multipart part being parsed: the file, or a text field being collected."""

    is_file: bool = False
    name: str = ""
    value: bytearray | None = None

    def reset(self) -> None:
        self.is_file, self.name, self.value = False, "", None


class _FileSink:
    def __init__(self, dest: Path, limit: int) -> None:
        self.dest = dest
        self.limit = limit
        self.size = 0
        self._f = open(dest, "wb")  # noqa: SIM115 - closed in close()

    def write(self, data: bytes) -> None:
        if self.size + len(data) > self.limit:
            raise too_large(self.limit)
        self._f.write(data)
        self.size += len(data)

    def close(self) -> None:
        self._f.close()


async def receive_raw(chunks: AsyncIterator[bytes], dest: Path, limit: int) -> Received:
    """Stream a raw request body into `dest`.

    Raises:
        AudioTooLong: more than `limit` bytes arrived (the partial file stays for the caller to remove).
    """
    sink = _FileSink(dest, limit)
    try:
        async for chunk in chunks:
            if chunk:
                sink.write(chunk)
    finally:
        sink.close()
    return Received(size=sink.size, got_file=True)


async def receive_multipart(chunks: AsyncIterator[bytes], content_type: str, dest: Path | Callable[[], Path],
                            limit: int, file_field: str = "file", max_files: int = 1) -> Received:
    """Stream a multipart/form-data body: the `file_field` part into `dest`, text fields into memory.

    Args:
        dest: the file's path, or (several files) a callable giving a new path for each.
        limit: bytes per file.
        max_files: how many `file_field` parts the form may have.

    Raises:
        AudioTooLong: a file part is over `limit` bytes.
        BadConfig: a malformed body, too many files, or too many or too long fields.
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadConfig("multipart/form-data without a boundary")
    got = Received()
    sink: _FileSink | None = None
    part = _Part()
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[str, bytes] = {}

    def on_part_begin() -> None:
        headers.clear()
        part.reset()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        # Kept as bytes: browsers send a file name in UTF-8, which a str parser would mangle.
        headers[header_field.decode("latin-1").lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        nonlocal sink
        raw = headers.get("content-disposition", b"")
        _, disp = parse_options_header(raw)
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        filename = filename_of(raw, disp.get(b"filename"))
        if name == file_field or (filename is not None and not name):
            if got.got_file and max_files == 1:
                raise BadConfig(f"send one file per job (the form has several {file_field!r} parts)")
            if len(got.files) >= max_files:
                raise BadConfig(f"at most {max_files} files in one request")
            got.got_file = True
            got.filename = safe_filename(filename) if filename else ""
            sink = _FileSink(dest if isinstance(dest, Path) else dest(), limit)
            part.is_file = True
        else:
            if filename is not None:
                raise BadConfig(f"unexpected file in form field {name!r}; send the song as {file_field!r}")
            if sum(len(v) for v in got.fields.values()) >= MAX_FIELDS:
                raise BadConfig(f"at most {MAX_FIELDS} form fields")
            part.name = name
            part.value = bytearray()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.is_file:
            assert sink is not None
            sink.write(data[start:end])
        elif part.value is not None:
            part.value.extend(data[start:end])
            if len(part.value) > MAX_FIELD_BYTES:
                raise BadConfig(f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def on_part_end() -> None:
        if part.is_file:
            assert sink is not None
            got.size = sink.size
            sink.close()
            got.files.append((sink.dest, got.filename, sink.size))
        elif part.value is not None:
            got.fields.setdefault(part.name, []).append(part.value.decode("utf-8", "replace"))
        part.reset()

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data, "on_part_end": on_part_end,
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
    })
    total = 0
    try:
        async for chunk in chunks:
            total += len(chunk)
            if total > max_files * limit + FORM_OVERHEAD:
                raise too_large(limit)
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        raise BadConfig(f"malformed multipart/form-data body ({exc})") from None
    finally:
        if sink is not None:
            sink.close()
    return got


_EXTENDED = re.compile(rb"""filename\*\s*=\s*([A-Za-z0-9_-]+)'[^']*'([^;\s]+)""", re.IGNORECASE)


def _text(raw: bytes) -> str:
    """Header bytes as text: UTF-8 (what browsers send), else Windows-1252 (old clients)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def filename_of(header: bytes, plain: bytes | None) -> str | None:
    """The file name of a multipart part's Content-Disposition, in any script.

    RFC 5987's `filename*=UTF-8''%E6%9B%B2.wav` wins over a plain `filename` (RFC 6266);
    a plain one is read as UTF-8, as browsers send it.
    """
    extended = _EXTENDED.search(header)
    if extended:
        charset = extended.group(1).decode("ascii").lower()
        try:
            return unquote_to_bytes(extended.group(2).decode("ascii")).decode(charset)
        except (LookupError, UnicodeDecodeError):
            pass
    return _text(plain) if plain is not None else None


def safe_filename(name: str) -> str:
    """A client's file name as kept in the job record: the last path part, no control
    characters, NFC, at most 255 characters. It is only ever shown and used for the title;
    files on disk have names the gateway chooses."""
    name = unicodedata.normalize("NFC", name.replace("\\", "/"))
    name = "".join(ch for ch in Path(name).name if unicodedata.category(ch) != "Cc")
    return name[:255]


@dataclass(frozen=True)
class AudioInfo:
    """What probing the upload found."""

    container: str
    codec: str
    sample_rate: int
    channels: int
    duration: float | None


def _looks_like_text(head: bytes) -> bool:
    sample = head[:SNIFF_BYTES]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    return bool(sample) and printable / len(sample) > 0.95


def probe(path: Path, max_seconds: float) -> AudioInfo:
    """Check that the file holds decodable audio no longer than `max_seconds` (blocking).

    The file is opened through a file object, so FFmpeg decides the format from the
    bytes, never from a name.

    Raises:
        UnreadableAudio: (HTTP 415) empty, text, or not audio FFmpeg can decode.
        AudioTooLong: (HTTP 413) the file declares more than `max_seconds` of audio.
    """
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if not head:
        raise UnreadableAudio("the file is empty (0 bytes): send an audio file")
    if _looks_like_text(head):
        raise UnreadableAudio("the file is not audio: it looks like text. Send a WAV, MP3, FLAC, Ogg or M4A file")
    try:
        with open(path, "rb") as f, av.open(f, "r") as container:
            if not container.streams.audio:
                raise UnreadableAudio("the file holds no audio stream: send a WAV, MP3, FLAC, Ogg or M4A file")
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            frames = 0
            for _frame in container.decode(stream):
                frames += 1
                if frames >= PROBE_FRAMES:
                    break
            if frames == 0:
                raise UnreadableAudio("no audio could be decoded from the file (is it truncated?)")
            info = AudioInfo(container.format.name if container.format else "", ctx.name or "",
                             int(ctx.sample_rate or 0), int(ctx.channels or 0), declared_seconds(path))
    except (av.error.FFmpegError, ValueError, EOFError) as exc:
        raise UnreadableAudio(
            f"the file is not in an audio format FFmpeg can read ({exc.__class__.__name__}); "
            "send a WAV, MP3, FLAC, Ogg or M4A file") from None
    check_declared(path, info.duration, max_seconds)
    return info
