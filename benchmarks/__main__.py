"""python -m benchmarks [--store memory|postgres] [--jobs N] [--rounds R] [--url URL]"""

from __future__ import annotations

import argparse

import trio


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--store", choices=["memory", "postgres"], default="memory")
    parser.add_argument("--jobs", type=int, help="jobs per run (memory 100,000; postgres 10,000)")
    parser.add_argument("--rounds", type=int, help="paired rounds (memory 5; postgres 3)")
    parser.add_argument("--url", help="postgres: the database (default GOJOB_POSTGRES_URL)")
    args = parser.parse_args()
    if args.store == "postgres":
        from . import postgres

        trio.run(
            postgres.run, args.jobs or 10_000, args.rounds or 3, args.url or postgres.DEFAULT_URL
        )
    else:
        from . import memory

        trio.run(memory.run, args.jobs or 100_000, args.rounds or 5)


if __name__ == "__main__":
    main()
