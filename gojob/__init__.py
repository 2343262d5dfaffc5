"""gojob: a job framework for Trio.

Register any function (sync or async) as a job kind, schedule instances now, later,
at a time, on an interval or on a cron spec, run them on a resizable pool of workers,
and follow each instance through its states, history and logs.
"""

from __future__ import annotations

from ._version import __version__ as __version__
from .clock import Clock as Clock
from .clock import SystemClock as SystemClock
from .clock import TrioWallClock as TrioWallClock
from .codec import Limits as Limits
from .errors import ArgumentError as ArgumentError
from .errors import DecodeError as DecodeError
from .errors import DuplicateJob as DuplicateJob
from .errors import EncodeError as EncodeError
from .errors import GojobError as GojobError
from .errors import InstanceNotFound as InstanceNotFound
from .errors import InvalidSchedule as InvalidSchedule
from .errors import InvalidTransition as InvalidTransition
from .errors import LeaseLost as LeaseLost
from .errors import ManagerClosed as ManagerClosed
from .errors import NonRetryable as NonRetryable
from .errors import PayloadTooLarge as PayloadTooLarge
from .errors import Retry as Retry
from .errors import ScheduleNotFound as ScheduleNotFound
from .errors import StoreError as StoreError
from .errors import StoreUnavailable as StoreUnavailable
from .errors import UnknownJob as UnknownJob
from .errors import UnsupportedStore as UnsupportedStore
from .instance import HistoryRecord as HistoryRecord
from .instance import Instance as Instance
from .instance import LogLevel as LogLevel
from .instance import LogRecord as LogRecord
from .job import Job as Job
from .job_modules import JobModuleError as JobModuleError
from .job_modules import JobSet as JobSet
from .manager import Manager as Manager
from .manager import ManagerStatistics as ManagerStatistics
from .manager import open_manager as open_manager
from .policy import INFINITE as INFINITE
from .policy import Backoff as Backoff
from .policy import Policy as Policy
from .schedule import Cron as Cron
from .schedule import Every as Every
from .schedule import Misfire as Misfire
from .schedule import Overlap as Overlap
from .state import State as State
from .store.base import NodeRecord as NodeRecord
from .store.base import ScheduleRecord as ScheduleRecord
from .store.base import Store as Store
from .store.memory import MemoryStore as MemoryStore
