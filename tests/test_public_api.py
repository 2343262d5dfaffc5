"""The public surface: what `import gojob` offers, and that errors share one root."""

from __future__ import annotations

import inspect

import gojob

EXPECTED = {
    "ArgumentError",
    "Backoff",
    "Clock",
    "Cron",
    "DecodeError",
    "DuplicateJob",
    "EncodeError",
    "Every",
    "GojobError",
    "HistoryRecord",
    "INFINITE",
    "Instance",
    "InstanceNotFound",
    "InvalidSchedule",
    "InvalidTransition",
    "Job",
    "JobModuleError",
    "JobSet",
    "LeaseLost",
    "Limits",
    "LogLevel",
    "LogRecord",
    "Manager",
    "ManagerClosed",
    "ManagerStatistics",
    "MemoryStore",
    "NodeRecord",
    "Misfire",
    "NonRetryable",
    "Overlap",
    "PayloadTooLarge",
    "Policy",
    "Retry",
    "ScheduleNotFound",
    "ScheduleRecord",
    "State",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SystemClock",
    "TrioWallClock",
    "UnknownJob",
    "UnsupportedStore",
    "open_manager",
}


def test_public_names() -> None:
    public = {n for n in vars(gojob) if not n.startswith("_") and n != "annotations"}
    modules = {n for n in public if inspect.ismodule(getattr(gojob, n))}
    assert public - modules == EXPECTED
    assert isinstance(gojob.__version__, str)


def test_every_error_derives_from_gojob_error() -> None:
    errors = [
        obj for obj in vars(gojob).values() if isinstance(obj, type) and issubclass(obj, Exception)
    ]
    signals = {gojob.Retry, gojob.NonRetryable}
    for err in errors:
        if err in signals:
            assert not issubclass(err, gojob.GojobError)
        else:
            assert issubclass(err, gojob.GojobError), err
