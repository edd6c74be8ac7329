from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AudioChunk(_message.Message):
    __slots__ = ("pcm", "sample_rate", "channels", "offset")
    PCM_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    pcm: bytes
    sample_rate: int
    channels: int
    offset: int
    def __init__(self, pcm: _Optional[bytes] = ..., sample_rate: _Optional[int] = ..., channels: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class Note(_message.Message):
    __slots__ = ("pitch", "start", "end", "velocity", "string", "fret", "technique", "pitch_bend", "confidence")
    PITCH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    VELOCITY_FIELD_NUMBER: _ClassVar[int]
    STRING_FIELD_NUMBER: _ClassVar[int]
    FRET_FIELD_NUMBER: _ClassVar[int]
    TECHNIQUE_FIELD_NUMBER: _ClassVar[int]
    PITCH_BEND_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    pitch: int
    start: float
    end: float
    velocity: float
    string: int
    fret: int
    technique: str
    pitch_bend: _containers.RepeatedScalarFieldContainer[float]
    confidence: float
    def __init__(self, pitch: _Optional[int] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., velocity: _Optional[float] = ..., string: _Optional[int] = ..., fret: _Optional[int] = ..., technique: _Optional[str] = ..., pitch_bend: _Optional[_Iterable[float]] = ..., confidence: _Optional[float] = ...) -> None: ...

class NoteBatch(_message.Message):
    __slots__ = ("part", "notes", "final_until", "out_of_range")
    PART_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    FINAL_UNTIL_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_RANGE_FIELD_NUMBER: _ClassVar[int]
    part: str
    notes: _containers.RepeatedCompositeFieldContainer[Note]
    final_until: float
    out_of_range: _containers.RepeatedCompositeFieldContainer[Note]
    def __init__(self, part: _Optional[str] = ..., notes: _Optional[_Iterable[_Union[Note, _Mapping]]] = ..., final_until: _Optional[float] = ..., out_of_range: _Optional[_Iterable[_Union[Note, _Mapping]]] = ...) -> None: ...

class Tuning(_message.Message):
    __slots__ = ("strings", "capo", "max_fret", "name")
    STRINGS_FIELD_NUMBER: _ClassVar[int]
    CAPO_FIELD_NUMBER: _ClassVar[int]
    MAX_FRET_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    strings: _containers.RepeatedScalarFieldContainer[int]
    capo: int
    max_fret: int
    name: str
    def __init__(self, strings: _Optional[_Iterable[int]] = ..., capo: _Optional[int] = ..., max_fret: _Optional[int] = ..., name: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("stage", "part", "done_seconds", "total_seconds")
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    DONE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    stage: str
    part: str
    done_seconds: float
    total_seconds: float
    def __init__(self, stage: _Optional[str] = ..., part: _Optional[str] = ..., done_seconds: _Optional[float] = ..., total_seconds: _Optional[float] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "backend", "device", "fallback", "message", "sample_rate")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    backend: str
    device: str
    fallback: bool
    message: str
    sample_rate: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., backend: _Optional[str] = ..., device: _Optional[str] = ..., fallback: _Optional[bool] = ..., message: _Optional[str] = ..., sample_rate: _Optional[int] = ...) -> None: ...
