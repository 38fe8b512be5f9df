"""`make dst SEEDS=N`: run N seeds (from START) over JOBS processes and print
the summary and every failing seed; exit 1 when one failed. Replay a seed
with `--seed S --verbose`."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import time
from collections import Counter

from dst.runner import Report, main_sync, summarize

CHUNK = 50


def chunks(start: int, stop: int) -> list[tuple[int, int]]:
    return [(s, min(s + CHUNK, stop)) for s in range(start, stop, CHUNK)]


def run_chunk(bounds: tuple[int, int]) -> list[Report]:
    """Seeds [start, stop) in this process (a pool worker)."""
    logging.disable(logging.CRITICAL)
    start, stop = bounds
    reports = main_sync(range(start, stop))
    for r in reports:
        if r.ok:
            r.trace = []  # keep what crosses the process boundary small
    return reports


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=max(1, multiprocessing.cpu_count()))
    ap.add_argument("--seed", type=int, help="run this one seed and print its trace")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if args.seed is not None:
        if not args.verbose:
            logging.disable(logging.CRITICAL)
        (report,) = main_sync([args.seed])
        print(report.explain(lines=10_000))
        return 0 if report.ok else 1
    began = time.monotonic()
    reports: list[Report] = []
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        for done in pool.imap_unordered(run_chunk, chunks(args.start, args.start + args.seeds)):
            reports.extend(done)
            print(f"... {len(reports)}/{args.seeds} seeds", file=sys.stderr, flush=True)
    reports.sort(key=lambda r: r.seed)
    print(summarize(reports))
    kinds = Counter(v.kind for r in reports for v in r.violations)
    if kinds:
        print("violations: " + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    for r in reports:
        if not r.ok:
            print(r.explain(lines=30))
    print(f"{time.monotonic() - began:.0f} s")
    return 0 if all(r.ok for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
