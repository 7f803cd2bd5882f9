from cloudai.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchRequest(_message.Message):
    __slots__ = ("agent_id", "policy", "profile", "model_version", "max_batch")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    policy: str
    profile: str
    model_version: str
    max_batch: int
    def __init__(self, agent_id: _Optional[str] = ..., policy: _Optional[str] = ..., profile: _Optional[str] = ..., model_version: _Optional[str] = ..., max_batch: _Optional[int] = ...) -> None: ...

class PendingTask(_message.Message):
    __slots__ = ("task_id", "attempt", "spec", "created_at", "queued_at", "avoid_workers")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    AVOID_WORKERS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    spec: _common_pb2.TaskSpec
    created_at: float
    queued_at: float
    avoid_workers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., spec: _Optional[_Union[_common_pb2.TaskSpec, _Mapping]] = ..., created_at: _Optional[float] = ..., queued_at: _Optional[float] = ..., avoid_workers: _Optional[_Iterable[str]] = ...) -> None: ...

class WorkerSnapshot(_message.Message):
    __slots__ = ("worker_id", "capacity", "allocated", "telemetry", "cached_images", "labels", "health", "left_at")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    CACHED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    LEFT_AT_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    capacity: _common_pb2.Resources
    allocated: _common_pb2.Resources
    telemetry: _common_pb2.Telemetry
    cached_images: _containers.RepeatedScalarFieldContainer[str]
    labels: _containers.ScalarMap[str, str]
    health: _common_pb2.WorkerHealth
    left_at: float
    def __init__(self, worker_id: _Optional[str] = ..., capacity: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., allocated: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., telemetry: _Optional[_Union[_common_pb2.Telemetry, _Mapping]] = ..., cached_images: _Optional[_Iterable[str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., health: _Optional[_Union[_common_pb2.WorkerHealth, str]] = ..., left_at: _Optional[float] = ...) -> None: ...

class SchedulingBatch(_message.Message):
    __slots__ = ("sequence", "timestamp", "tasks", "workers")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    timestamp: float
    tasks: _containers.RepeatedCompositeFieldContainer[PendingTask]
    workers: _containers.RepeatedCompositeFieldContainer[WorkerSnapshot]
    def __init__(self, sequence: _Optional[int] = ..., timestamp: _Optional[float] = ..., tasks: _Optional[_Iterable[_Union[PendingTask, _Mapping]]] = ..., workers: _Optional[_Iterable[_Union[WorkerSnapshot, _Mapping]]] = ...) -> None: ...

class Candidate(_message.Message):
    __slots__ = ("worker_id", "total", "scores")
    class ScoresEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    total: float
    scores: _containers.ScalarMap[str, float]
    def __init__(self, worker_id: _Optional[str] = ..., total: _Optional[float] = ..., scores: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("task_id", "attempt", "worker_id", "policy", "profile", "model_version", "candidates", "rejections", "summary", "hint", "fallback", "decided_at", "source", "committed", "reject_reason")
    class RejectionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    HINT_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_FIELD_NUMBER: _ClassVar[int]
    REJECT_REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    worker_id: str
    policy: str
    profile: str
    model_version: str
    candidates: _containers.RepeatedCompositeFieldContainer[Candidate]
    rejections: _containers.ScalarMap[str, int]
    summary: str
    hint: str
    fallback: bool
    decided_at: float
    source: str
    committed: bool
    reject_reason: str
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., policy: _Optional[str] = ..., profile: _Optional[str] = ..., model_version: _Optional[str] = ..., candidates: _Optional[_Iterable[_Union[Candidate, _Mapping]]] = ..., rejections: _Optional[_Mapping[str, int]] = ..., summary: _Optional[str] = ..., hint: _Optional[str] = ..., fallback: _Optional[bool] = ..., decided_at: _Optional[float] = ..., source: _Optional[str] = ..., committed: _Optional[bool] = ..., reject_reason: _Optional[str] = ...) -> None: ...

class ShadowReport(_message.Message):
    __slots__ = ("policy", "decisions", "disagreements", "other_worker")
    POLICY_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    DISAGREEMENTS_FIELD_NUMBER: _ClassVar[int]
    OTHER_WORKER_FIELD_NUMBER: _ClassVar[int]
    policy: str
    decisions: int
    disagreements: int
    other_worker: int
    def __init__(self, policy: _Optional[str] = ..., decisions: _Optional[int] = ..., disagreements: _Optional[int] = ..., other_worker: _Optional[int] = ...) -> None: ...

class PlacementBatch(_message.Message):
    __slots__ = ("agent_id", "sequence", "decisions", "shadow")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    SHADOW_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    sequence: int
    decisions: _containers.RepeatedCompositeFieldContainer[Decision]
    shadow: ShadowReport
    def __init__(self, agent_id: _Optional[str] = ..., sequence: _Optional[int] = ..., decisions: _Optional[_Iterable[_Union[Decision, _Mapping]]] = ..., shadow: _Optional[_Union[ShadowReport, _Mapping]] = ...) -> None: ...

class PlacementResult(_message.Message):
    __slots__ = ("task_id", "accepted", "reason")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    accepted: bool
    reason: str
    def __init__(self, task_id: _Optional[str] = ..., accepted: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class PlacementResults(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PlacementResult]
    def __init__(self, results: _Optional[_Iterable[_Union[PlacementResult, _Mapping]]] = ...) -> None: ...
