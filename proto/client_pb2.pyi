from cloudai.proto import common_pb2 as _common_pb2
from cloudai.proto import master_agent_pb2 as _master_agent_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SubmitTaskRequest(_message.Message):
    __slots__ = ("spec", "dry_run")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.TaskSpec
    dry_run: bool
    def __init__(self, spec: _Optional[_Union[_common_pb2.TaskSpec, _Mapping]] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class SubmitTaskResponse(_message.Message):
    __slots__ = ("task_id", "task", "decision")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    task: _common_pb2.Task
    decision: _master_agent_pb2.Decision
    def __init__(self, task_id: _Optional[str] = ..., task: _Optional[_Union[_common_pb2.Task, _Mapping]] = ..., decision: _Optional[_Union[_master_agent_pb2.Decision, _Mapping]] = ...) -> None: ...

class GetTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ("states", "limit", "worker_id")
    STATES_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[_common_pb2.TaskState]
    limit: int
    worker_id: str
    def __init__(self, states: _Optional[_Iterable[_Union[_common_pb2.TaskState, str]]] = ..., limit: _Optional[int] = ..., worker_id: _Optional[str] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[_common_pb2.Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[_common_pb2.Task, _Mapping]]] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("task", "message")
    TASK_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    task: _common_pb2.Task
    message: str
    def __init__(self, task: _Optional[_Union[_common_pb2.Task, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class LogsRequest(_message.Message):
    __slots__ = ("task_id", "follow", "tail_lines")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    TAIL_LINES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    follow: bool
    tail_lines: int
    def __init__(self, task_id: _Optional[str] = ..., follow: _Optional[bool] = ..., tail_lines: _Optional[int] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("task", "decisions", "text")
    TASK_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    task: _common_pb2.Task
    decisions: _containers.RepeatedCompositeFieldContainer[_master_agent_pb2.Decision]
    text: str
    def __init__(self, task: _Optional[_Union[_common_pb2.Task, _Mapping]] = ..., decisions: _Optional[_Iterable[_Union[_master_agent_pb2.Decision, _Mapping]]] = ..., text: _Optional[str] = ...) -> None: ...

class ListWorkersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListWorkersResponse(_message.Message):
    __slots__ = ("workers",)
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    workers: _containers.RepeatedCompositeFieldContainer[_common_pb2.WorkerInfo]
    def __init__(self, workers: _Optional[_Iterable[_Union[_common_pb2.WorkerInfo, _Mapping]]] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("version", "uptime_s", "store", "workers_active", "workers_inactive", "tasks_by_state", "agent_connected", "agent_id", "agent_last_seen_s", "capacity", "allocated", "workers_draining", "agents_connected", "connected_agent_ids", "workers_unreachable", "agent_policy", "agent_profile", "agent_model_version", "agent_shadow", "workers_no_engine")
    class TasksByStateEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_ACTIVE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_INACTIVE_FIELD_NUMBER: _ClassVar[int]
    TASKS_BY_STATE_FIELD_NUMBER: _ClassVar[int]
    AGENT_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_LAST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    WORKERS_DRAINING_FIELD_NUMBER: _ClassVar[int]
    AGENTS_CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    AGENT_POLICY_FIELD_NUMBER: _ClassVar[int]
    AGENT_PROFILE_FIELD_NUMBER: _ClassVar[int]
    AGENT_MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    AGENT_SHADOW_FIELD_NUMBER: _ClassVar[int]
    WORKERS_NO_ENGINE_FIELD_NUMBER: _ClassVar[int]
    version: str
    uptime_s: float
    store: str
    workers_active: int
    workers_inactive: int
    tasks_by_state: _containers.ScalarMap[str, int]
    agent_connected: bool
    agent_id: str
    agent_last_seen_s: float
    capacity: _common_pb2.Resources
    allocated: _common_pb2.Resources
    workers_draining: int
    agents_connected: int
    connected_agent_ids: _containers.RepeatedScalarFieldContainer[str]
    workers_unreachable: int
    agent_policy: str
    agent_profile: str
    agent_model_version: str
    agent_shadow: _master_agent_pb2.ShadowReport
    workers_no_engine: int
    def __init__(self, version: _Optional[str] = ..., uptime_s: _Optional[float] = ..., store: _Optional[str] = ..., workers_active: _Optional[int] = ..., workers_inactive: _Optional[int] = ..., tasks_by_state: _Optional[_Mapping[str, int]] = ..., agent_connected: _Optional[bool] = ..., agent_id: _Optional[str] = ..., agent_last_seen_s: _Optional[float] = ..., capacity: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., allocated: _Optional[_Union[_common_pb2.Resources, _Mapping]] = ..., workers_draining: _Optional[int] = ..., agents_connected: _Optional[int] = ..., connected_agent_ids: _Optional[_Iterable[str]] = ..., workers_unreachable: _Optional[int] = ..., agent_policy: _Optional[str] = ..., agent_profile: _Optional[str] = ..., agent_model_version: _Optional[str] = ..., agent_shadow: _Optional[_Union[_master_agent_pb2.ShadowReport, _Mapping]] = ..., workers_no_engine: _Optional[int] = ...) -> None: ...

class DrainRequest(_message.Message):
    __slots__ = ("worker_id", "undrain")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    UNDRAIN_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    undrain: bool
    def __init__(self, worker_id: _Optional[str] = ..., undrain: _Optional[bool] = ...) -> None: ...

class DrainResponse(_message.Message):
    __slots__ = ("worker",)
    WORKER_FIELD_NUMBER: _ClassVar[int]
    worker: _common_pb2.WorkerInfo
    def __init__(self, worker: _Optional[_Union[_common_pb2.WorkerInfo, _Mapping]] = ...) -> None: ...
