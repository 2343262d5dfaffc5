"""Paired rounds and medians: these machines are noisy, so every figure is compared with
a baseline measured in the same process, alternating order round by round."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio

__all__ = ["Measurement", "Result", "paired_rounds", "percentile", "report"]


@dataclass(frozen=True, slots=True)
class Measurement:
    """One run: how many operations, wall seconds and CPU seconds."""

    ops: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.ops / self.wall if self.wall else float("inf")

    @property
    def cpu_us_per_op(self) -> float:
        return self.cpu / self.ops * 1e6 if self.ops else 0.0


@dataclass
class Result:
    name: str
    runs: list[Measurement] = field(default_factory=list)

    @property
    def median_rate(self) -> float:
        return statistics.median(m.rate for m in self.runs)

    @property
    def median_cpu(self) -> float:
        return statistics.median(m.cpu_us_per_op for m in self.runs)


async def measure(ops: int, body: Callable[[], Awaitable[None]]) -> Measurement:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await body()
    return Measurement(ops, time.perf_counter() - wall0, time.process_time() - cpu0)


async def paired_rounds(
    rounds: int, contenders: dict[str, Callable[[], Awaitable[Measurement]]]
) -> dict[str, Result]:
    """Run every contender once per round, rotating the order each round."""
    results = {name: Result(name) for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            results[name].runs.append(await contenders[name]())
            await trio.lowlevel.checkpoint()
    return results


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[k]


def report(title: str, results: dict[str, Result], baseline: str) -> None:
    base = results[baseline]
    print(f"\n## {title}")
    print(f"{'contender':<34} {'median ops/s':>13} {'CPU µs/op':>10} {'x baseline':>11}  runs")
    for name, res in results.items():
        ratios = [m.rate / b.rate for m, b in zip(res.runs, base.runs, strict=True)]
        runs = ", ".join(f"{m.rate:,.0f}" for m in res.runs)
        print(
            f"{name:<34} {res.median_rate:>13,.0f} {res.median_cpu:>10.1f} "
            f"{statistics.median(ratios):>10.2f}x  [{runs}]"
        )
