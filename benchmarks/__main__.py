"""`make bench`: every benchmark, on one local cluster, tables printed and JSON written."""

from __future__ import annotations

import argparse
import time

from benchmarks import bookkeeping, lifecycle, serving, study_overhead
from benchmarks.common import console, local_stack, write


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmarks run")
    args = parser.parse_args()
    began = time.monotonic()
    with local_stack() as stack:
        if args.smoke:
            results = {
                "study_overhead": study_overhead.run(stack, trials=2, epochs=1, rounds=1),
                "bookkeeping": bookkeeping.run(stack, trials=4, rounds=1, suggestion_points=[5]),
                "serving": serving.run(stack, requests=5, rounds=1, seconds=0.3, concurrency=[1, 2]),
                "lifecycle": lifecycle.run(stack, rounds=1, steady_s=0.5, seconds=0.5),
            }
        else:
            results = {
                "study_overhead": study_overhead.run(stack, trials=64, epochs=20, rounds=args.rounds),
                "bookkeeping": bookkeeping.run(
                    stack, trials=500, rounds=args.rounds, suggestion_points=[100, 300, 500]
                ),
                "serving": serving.run(stack, requests=300, rounds=args.rounds, seconds=2.0, concurrency=[1, 8, 32]),
                "lifecycle": lifecycle.run(stack, rounds=args.rounds, steady_s=5.0, seconds=5.0),
            }
            for name, result in results.items():
                write(name, result)
    console.print(f"benchmarks took {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
