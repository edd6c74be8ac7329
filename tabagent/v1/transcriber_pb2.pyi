from tabagent.v1 import audio_pb2 as _audio_pb2
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TranscribeConfig(_message.Message):
    __slots__ = ("instrument", "part", "tuning", "onset_threshold", "frame_threshold", "min_note_ms", "no_melodia_trick", "polyphonic", "song_id", "isolated_stem")
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    TUNING_FIELD_NUMBER: _ClassVar[int]
    ONSET_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FRAME_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MIN_NOTE_MS_FIELD_NUMBER: _ClassVar[int]
    NO_MELODIA_TRICK_FIELD_NUMBER: _ClassVar[int]
    POLYPHONIC_FIELD_NUMBER: _ClassVar[int]
    SONG_ID_FIELD_NUMBER: _ClassVar[int]
    ISOLATED_STEM_FIELD_NUMBER: _ClassVar[int]
    instrument: str
    part: str
    tuning: _audio_pb2.Tuning
    onset_threshold: float
    frame_threshold: float
    min_note_ms: float
    no_melodia_trick: bool
    polyphonic: bool
    song_id: str
    isolated_stem: bool
    def __init__(self, instrument: _Optional[str] = ..., part: _Optional[str] = ..., tuning: _Optional[_Union[_audio_pb2.Tuning, _Mapping]] = ..., onset_threshold: _Optional[float] = ..., frame_threshold: _Optional[float] = ..., min_note_ms: _Optional[float] = ..., no_melodia_trick: _Optional[bool] = ..., polyphonic: _Optional[bool] = ..., song_id: _Optional[str] = ..., isolated_stem: _Optional[bool] = ...) -> None: ...

class TranscribeRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: TranscribeConfig
    audio: _audio_pb2.AudioChunk
    def __init__(self, config: _Optional[_Union[TranscribeConfig, _Mapping]] = ..., audio: _Optional[_Union[_audio_pb2.AudioChunk, _Mapping]] = ...) -> None: ...

class TranscriberInfo(_message.Message):
    __slots__ = ("model", "part", "tuning", "min_pitch", "max_pitch")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    TUNING_FIELD_NUMBER: _ClassVar[int]
    MIN_PITCH_FIELD_NUMBER: _ClassVar[int]
    MAX_PITCH_FIELD_NUMBER: _ClassVar[int]
    model: _audio_pb2.ModelInfo
    part: str
    tuning: _audio_pb2.Tuning
    min_pitch: float
    max_pitch: float
    def __init__(self, model: _Optional[_Union[_audio_pb2.ModelInfo, _Mapping]] = ..., part: _Optional[str] = ..., tuning: _Optional[_Union[_audio_pb2.Tuning, _Mapping]] = ..., min_pitch: _Optional[float] = ..., max_pitch: _Optional[float] = ...) -> None: ...

class TranscribeSummary(_message.Message):
    __slots__ = ("part", "notes", "out_of_range", "seconds", "compute_seconds")
    PART_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_RANGE_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    part: str
    notes: int
    out_of_range: int
    seconds: float
    compute_seconds: float
    def __init__(self, part: _Optional[str] = ..., notes: _Optional[int] = ..., out_of_range: _Optional[int] = ..., seconds: _Optional[float] = ..., compute_seconds: _Optional[float] = ...) -> None: ...

class TranscribeResponse(_message.Message):
    __slots__ = ("info", "notes", "progress", "summary")
    INFO_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    info: TranscriberInfo
    notes: _audio_pb2.NoteBatch
    progress: _audio_pb2.Progress
    summary: TranscribeSummary
    def __init__(self, info: _Optional[_Union[TranscriberInfo, _Mapping]] = ..., notes: _Optional[_Union[_audio_pb2.NoteBatch, _Mapping]] = ..., progress: _Optional[_Union[_audio_pb2.Progress, _Mapping]] = ..., summary: _Optional[_Union[TranscribeSummary, _Mapping]] = ...) -> None: ...
