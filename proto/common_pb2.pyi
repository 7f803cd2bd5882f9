from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_PENDING: _ClassVar[TaskState]
    TASK_STATE_PLACED: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_SUCCEEDED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]
    TASK_STATE_TIMED_OUT: _ClassVar[TaskState]

class WorkerHealth(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKER_HEALTH_UNSPECIFIED: _ClassVar[WorkerHealth]
    WORKER_HEALTH_ACTIVE: _ClassVar[WorkerHealth]
    WORKER_HEALTH_INACTIVE: _ClassVar[WorkerHealth]
    WORKER_HEALTH_DRAINING: _ClassVar[WorkerHealth]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_PENDING: TaskState
TASK_STATE_PLACED: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_SUCCEEDED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
TASK_STATE_TIMED_OUT: TaskState
WORKER_HEALTH_UNSPECIFIED: WorkerHealth
WORKER_HEALTH_ACTIVE: WorkerHealth
WORKER_HEALTH_INACTIVE: WorkerHealth
WORKER_HEALTH_DRAINING: WorkerHealth

class Resources(_message.Message):
    __slots__ = ("cpu", "memory_bytes", "gpu")
    CPU_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_FIELD_NUMBER: _ClassVar[int]
    cpu: float
    memory_bytes: int
    gpu: float
    def __init__(self, cpu: _Optional[float] = ..., memory_bytes: _Optional[int] = ..., gpu: _Optional[float] = ...) -> None: ...

class TaskSpec(_message.Message):
    __slots__ = ("image", "command", "env", "resources", "priority", "timeout_s", "max_retries", "selector", "name", "pinned_worker", "always_pull", "secret_env_keys", "owner", "cap_add", "read_only_rootfs", "user")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PINNED_WORKER_FIELD_NUMBER: _ClassVar[int]
    ALWAYS_PULL_FIELD_NUMBER: _ClassVar[int]
    SECRET_ENV_KEYS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    CAP_ADD_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_ROOTFS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    image: str
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    resources: Resources
    priority: int
    timeout_s: float
    max_retries: int
    selector: _containers.ScalarMap[str, str]
    name: str
    pinned_worker: str
    always_pull: bool
    secret_env_keys: _containers.RepeatedScalarFieldContainer[str]
    owner: str
    cap_add: _containers.RepeatedScalarFieldContainer[str]
    read_only_rootfs: bool
    user: str
    def __init__(self, image: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., priority: _Optional[int] = ..., timeout_s: _Optional[float] = ..., max_retries: _Optional[int] = ..., selector: _Optional[_Mapping[str, str]] = ..., name: _Optional[str] = ..., pinned_worker: _Optional[str] = ..., always_pull: _Optional[bool] = ..., secret_env_keys: _Optional[_Iterable[str]] = ..., owner: _Optional[str] = ..., cap_add: _Optional[_Iterable[str]] = ..., read_only_rootfs: _Optional[bool] = ..., user: _Optional[str] = ...) -> None: ...

class TaskRef(_message.Message):
    __slots__ = ("task_id", "attempt")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class Attempt(_message.Message):
    __slots__ = ("number", "worker_id", "state", "exit_code", "reason", "message", "placed_at", "started_at", "finished_at", "peak_memory_bytes")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PLACED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    number: int
    worker_id: str
    state: TaskState
    exit_code: int
    reason: str
    message: str
    placed_at: float
    started_at: float
    finished_at: float
    peak_memory_bytes: int
    def __init__(self, number: _Optional[int] = ..., worker_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., placed_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., peak_memory_bytes: _Optional[int] = ...) -> None: ...

class Task(_message.Message):
    __slots__ = ("id", "spec", "state", "attempt", "worker_id", "created_at", "updated_at", "exit_code", "reason", "message", "attempts", "started_at", "finished_at", "peak_memory_bytes", "has_exit_code", "log_tail", "retries_used", "worker_losses")
    ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    PEAK_MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    LOG_TAIL_FIELD_NUMBER: _ClassVar[int]
    RETRIES_USED_FIELD_NUMBER: _ClassVar[int]
    WORKER_LOSSES_FIELD_NUMBER: _ClassVar[int]
    id: str
    spec: TaskSpec
    state: TaskState
    attempt: int
    worker_id: str
    created_at: float
    updated_at: float
    exit_code: int
    reason: str
    message: str
    attempts: _containers.RepeatedCompositeFieldContainer[Attempt]
    started_at: float
    finished_at: float
    peak_memory_bytes: int
    has_exit_code: bool
    log_tail: str
    retries_used: int
    worker_losses: int
    def __init__(self, id: _Optional[str] = ..., spec: _Optional[_Union[TaskSpec, _Mapping]] = ..., state: _Optional[_Union[TaskState, str]] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ..., created_at: _Optional[float] = ..., updated_at: _Optional[float] = ..., exit_code: _Optional[int] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., attempts: _Optional[_Iterable[_Union[Attempt, _Mapping]]] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., peak_memory_bytes: _Optional[int] = ..., has_exit_code: _Optional[bool] = ..., log_tail: _Optional[str] = ..., retries_used: _Optional[int] = ..., worker_losses: _Optional[int] = ...) -> None: ...

class Telemetry(_message.Message):
    __slots__ = ("cpu_percent", "memory_used_bytes", "memory_total_bytes", "memory_percent", "disk_percent", "disk_free_bytes", "gpu_util_percent", "load1", "timestamp")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DISK_PERCENT_FIELD_NUMBER: _ClassVar[int]
    DISK_FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    GPU_UTIL_PERCENT_FIELD_NUMBER: _ClassVar[int]
    LOAD1_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    memory_percent: float
    disk_percent: float
    disk_free_bytes: int
    gpu_util_percent: _containers.RepeatedScalarFieldContainer[float]
    load1: float
    timestamp: float
    def __init__(self, cpu_percent: _Optional[float] = ..., memory_used_bytes: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., memory_percent: _Optional[float] = ..., disk_percent: _Optional[float] = ..., disk_free_bytes: _Optional[int] = ..., gpu_util_percent: _Optional[_Iterable[float]] = ..., load1: _Optional[float] = ..., timestamp: _Optional[float] = ...) -> None: ...

class WorkerInfo(_message.Message):
    __slots__ = ("id", "address", "capacity", "labels", "health", "registered_at", "last_heartbeat", "telemetry", "allocated", "running", "cached_images", "hostname", "version", "unreachable_error", "unreachable_since", "unreachable_until", "left_at", "heard_since_master_start", "engine_trouble")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    ALLOCATED_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    CACHED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_ERROR_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_SINCE_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_UNTIL_FIELD_NUMBER: _ClassVar[int]
    LEFT_AT_FIELD_NUMBER: _ClassVar[int]
    HEARD_SINCE_MASTER_START_FIELD_NUMBER: _ClassVar[int]
    ENGINE_TROUBLE_FIELD_NUMBER: _ClassVar[int]
    id: str
    address: str
    capacity: Resources
    labels: _containers.ScalarMap[str, str]
    health: WorkerHealth
    registered_at: float
    last_heartbeat: float
    telemetry: Telemetry
    allocated: Resources
    running: _containers.RepeatedCompositeFieldContainer[TaskRef]
    cached_images: _containers.RepeatedScalarFieldContainer[str]
    hostname: str
    version: str
    unreachable_error: str
    unreachable_since: float
    unreachable_until: float
    left_at: float
    heard_since_master_start: bool
    engine_trouble: str
    def __init__(self, id: _Optional[str] = ..., address: _Optional[str] = ..., capacity: _Optional[_Union[Resources, _Mapping]] = ..., labels: _Optional[_Mapping[str, str]] = ..., health: _Optional[_Union[WorkerHealth, str]] = ..., registered_at: _Optional[float] = ..., last_heartbeat: _Optional[float] = ..., telemetry: _Optional[_Union[Telemetry, _Mapping]] = ..., allocated: _Optional[_Union[Resources, _Mapping]] = ..., running: _Optional[_Iterable[_Union[TaskRef, _Mapping]]] = ..., cached_images: _Optional[_Iterable[str]] = ..., hostname: _Optional[str] = ..., version: _Optional[str] = ..., unreachable_error: _Optional[str] = ..., unreachable_since: _Optional[float] = ..., unreachable_until: _Optional[float] = ..., left_at: _Optional[float] = ..., heard_since_master_start: _Optional[bool] = ..., engine_trouble: _Optional[str] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("data", "eof", "notice")
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    NOTICE_FIELD_NUMBER: _ClassVar[int]
    data: str
    eof: bool
    notice: str
    def __init__(self, data: _Optional[str] = ..., eof: _Optional[bool] = ..., notice: _Optional[str] = ...) -> None: ...
