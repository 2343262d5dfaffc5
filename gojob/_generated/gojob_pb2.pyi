import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from . import service_pb2 as _service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOG_LEVEL_UNSPECIFIED: _ClassVar[LogLevel]
    LOG_LEVEL_DEBUG: _ClassVar[LogLevel]
    LOG_LEVEL_INFO: _ClassVar[LogLevel]
    LOG_LEVEL_WARN: _ClassVar[LogLevel]
    LOG_LEVEL_ERROR: _ClassVar[LogLevel]

class Overlap(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERLAP_UNSPECIFIED: _ClassVar[Overlap]
    OVERLAP_ALLOW: _ClassVar[Overlap]
    OVERLAP_SKIP: _ClassVar[Overlap]
    OVERLAP_WAIT: _ClassVar[Overlap]

class Misfire(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MISFIRE_UNSPECIFIED: _ClassVar[Misfire]
    MISFIRE_CATCH_UP_ONCE: _ClassVar[Misfire]
    MISFIRE_CATCH_UP_ALL: _ClassVar[Misfire]
    MISFIRE_SKIP: _ClassVar[Misfire]

class OrderBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ORDER_BY_UNSPECIFIED: _ClassVar[OrderBy]
    ORDER_BY_CREATED_AT: _ClassVar[OrderBy]
    ORDER_BY_SCHEDULED_AT: _ClassVar[OrderBy]
    ORDER_BY_UPDATED_AT: _ClassVar[OrderBy]

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    EVENT_TYPE_STARTED: _ClassVar[EventType]
    EVENT_TYPE_STATE: _ClassVar[EventType]
    EVENT_TYPE_RESYNC: _ClassVar[EventType]
LOG_LEVEL_UNSPECIFIED: LogLevel
LOG_LEVEL_DEBUG: LogLevel
LOG_LEVEL_INFO: LogLevel
LOG_LEVEL_WARN: LogLevel
LOG_LEVEL_ERROR: LogLevel
OVERLAP_UNSPECIFIED: Overlap
OVERLAP_ALLOW: Overlap
OVERLAP_SKIP: Overlap
OVERLAP_WAIT: Overlap
MISFIRE_UNSPECIFIED: Misfire
MISFIRE_CATCH_UP_ONCE: Misfire
MISFIRE_CATCH_UP_ALL: Misfire
MISFIRE_SKIP: Misfire
ORDER_BY_UNSPECIFIED: OrderBy
ORDER_BY_CREATED_AT: OrderBy
ORDER_BY_SCHEDULED_AT: OrderBy
ORDER_BY_UPDATED_AT: OrderBy
EVENT_TYPE_UNSPECIFIED: EventType
EVENT_TYPE_STARTED: EventType
EVENT_TYPE_STATE: EventType
EVENT_TYPE_RESYNC: EventType

class Instance(_message.Message):
    __slots__ = ("kind", "uuid", "state", "args_json", "kwargs_json", "result_json", "error", "error_type", "traceback", "priority", "max_retries", "timeout", "attempts", "failures", "rescues", "schedule_id", "dedupe_key", "fire_time", "node_id", "worker", "cancel_requested", "created_at", "scheduled_at", "processed_at", "completed_at", "terminated_at", "canceled_at", "timed_out_at", "updated_at", "lease_expires_at")
    KIND_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    KWARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    TRACEBACK_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    RESCUES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    DEDUPE_KEY_FIELD_NUMBER: _ClassVar[int]
    FIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    CANCEL_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULED_AT_FIELD_NUMBER: _ClassVar[int]
    PROCESSED_AT_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_AT_FIELD_NUMBER: _ClassVar[int]
    TERMINATED_AT_FIELD_NUMBER: _ClassVar[int]
    CANCELED_AT_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    uuid: str
    state: _service_pb2.JobState
    args_json: str
    kwargs_json: str
    result_json: str
    error: str
    error_type: str
    traceback: str
    priority: int
    max_retries: int
    timeout: _duration_pb2.Duration
    attempts: int
    failures: int
    rescues: int
    schedule_id: str
    dedupe_key: str
    fire_time: _timestamp_pb2.Timestamp
    node_id: str
    worker: str
    cancel_requested: bool
    created_at: _timestamp_pb2.Timestamp
    scheduled_at: _timestamp_pb2.Timestamp
    processed_at: _timestamp_pb2.Timestamp
    completed_at: _timestamp_pb2.Timestamp
    terminated_at: _timestamp_pb2.Timestamp
    canceled_at: _timestamp_pb2.Timestamp
    timed_out_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[str] = ..., uuid: _Optional[str] = ..., state: _Optional[_Union[_service_pb2.JobState, str]] = ..., args_json: _Optional[str] = ..., kwargs_json: _Optional[str] = ..., result_json: _Optional[str] = ..., error: _Optional[str] = ..., error_type: _Optional[str] = ..., traceback: _Optional[str] = ..., priority: _Optional[int] = ..., max_retries: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., attempts: _Optional[int] = ..., failures: _Optional[int] = ..., rescues: _Optional[int] = ..., schedule_id: _Optional[str] = ..., dedupe_key: _Optional[str] = ..., fire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node_id: _Optional[str] = ..., worker: _Optional[str] = ..., cancel_requested: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., scheduled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., processed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., completed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., terminated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., canceled_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., timed_out_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("kind", "description", "priority", "max_retries", "timeout", "signature", "schedule", "is_async")
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    IS_ASYNC_FIELD_NUMBER: _ClassVar[int]
    kind: str
    description: str
    priority: int
    max_retries: int
    timeout: _duration_pb2.Duration
    signature: str
    schedule: str
    is_async: bool
    def __init__(self, kind: _Optional[str] = ..., description: _Optional[str] = ..., priority: _Optional[int] = ..., max_retries: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., signature: _Optional[str] = ..., schedule: _Optional[str] = ..., is_async: _Optional[bool] = ...) -> None: ...

class HistoryRecord(_message.Message):
    __slots__ = ("uuid", "kind", "state", "timestamp", "attempt", "details_json", "seq")
    UUID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_JSON_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    kind: str
    state: _service_pb2.JobState
    timestamp: _timestamp_pb2.Timestamp
    attempt: int
    details_json: str
    seq: int
    def __init__(self, uuid: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[_Union[_service_pb2.JobState, str]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., attempt: _Optional[int] = ..., details_json: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class LogEntry(_message.Message):
    __slots__ = ("uuid", "kind", "timestamp", "level", "message", "attempt", "logger", "seq")
    UUID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    LOGGER_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    kind: str
    timestamp: _timestamp_pb2.Timestamp
    level: LogLevel
    message: str
    attempt: int
    logger: str
    seq: int
    def __init__(self, uuid: _Optional[str] = ..., kind: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., level: _Optional[_Union[LogLevel, str]] = ..., message: _Optional[str] = ..., attempt: _Optional[int] = ..., logger: _Optional[str] = ..., seq: _Optional[int] = ...) -> None: ...

class SkippedSlot(_message.Message):
    __slots__ = ("slot", "reason")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    slot: _timestamp_pb2.Timestamp
    reason: str
    def __init__(self, slot: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class RecurringSchedule(_message.Message):
    __slots__ = ("id", "kind", "description", "cron", "tz", "every", "anchor", "args_json", "kwargs_json", "priority", "max_retries", "timeout", "overlap", "misfire", "misfire_cap", "misfire_grace", "jitter", "paused", "next_fire_at", "last_fire_at", "last_instance", "fired_count", "skipped_count", "recent_skips", "created_at", "updated_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    TZ_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    ANCHOR_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    KWARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_CAP_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_GRACE_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_FIRE_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    FIRED_COUNT_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_COUNT_FIELD_NUMBER: _ClassVar[int]
    RECENT_SKIPS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    kind: str
    description: str
    cron: str
    tz: str
    every: _duration_pb2.Duration
    anchor: _timestamp_pb2.Timestamp
    args_json: str
    kwargs_json: str
    priority: int
    max_retries: int
    timeout: _duration_pb2.Duration
    overlap: Overlap
    misfire: Misfire
    misfire_cap: int
    misfire_grace: _duration_pb2.Duration
    jitter: _duration_pb2.Duration
    paused: bool
    next_fire_at: _timestamp_pb2.Timestamp
    last_fire_at: _timestamp_pb2.Timestamp
    last_instance: str
    fired_count: int
    skipped_count: int
    recent_skips: _containers.RepeatedCompositeFieldContainer[SkippedSlot]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., kind: _Optional[str] = ..., description: _Optional[str] = ..., cron: _Optional[str] = ..., tz: _Optional[str] = ..., every: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., anchor: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., args_json: _Optional[str] = ..., kwargs_json: _Optional[str] = ..., priority: _Optional[int] = ..., max_retries: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., overlap: _Optional[_Union[Overlap, str]] = ..., misfire: _Optional[_Union[Misfire, str]] = ..., misfire_cap: _Optional[int] = ..., misfire_grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., jitter: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., paused: _Optional[bool] = ..., next_fire_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_fire_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_instance: _Optional[str] = ..., fired_count: _Optional[int] = ..., skipped_count: _Optional[int] = ..., recent_skips: _Optional[_Iterable[_Union[SkippedSlot, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("node_id", "kinds", "workers", "host", "pid", "version", "started_at", "last_seen", "expires_at")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    workers: int
    host: str
    pid: int
    version: str
    started_at: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, node_id: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ..., workers: _Optional[int] = ..., host: _Optional[str] = ..., pid: _Optional[int] = ..., version: _Optional[str] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "api_version", "node_id", "store", "workers", "live_workers", "busy_workers", "started_at", "uptime", "kinds", "lookup_limit", "max_message_bytes")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STORE_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    LIVE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    BUSY_WORKERS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    UPTIME_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    LOOKUP_LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    version: str
    api_version: str
    node_id: str
    store: str
    workers: int
    live_workers: int
    busy_workers: int
    started_at: _timestamp_pb2.Timestamp
    uptime: _duration_pb2.Duration
    kinds: _containers.RepeatedScalarFieldContainer[str]
    lookup_limit: int
    max_message_bytes: int
    def __init__(self, version: _Optional[str] = ..., api_version: _Optional[str] = ..., node_id: _Optional[str] = ..., store: _Optional[str] = ..., workers: _Optional[int] = ..., live_workers: _Optional[int] = ..., busy_workers: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., uptime: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., kinds: _Optional[_Iterable[str]] = ..., lookup_limit: _Optional[int] = ..., max_message_bytes: _Optional[int] = ...) -> None: ...

class GetStatisticsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StateCount(_message.Message):
    __slots__ = ("kind", "state", "count")
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    state: _service_pb2.JobState
    count: int
    def __init__(self, kind: _Optional[str] = ..., state: _Optional[_Union[_service_pb2.JobState, str]] = ..., count: _Optional[int] = ...) -> None: ...

class Statistics(_message.Message):
    __slots__ = ("node_id", "workers", "live_workers", "busy_workers", "in_flight", "queued", "counts", "unserved_kinds")
    class UnservedKindsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    LIVE_WORKERS_FIELD_NUMBER: _ClassVar[int]
    BUSY_WORKERS_FIELD_NUMBER: _ClassVar[int]
    IN_FLIGHT_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    UNSERVED_KINDS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    workers: int
    live_workers: int
    busy_workers: int
    in_flight: int
    queued: int
    counts: _containers.RepeatedCompositeFieldContainer[StateCount]
    unserved_kinds: _containers.ScalarMap[str, int]
    def __init__(self, node_id: _Optional[str] = ..., workers: _Optional[int] = ..., live_workers: _Optional[int] = ..., busy_workers: _Optional[int] = ..., in_flight: _Optional[int] = ..., queued: _Optional[int] = ..., counts: _Optional[_Iterable[_Union[StateCount, _Mapping]]] = ..., unserved_kinds: _Optional[_Mapping[str, int]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class ScheduleRequest(_message.Message):
    __slots__ = ("kind", "arguments", "args_json", "kwargs_json", "at", "after", "cron", "every", "tz", "priority", "timeout", "max_retries", "backoff", "dedupe_key", "schedule_id", "overlap", "misfire", "misfire_cap", "misfire_grace", "jitter", "start")
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    KWARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    TZ_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    DEDUPE_KEY_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_CAP_FIELD_NUMBER: _ClassVar[int]
    MISFIRE_GRACE_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    kind: str
    arguments: _containers.RepeatedScalarFieldContainer[str]
    args_json: str
    kwargs_json: str
    at: _timestamp_pb2.Timestamp
    after: _duration_pb2.Duration
    cron: str
    every: _duration_pb2.Duration
    tz: str
    priority: int
    timeout: _duration_pb2.Duration
    max_retries: int
    backoff: _duration_pb2.Duration
    dedupe_key: str
    schedule_id: str
    overlap: Overlap
    misfire: Misfire
    misfire_cap: int
    misfire_grace: _duration_pb2.Duration
    jitter: _duration_pb2.Duration
    start: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[str] = ..., arguments: _Optional[_Iterable[str]] = ..., args_json: _Optional[str] = ..., kwargs_json: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., cron: _Optional[str] = ..., every: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., tz: _Optional[str] = ..., priority: _Optional[int] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_retries: _Optional[int] = ..., backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., dedupe_key: _Optional[str] = ..., schedule_id: _Optional[str] = ..., overlap: _Optional[_Union[Overlap, str]] = ..., misfire: _Optional[_Union[Misfire, str]] = ..., misfire_cap: _Optional[int] = ..., misfire_grace: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., jitter: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ScheduleResponse(_message.Message):
    __slots__ = ("instance", "schedule")
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    schedule: RecurringSchedule
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ..., schedule: _Optional[_Union[RecurringSchedule, _Mapping]] = ...) -> None: ...

class ListInstancesRequest(_message.Message):
    __slots__ = ("uuid", "kind", "states", "schedule_id", "after", "before", "order_by", "descending", "limit", "offset")
    UUID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    kind: str
    states: _containers.RepeatedScalarFieldContainer[_service_pb2.JobState]
    schedule_id: str
    after: _timestamp_pb2.Timestamp
    before: _timestamp_pb2.Timestamp
    order_by: OrderBy
    descending: bool
    limit: int
    offset: int
    def __init__(self, uuid: _Optional[str] = ..., kind: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_service_pb2.JobState, str]]] = ..., schedule_id: _Optional[str] = ..., after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., order_by: _Optional[_Union[OrderBy, str]] = ..., descending: _Optional[bool] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class ListInstancesResponse(_message.Message):
    __slots__ = ("instances", "next_offset")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    next_offset: int
    def __init__(self, instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ..., next_offset: _Optional[int] = ...) -> None: ...

class GetInstanceRequest(_message.Message):
    __slots__ = ("uuid",)
    UUID_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    def __init__(self, uuid: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("uuid", "kind", "states", "all")
    UUID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    kind: str
    states: _containers.RepeatedScalarFieldContainer[_service_pb2.JobState]
    all: bool
    def __init__(self, uuid: _Optional[str] = ..., kind: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_service_pb2.JobState, str]]] = ..., all: _Optional[bool] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("instances",)
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    def __init__(self, instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ...) -> None: ...

class RetryRequest(_message.Message):
    __slots__ = ("uuid", "after")
    UUID_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    after: _duration_pb2.Duration
    def __init__(self, uuid: _Optional[str] = ..., after: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RetryResponse(_message.Message):
    __slots__ = ("instance",)
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    instance: Instance
    def __init__(self, instance: _Optional[_Union[Instance, _Mapping]] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("uuid", "kind", "states", "after", "before", "descending", "limit", "offset")
    UUID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    kind: str
    states: _containers.RepeatedScalarFieldContainer[_service_pb2.JobState]
    after: _timestamp_pb2.Timestamp
    before: _timestamp_pb2.Timestamp
    descending: bool
    limit: int
    offset: int
    def __init__(self, uuid: _Optional[str] = ..., kind: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_service_pb2.JobState, str]]] = ..., after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., descending: _Optional[bool] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("records", "next_offset")
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[HistoryRecord]
    next_offset: int
    def __init__(self, records: _Optional[_Iterable[_Union[HistoryRecord, _Mapping]]] = ..., next_offset: _Optional[int] = ...) -> None: ...

class GetLogsRequest(_message.Message):
    __slots__ = ("uuid", "kind", "min_level", "after", "before", "descending", "limit", "offset")
    UUID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    DESCENDING_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    kind: str
    min_level: LogLevel
    after: _timestamp_pb2.Timestamp
    before: _timestamp_pb2.Timestamp
    descending: bool
    limit: int
    offset: int
    def __init__(self, uuid: _Optional[str] = ..., kind: _Optional[str] = ..., min_level: _Optional[_Union[LogLevel, str]] = ..., after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., descending: _Optional[bool] = ..., limit: _Optional[int] = ..., offset: _Optional[int] = ...) -> None: ...

class GetLogsResponse(_message.Message):
    __slots__ = ("entries", "next_offset")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[LogEntry]
    next_offset: int
    def __init__(self, entries: _Optional[_Iterable[_Union[LogEntry, _Mapping]]] = ..., next_offset: _Optional[int] = ...) -> None: ...

class FollowLogsRequest(_message.Message):
    __slots__ = ("uuid", "min_level")
    UUID_FIELD_NUMBER: _ClassVar[int]
    MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    min_level: LogLevel
    def __init__(self, uuid: _Optional[str] = ..., min_level: _Optional[_Union[LogLevel, str]] = ...) -> None: ...

class WatchEventsRequest(_message.Message):
    __slots__ = ("uuid", "kind", "states", "until_final", "include_instance")
    UUID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATES_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FINAL_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    kind: str
    states: _containers.RepeatedScalarFieldContainer[_service_pb2.JobState]
    until_final: bool
    include_instance: bool
    def __init__(self, uuid: _Optional[str] = ..., kind: _Optional[str] = ..., states: _Optional[_Iterable[_Union[_service_pb2.JobState, str]]] = ..., until_final: _Optional[bool] = ..., include_instance: _Optional[bool] = ...) -> None: ...

class InstanceEvent(_message.Message):
    __slots__ = ("type", "uuid", "kind", "state", "node_id", "observed_at", "instance")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    UUID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_AT_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    type: EventType
    uuid: str
    kind: str
    state: _service_pb2.JobState
    node_id: str
    observed_at: _timestamp_pb2.Timestamp
    instance: Instance
    def __init__(self, type: _Optional[_Union[EventType, str]] = ..., uuid: _Optional[str] = ..., kind: _Optional[str] = ..., state: _Optional[_Union[_service_pb2.JobState, str]] = ..., node_id: _Optional[str] = ..., observed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., instance: _Optional[_Union[Instance, _Mapping]] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ("kind",)
    KIND_FIELD_NUMBER: _ClassVar[int]
    kind: str
    def __init__(self, kind: _Optional[str] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules",)
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[RecurringSchedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[RecurringSchedule, _Mapping]]] = ...) -> None: ...

class ScheduleIdRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class DeleteScheduleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ResizeWorkersRequest(_message.Message):
    __slots__ = ("workers", "cancel_busy")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_BUSY_FIELD_NUMBER: _ClassVar[int]
    workers: int
    cancel_busy: bool
    def __init__(self, workers: _Optional[int] = ..., cancel_busy: _Optional[bool] = ...) -> None: ...

class ResizeWorkersResponse(_message.Message):
    __slots__ = ("previous", "workers")
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    previous: int
    workers: int
    def __init__(self, previous: _Optional[int] = ..., workers: _Optional[int] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesResponse(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[Node]
    def __init__(self, nodes: _Optional[_Iterable[_Union[Node, _Mapping]]] = ...) -> None: ...
