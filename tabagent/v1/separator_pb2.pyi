from tabagent.v1 import audio_pb2 as _audio_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SeparateConfig(_message.Message):
    __slots__ = ("model", "stems", "overlap", "expected_seconds", "song_id")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEMS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SONG_ID_FIELD_NUMBER: _ClassVar[int]
    model: str
    stems: _containers.RepeatedScalarFieldContainer[str]
    overlap: float
    expected_seconds: float
    song_id: str
    def __init__(self, model: _Optional[str] = ..., stems: _Optional[_Iterable[str]] = ..., overlap: _Optional[float] = ..., expected_seconds: _Optional[float] = ..., song_id: _Optional[str] = ...) -> None: ...

class SeparateRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: SeparateConfig
    audio: _audio_pb2.AudioChunk
    def __init__(self, config: _Optional[_Union[SeparateConfig, _Mapping]] = ..., audio: _Optional[_Union[_audio_pb2.AudioChunk, _Mapping]] = ...) -> None: ...

class SeparatorInfo(_message.Message):
    __slots__ = ("model", "sources", "stems", "segment_seconds", "sample_rate")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    STEMS_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    model: _audio_pb2.ModelInfo
    sources: _containers.RepeatedScalarFieldContainer[str]
    stems: _containers.RepeatedScalarFieldContainer[str]
    segment_seconds: float
    sample_rate: int
    def __init__(self, model: _Optional[_Union[_audio_pb2.ModelInfo, _Mapping]] = ..., sources: _Optional[_Iterable[str]] = ..., stems: _Optional[_Iterable[str]] = ..., segment_seconds: _Optional[float] = ..., sample_rate: _Optional[int] = ...) -> None: ...

class StemChunk(_message.Message):
    __slots__ = ("stem", "audio")
    STEM_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    stem: str
    audio: _audio_pb2.AudioChunk
    def __init__(self, stem: _Optional[str] = ..., audio: _Optional[_Union[_audio_pb2.AudioChunk, _Mapping]] = ...) -> None: ...

class SeparateSummary(_message.Message):
    __slots__ = ("seconds", "segments", "compute_seconds")
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEGMENTS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    seconds: float
    segments: int
    compute_seconds: float
    def __init__(self, seconds: _Optional[float] = ..., segments: _Optional[int] = ..., compute_seconds: _Optional[float] = ...) -> None: ...

class SeparateResponse(_message.Message):
    __slots__ = ("info", "stem", "progress", "summary")
    INFO_FIELD_NUMBER: _ClassVar[int]
    STEM_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    info: SeparatorInfo
    stem: StemChunk
    progress: _audio_pb2.Progress
    summary: SeparateSummary
    def __init__(self, info: _Optional[_Union[SeparatorInfo, _Mapping]] = ..., stem: _Optional[_Union[StemChunk, _Mapping]] = ..., progress: _Optional[_Union[_audio_pb2.Progress, _Mapping]] = ..., summary: _Optional[_Union[SeparateSummary, _Mapping]] = ...) -> None: ...
