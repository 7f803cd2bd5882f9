from cloudai.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RegisterWorkerRequest(_message.Message):
    __slots__ = ("worker_id", "address", "capacity", "labels", "hostname", "version", "running", "cached_images", "telemetry")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    CACHED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    address: str
    capacity: _common_pb2.Resources
    labels: _containers.ScalarMap[str, str]
    hostname: str
    version: str
    running: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskRef]
    cached_images: _containers.RepeatedScalarFieldContainer[str]
    telemetry: _common_pb2.Telemetry
    def __init__(self, worker_id: _Optional[str] = ..., address: _Optional[str] = ..., capacity: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., hostname: _Optional[str] = ..., version: _Optional[str] = ..., running: _Optional[_Iterable[_Union[_common_pb2.TaskRef, _Mapping]]] = ..., cached_images: _Optional[_Iterable[str]] = ..., telemetry: _Optional[_Union[_common_pb2.Telemetry, _Mapping]] = ...) -> None: ...

class RegisterWorkerResponse(_message.Message):
    __slots__ = ("accepted", "message", "heartbeat_interval_s", "stop")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    heartbeat_interval_s: float
    stop: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskRef]
    def __init__(self, accepted: _Optional[bool] = ..., message: _Optional[str] = ..., heartbeat_interval_s: _Optional[float] = ..., stop: _Optional[_Iterable[_Union[_common_pb2.TaskRef, _Mapping]]] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "telemetry", "running", "cached_images", "address", "leaving", "engine_trouble")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    CACHED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LEAVING_FIELD_NUMBER: _ClassVar[int]
    ENGINE_TROUBLE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    telemetry: _common_pb2.Telemetry
    running: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskRef]
    cached_images: _containers.RepeatedScalarFieldContainer[str]
    address: str
    leaving: bool
    engine_trouble: str
    def __init__(self, worker_id: _Optional[str] = ..., telemetry: _Optional[_Union[_common_pb2.Telemetry, _Mapping]] = ..., running: _Optional[_Iterable[_Union[_common_pb2.TaskRef, _Mapping]]] = ..., cached_images: _Optional[_Iterable[str]] = ..., address: _Optional[str] = ..., leaving: _Optional[bool] = ..., engine_trouble: _Optional[str] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("known", "stop", "drain")
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    known: bool
    stop: _containers.RepeatedCompositeFieldContainer[_common_pb2.TaskRef]
    drain: bool
    def __init__(self, known: _Optional[bool] = ..., stop: _Optional[_Iterable[_Union[_common_pb2.TaskRef, _Mapping]]] = ..., drain: _Optional[bool] = ...) -> None: ...

class TaskStatusReport(_message.Message):
    __slots__ = ("worker_id", "task_id", "attempt", "state", "exit_code", "reason", "message", "log_tail", "started_at", "finished_at", "peak_memory_bytes", "container_id", "has_exit_code")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    task_id: str
    attempt: int
    state: _common_pb2.TaskState
    exit_code: int
    reason: str
    message: str
    log_tail: str
    started_at: float
    finished_at: float
    peak_memory_bytes: int
    container_id: str
    has_exit_code: bool
    def __init__(self, worker_id: _Optional[str] = ..., task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., state: _Optional[_Union[_common_pb2.TaskState, str]] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., log_tail: _Optional[str] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., peak_memory_bytes: _Optional[int] = ..., container_id: _Optional[str] = ..., has_exit_code: _Optional[bool] = ...) -> None: ...

class TaskStatusAck(_message.Message):
    __slots__ = ("accepted", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    def __init__(self, accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class AssignTaskRequest(_message.Message):
    __slots__ = ("task_id", "attempt", "spec")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    spec: _common_pb2.TaskSpec
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., spec: _Optional[_Union[_common_pb2.TaskSpec, _Mapping]] = ...) -> None: ...

class AssignTaskResponse(_message.Message):
    __slots__ = ("accepted", "message")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    message: str
    def __init__(self, accepted: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class AssignTasksRequest(_message.Message):
    __slots__ = ("assignments",)
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[AssignTaskRequest]
    def __init__(self, assignments: _Optional[_Iterable[_Union[AssignTaskRequest, _Mapping]]] = ...) -> None: ...

class AssignTasksResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[AssignTaskResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[AssignTaskResponse, _Mapping]]] = ...) -> None: ...

class CancelTaskRequest(_message.Message):
    __slots__ = ("task_id", "attempt", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelTaskResponse(_message.Message):
    __slots__ = ("found", "message")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    found: bool
    message: str
    def __init__(self, found: _Optional[bool] = ..., message: _Optional[str] = ...) -> None: ...

class GetTaskLogsRequest(_message.Message):
    __slots__ = ("task_id", "attempt", "follow", "tail_lines")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    follow: bool
    tail_lines: int
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., follow: _Optional[bool] = ..., tail_lines: _Optional[int] = ...) -> None: ...
