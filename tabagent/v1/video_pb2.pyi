from tabagent.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RenderConfig(_message.Message):
    __slots__ = ("width", "height", "fps", "style", "parts", "title", "diffusion", "expected_seconds", "song_id", "seed")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    STYLE_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DIFFUSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SONG_ID_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    fps: int
    style: str
    parts: _containers.RepeatedScalarFieldContainer[str]
    title: str
    diffusion: bool
    expected_seconds: float
    song_id: str
    seed: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[int] = ..., style: _Optional[str] = ..., parts: _Optional[_Iterable[str]] = ..., title: _Optional[str] = ..., diffusion: _Optional[bool] = ..., expected_seconds: _Optional[float] = ..., song_id: _Optional[str] = ..., seed: _Optional[int] = ...) -> None: ...

class PartInfo(_message.Message):
    __slots__ = ("part", "tuning")
    PART_FIELD_NUMBER: _ClassVar[int]
    TUNING_FIELD_NUMBER: _ClassVar[int]
    part: str
    tuning: _audio_pb2.Tuning
    def __init__(self, part: _Optional[str] = ..., tuning: _Optional[_Union[_audio_pb2.Tuning, _Mapping]] = ...) -> None: ...

class Beats(_message.Message):
    __slots__ = ("tempo", "times", "beats_per_bar", "downbeats")
    TEMPO_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    BEATS_PER_BAR_FIELD_NUMBER: _ClassVar[int]
    DOWNBEATS_FIELD_NUMBER: _ClassVar[int]
    tempo: float
    times: _containers.RepeatedScalarFieldContainer[float]
    beats_per_bar: int
    downbeats: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, tempo: _Optional[float] = ..., times: _Optional[_Iterable[float]] = ..., beats_per_bar: _Optional[int] = ..., downbeats: _Optional[_Iterable[float]] = ...) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("config", "audio", "notes", "part", "beats")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    BEATS_FIELD_NUMBER: _ClassVar[int]
    config: RenderConfig
    audio: _audio_pb2.AudioChunk
    notes: _audio_pb2.NoteBatch
    part: PartInfo
    beats: Beats
    def __init__(self, config: _Optional[_Union[RenderConfig, _Mapping]] = ..., audio: _Optional[_Union[_audio_pb2.AudioChunk, _Mapping]] = ..., notes: _Optional[_Union[_audio_pb2.NoteBatch, _Mapping]] = ..., part: _Optional[_Union[PartInfo, _Mapping]] = ..., beats: _Optional[_Union[Beats, _Mapping]] = ...) -> None: ...

class VideoInfo(_message.Message):
    __slots__ = ("background", "width", "height", "fps", "codec", "audio_codec")
    BACKGROUND_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    CODEC_FIELD_NUMBER: _ClassVar[int]
    AUDIO_CODEC_FIELD_NUMBER: _ClassVar[int]
    background: _audio_pb2.ModelInfo
    width: int
    height: int
    fps: int
    codec: str
    audio_codec: str
    def __init__(self, background: _Optional[_Union[_audio_pb2.ModelInfo, _Mapping]] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[int] = ..., codec: _Optional[str] = ..., audio_codec: _Optional[str] = ...) -> None: ...

class VideoFragment(_message.Message):
    __slots__ = ("data", "start", "end", "init")
    DATA_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    INIT_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    start: float
    end: float
    init: bool
    def __init__(self, data: _Optional[bytes] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., init: _Optional[bool] = ...) -> None: ...

class RenderSummary(_message.Message):
    __slots__ = ("seconds", "frames", "compute_seconds", "bytes")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    seconds: float
    frames: int
    compute_seconds: float
    bytes: int
    def __init__(self, seconds: _Optional[float] = ..., frames: _Optional[int] = ..., compute_seconds: _Optional[float] = ..., bytes: _Optional[int] = ...) -> None: ...

class RenderResponse(_message.Message):
    __slots__ = ("info", "fragment", "progress", "summary")
    INFO_FIELD_NUMBER: _ClassVar[int]
    FRAGMENT_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    info: VideoInfo
    fragment: VideoFragment
    progress: _audio_pb2.Progress
    summary: RenderSummary
    def __init__(self, info: _Optional[_Union[VideoInfo, _Mapping]] = ..., fragment: _Optional[_Union[VideoFragment, _Mapping]] = ..., progress: _Optional[_Union[_audio_pb2.Progress, _Mapping]] = ..., summary: _Optional[_Union[RenderSummary, _Mapping]] = ...) -> None: ...
