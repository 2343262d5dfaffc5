"""python -m benchmarks [--store memory|postgres|etcd|redis|server] [--jobs N] [--rounds R]
[--url URL]

``--store stores`` runs the PostgreSQL, Redis and etcd suites in one run;
``--store server`` measures the gRPC server (``--jobs``: ScheduleJob calls per run)."""

from __future__ import annotations

import argparse
import importlib

import trio

# store -> (module, default jobs, default rounds, takes a URL)
SUITES: dict[str, tuple[str, int, int, bool]] = {
    "memory": ("memory", 100_000, 5, False),
    "postgres": ("postgres", 10_000, 3, True),
    "etcd": ("etcd", 10_000, 3, True),
    "redis": ("redis", 10_000, 3, True),
    "server": ("server", 4_000, 5, True),
}
STORES = ("postgres", "redis", "etcd")
"""``--store stores``: these suites one after the other in one run (default URLs)."""


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--store", choices=[*SUITES, "stores"], default="memory")
    parser.add_argument(
        "--jobs",
        type=int,
        help="jobs per run (memory 100,000; server 4,000 calls; the others 10,000)",
    )
    parser.add_argument("--rounds", type=int, help="paired rounds (memory 5; the others 3)")
    parser.add_argument(
        "--url",
        help="postgres: the database (default GOJOB_POSTGRES_URL); "
        "etcd: etcd://host:port (default GOJOB_ETCD_URL, else etcd://127.0.0.1:2379); "
        "redis: redis://host:port/db (default GOJOB_REDIS_URL, else redis://127.0.0.1:6379/0)",
    )
    args = parser.parse_args()
    if args.store == "stores":
        if args.url:
            parser.error("--store stores uses each store's default URL (GOJOB_*_URL)")
        for store in STORES:
            _run(store, args.jobs, args.rounds, None)
            print()
    else:
        _run(args.store, args.jobs, args.rounds, args.url)


def _run(store: str, jobs_arg: int | None, rounds_arg: int | None, url: str | None) -> None:
    name, jobs, rounds, takes_url = SUITES[store]
    suite = importlib.import_module(f".{name}", __package__)
    if takes_url:
        trio.run(suite.run, jobs_arg or jobs, rounds_arg or rounds, url or suite.DEFAULT_URL)
    else:
        trio.run(suite.run, jobs_arg or jobs, rounds_arg or rounds)


if __name__ == "__main__":
    main()
