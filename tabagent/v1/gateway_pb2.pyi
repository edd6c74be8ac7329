from tabagent.v1 import audio_pb2 as _audio_pb2
from tabagent.v1 import video_pb2 as _video_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PartConfig(_message.Message):
    __slots__ = ("name", "instrument", "tuning", "onset_threshold", "frame_threshold")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INSTRUMENT_FIELD_NUMBER: _ClassVar[int]
    TUNING_FIELD_NUMBER: _ClassVar[int]
    ONSET_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FRAME_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    name: str
    instrument: str
    tuning: _audio_pb2.Tuning
    onset_threshold: float
    frame_threshold: float
    def __init__(self, name: _Optional[str] = ..., instrument: _Optional[str] = ..., tuning: _Optional[_Union[_audio_pb2.Tuning, _Mapping]] = ..., onset_threshold: _Optional[float] = ..., frame_threshold: _Optional[float] = ...) -> None: ...

class ProcessConfig(_message.Message):
    __slots__ = ("parts", "separator_model", "video", "video_config", "filename", "return_stems", "artifacts", "title")
    PARTS_FIELD_NUMBER: _ClassVar[int]
    SEPARATOR_MODEL_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    VIDEO_CONFIG_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    RETURN_STEMS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    parts: _containers.RepeatedCompositeFieldContainer[PartConfig]
    separator_model: str
    video: bool
    video_config: _video_pb2.RenderConfig
    filename: str
    return_stems: bool
    artifacts: _containers.RepeatedScalarFieldContainer[str]
    title: str
    def __init__(self, parts: _Optional[_Iterable[_Union[PartConfig, _Mapping]]] = ..., separator_model: _Optional[str] = ..., video: _Optional[bool] = ..., video_config: _Optional[_Union[_video_pb2.RenderConfig, _Mapping]] = ..., filename: _Optional[str] = ..., return_stems: _Optional[bool] = ..., artifacts: _Optional[_Iterable[str]] = ..., title: _Optional[str] = ...) -> None: ...

class ProcessRequest(_message.Message):
    __slots__ = ("config", "data")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    config: ProcessConfig
    data: bytes
    def __init__(self, config: _Optional[_Union[ProcessConfig, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class JobStarted(_message.Message):
    __slots__ = ("job_id", "models")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    models: _containers.RepeatedCompositeFieldContainer[_audio_pb2.ModelInfo]
    def __init__(self, job_id: _Optional[str] = ..., models: _Optional[_Iterable[_Union[_audio_pb2.ModelInfo, _Mapping]]] = ...) -> None: ...

class PartStarted(_message.Message):
    __slots__ = ("part", "tuning", "model")
    PART_FIELD_NUMBER: _ClassVar[int]
    TUNING_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    part: str
    tuning: _audio_pb2.Tuning
    model: _audio_pb2.ModelInfo
    def __init__(self, part: _Optional[str] = ..., tuning: _Optional[_Union[_audio_pb2.Tuning, _Mapping]] = ..., model: _Optional[_Union[_audio_pb2.ModelInfo, _Mapping]] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("name", "content_type", "data", "offset", "last")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    name: str
    content_type: str
    data: bytes
    offset: int
    last: bool
    def __init__(self, name: _Optional[str] = ..., content_type: _Optional[str] = ..., data: _Optional[bytes] = ..., offset: _Optional[int] = ..., last: _Optional[bool] = ...) -> None: ...

class ProcessSummary(_message.Message):
    __slots__ = ("job_id", "seconds", "wall_seconds", "notes", "models", "artifacts")
    class NotesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    WALL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    seconds: float
    wall_seconds: float
    notes: _containers.ScalarMap[str, int]
    models: _containers.RepeatedCompositeFieldContainer[_audio_pb2.ModelInfo]
    artifacts: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_id: _Optional[str] = ..., seconds: _Optional[float] = ..., wall_seconds: _Optional[float] = ..., notes: _Optional[_Mapping[str, int]] = ..., models: _Optional[_Iterable[_Union[_audio_pb2.ModelInfo, _Mapping]]] = ..., artifacts: _Optional[_Iterable[str]] = ...) -> None: ...

class ProcessResponse(_message.Message):
    __slots__ = ("started", "progress", "part", "notes", "artifact", "summary", "video")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    VIDEO_FIELD_NUMBER: _ClassVar[int]
    started: JobStarted
    progress: _audio_pb2.Progress
    part: PartStarted
    notes: _audio_pb2.NoteBatch
    artifact: Artifact
    summary: ProcessSummary
    video: _video_pb2.VideoFragment
    def __init__(self, started: _Optional[_Union[JobStarted, _Mapping]] = ..., progress: _Optional[_Union[_audio_pb2.Progress, _Mapping]] = ..., part: _Optional[_Union[PartStarted, _Mapping]] = ..., notes: _Optional[_Union[_audio_pb2.NoteBatch, _Mapping]] = ..., artifact: _Optional[_Union[Artifact, _Mapping]] = ..., summary: _Optional[_Union[ProcessSummary, _Mapping]] = ..., video: _Optional[_Union[_video_pb2.VideoFragment, _Mapping]] = ...) -> None: ...
