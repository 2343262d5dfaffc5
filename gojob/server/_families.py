"""The metric families of :class:`gojob.server.metrics.Metrics`: plain state, and its
Prometheus text.

The state is plain Python (ints, floats, lists), updated on the Trio thread with no
lock. :func:`render` writes the text exposition format (0.0.4) straight from it: with
100 kinds (about 2,400 samples, 135 KB), 1-2 ms where ``prometheus_client`` takes
about 16 ms to collect and format its own metrics. :class:`FamiliesCollector` gives
the same families to a ``prometheus_client`` registry, for applications that expose
``Metrics.registry`` through their own endpoint.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

__all__ = ["DURATION_BUCKETS", "Families", "FamiliesCollector", "KindCounts", "render"]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
"""Upper bounds of ``go_job_duration_seconds`` (prometheus_client's defaults), then +Inf."""

_LE = [repr(float(b)) for b in DURATION_BUCKETS] + ["+Inf"]

# name, HELP; counters are named with their _total suffix.
REGISTERED = ("go_job_registered", "Number of registered jobs")
WORKERS = ("go_job_workers", "Number of workers")
QUEUED = ("go_job_queued", "Number of queued (Scheduled) jobs by kind")
EXECUTED = ("go_job_executed_total", "Number of job attempts executed")
STATE_COUNTERS = (
    ("go_job_completed_total", "Number of jobs completed"),
    ("go_job_terminated_total", "Number of jobs terminated"),
    ("go_job_canceled_total", "Number of jobs canceled"),
    ("go_job_timedout_total", "Number of jobs timed out"),
)
DURATION = ("go_job_duration_seconds", "Duration of job attempts by kind")
ABANDONED = ("gojob_abandoned_total", "Attempts abandoned by a dead node and reaped by this one")
UNSERVED = (
    "gojob_unserved_instances",
    "Queued instances of kinds no live node registers, by kind",
)


class KindCounts:
    """This node's counters and duration histogram of one kind."""

    __slots__ = ("abandoned", "buckets", "count", "executed", "label", "states", "sum")

    def __init__(self, kind: str) -> None:
        self.label = f'kind="{escape(kind)}"'
        self.executed = 0
        self.states = [0, 0, 0, 0]  # completed, terminated, canceled, timed out
        self.abandoned = 0
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)  # per bucket, not cumulative
        self.sum = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.sum += seconds
        self.count += 1


@dataclass
class Families:
    """Everything the endpoint exposes (see :mod:`gojob.server.metrics`)."""

    registered: int = 0
    workers: int = 0
    kinds: dict[str, KindCounts] = field(default_factory=dict)
    queued: dict[str, int] = field(default_factory=dict)
    unserved: dict[str, int] = field(default_factory=dict)
    _labels: dict[str, str] = field(default_factory=dict)

    def kind(self, kind: str) -> KindCounts:
        found = self.kinds.get(kind)
        if found is None:
            found = self.kinds[kind] = KindCounts(kind)
        return found

    def label(self, kind: str) -> str:
        found = self._labels.get(kind)
        if found is None:
            found = self._labels[kind] = f'kind="{escape(kind)}"'
        return found


def escape(value: str) -> str:
    """A label value in the text format: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    """A sample value: Go's float syntax (``1.0``, ``2.5e-06``, ``+Inf``, ``NaN``)."""
    if isinstance(value, int):
        return f"{value}.0" if abs(value) < 10**15 else repr(float(value))
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


def _header(lines: list[str], name_help: tuple[str, str], kind: str) -> None:
    name, help_text = name_help
    lines.append(f"# HELP {name} {help_text}\n# TYPE {name} {kind}\n")


def _gauge_by_kind(
    lines: list[str], families: Families, name_help: tuple[str, str], values: dict[str, int]
) -> None:
    _header(lines, name_help, "gauge")
    name = name_help[0]
    for kind, value in list(values.items()):
        lines.append(f"{name}{{{families.label(kind)}}} {_number(value)}\n")


def render(families: Families) -> bytes:
    """The text exposition of ``families`` (format 0.0.4)."""
    lines: list[str] = []
    _header(lines, REGISTERED, "gauge")
    lines.append(f"{REGISTERED[0]} {_number(families.registered)}\n")
    _header(lines, WORKERS, "gauge")
    lines.append(f"{WORKERS[0]} {_number(families.workers)}\n")
    _gauge_by_kind(lines, families, QUEUED, families.queued)
    kinds = list(families.kinds.values())
    _header(lines, EXECUTED, "counter")
    for k in kinds:
        lines.append(f"{EXECUTED[0]}{{{k.label}}} {_number(k.executed)}\n")
    for index, name_help in enumerate(STATE_COUNTERS):
        _header(lines, name_help, "counter")
        name = name_help[0]
        for k in kinds:
            lines.append(f"{name}{{{k.label}}} {_number(k.states[index])}\n")
    _header(lines, DURATION, "histogram")
    bucket, count, total = (DURATION[0] + suffix for suffix in ("_bucket", "_count", "_sum"))
    for k in kinds:
        cumulative = 0
        for le, n in zip(_LE, k.buckets, strict=True):
            cumulative += n
            lines.append(f'{bucket}{{{k.label},le="{le}"}} {_number(cumulative)}\n')
        lines.append(f"{count}{{{k.label}}} {_number(k.count)}\n")
        lines.append(f"{total}{{{k.label}}} {_number(k.sum)}\n")
    _header(lines, ABANDONED, "counter")
    for k in kinds:
        lines.append(f"{ABANDONED[0]}{{{k.label}}} {_number(k.abandoned)}\n")
    _gauge_by_kind(lines, families, UNSERVED, families.unserved)
    return "".join(lines).encode()


def _base(name: str) -> str:
    return name.removesuffix("_total")


class FamiliesCollector(Collector):
    """The same families for a ``prometheus_client`` registry (no ``_created`` samples)."""

    def __init__(self, families: Families) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        f = self._families
        yield GaugeMetricFamily(*REGISTERED, value=f.registered)
        yield GaugeMetricFamily(*WORKERS, value=f.workers)
        yield self._by_kind(GaugeMetricFamily(*QUEUED, labels=["kind"]), f.queued.items())
        kinds = list(f.kinds.items())
        executed = CounterMetricFamily(_base(EXECUTED[0]), EXECUTED[1], labels=["kind"])
        yield self._by_kind(executed, ((kind, k.executed) for kind, k in kinds))
        for index, (name, help_text) in enumerate(STATE_COUNTERS):
            family = CounterMetricFamily(_base(name), help_text, labels=["kind"])
            yield self._by_kind(family, ((kind, k.states[index]) for kind, k in kinds))
        duration = HistogramMetricFamily(*DURATION, labels=["kind"])
        for kind, k in kinds:
            cumulative, buckets = 0, []
            for le, n in zip(_LE, k.buckets, strict=True):
                cumulative += n
                buckets.append((le, float(cumulative)))
            duration.add_metric([kind], buckets, k.sum)
        yield duration
        abandoned = CounterMetricFamily(_base(ABANDONED[0]), ABANDONED[1], labels=["kind"])
        yield self._by_kind(abandoned, ((kind, k.abandoned) for kind, k in kinds))
        yield self._by_kind(GaugeMetricFamily(*UNSERVED, labels=["kind"]), f.unserved.items())

    @staticmethod
    def _by_kind(family: Metric, values: Iterable[tuple[str, float]]) -> Metric:
        for kind, value in list(values):
            family.add_metric([kind], value)  # type: ignore[attr-defined]
        return family
