"""python -m benchmarks [--jobs N] [--rounds R]"""

from __future__ import annotations

import argparse

import trio

from . import memory


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trio.run(memory.run, args.jobs, args.rounds)


if __name__ == "__main__":
    main()
