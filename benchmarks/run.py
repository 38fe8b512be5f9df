"""`make bench`: start a real control plane, PostgreSQL, the Core simulator and
the operator, run the scenarios, print one JSON line each and write
docs/benchmarks.md. Everything started here is stopped and its temp dir removed.

    .venv/bin/python -m benchmarks.run                 # the full scales (over an hour)
    .venv/bin/python -m benchmarks.run --scales 20 --latency-scales 20 --memory-racks 20 \
        --memory-tasks 20,40 --api-racks 20 --doc /tmp/bench.md     # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks import api, machine, report, scenarios
from benchmarks.stack import BenchStack
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.postgres import Postgres
from nicoflow.devstack.processes import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
POWER_LATENCY = 3.0


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks.run", description=__doc__.split("\n")[0])
    p.add_argument("--scales", type=_ints, default=[100, 500, 1000], help="S1 rack counts")
    p.add_argument("--latency-scales", type=_ints, default=[100, 1000], help="S2 rack counts")
    p.add_argument("--memory-tasks", type=_ints, default=[1000, 5000], help="S5 Task counts")
    p.add_argument(
        "--memory-racks", type=int, default=1000, help="S5 racks (Task counts: multiples of it)"
    )
    p.add_argument("--api-racks", type=int, default=1000, help="S3/S4 inventory size")
    p.add_argument("--api-clients", type=int, default=32)
    p.add_argument("--api-requests", type=int, default=4000, help="S3 requests per query")
    p.add_argument("--only", default="S1,S2,S3,S4,S5", help="scenarios to run")
    p.add_argument("--doc", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md")
    p.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    p.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="profile each operator process with pyinstrument; sessions go to this directory "
        "(figures taken under the profiler are not comparable)",
    )
    p.add_argument(
        "--merge",
        type=Path,
        action="append",
        default=[],
        help="JSON lines of an earlier run to put in the doc before this run's (repeatable)",
    )
    p.add_argument("--note", action="append", default=[], help="a line for the doc's notes")
    return p.parse_args(argv)


class Runner:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.only = {s.strip().upper() for s in args.only.split(",")}
        self.results: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def emit(self, result: dict[str, Any]) -> None:
        self.results.append(result)
        print(json.dumps(result, sort_keys=False), flush=True)

    def attempt(self, scenario: str, fn: Callable[[], dict[str, Any]], **ctx: Any) -> None:
        t0 = time.monotonic()
        try:
            result = fn()
        except Exception as exc:  # one broken scenario must not hide the others
            traceback.print_exc(file=sys.stderr)
            result = {"scenario": scenario, **ctx, "error": f"{type(exc).__name__}: {exc}"[:600]}
        print(f"# {scenario} {ctx} took {time.monotonic() - t0:.0f}s", file=sys.stderr)
        self.emit(result)

    def stack(
        self, cp: ControlPlane, pg: Postgres, name: str, racks: int, groups: list[int], **kw: Any
    ) -> BenchStack:
        port = free_port()
        base = cp.workdir.parent
        stack = BenchStack(
            cp,
            pg.create_database(name),
            base / name,
            racks=racks,
            seed=kw.pop("seed"),
            groups=tuple(groups),
            metrics_port=port,
            operator_args=("--metrics-port", str(port), "--inventory-interval", "0"),
            profile=(self.args.profile / f"operator-{name}.pyisession")
            if self.args.profile
            else None,
            **kw,
        )
        t0 = time.monotonic()
        try:
            stack.start()
        except BaseException:
            stack.stop()  # what did start (simulator, operator) must not outlive us
            raise
        print(f"# stack {name}: {racks} racks up in {time.monotonic() - t0:.0f}s", file=sys.stderr)
        return stack

    def run(self, base: Path) -> None:
        a = self.args
        with Postgres(base / "pg") as pg, ControlPlane(base / "k8s") as cp:
            want_a = {"S1", "S3", "S4", "S5"} & self.only
            if want_a:
                mem_group = a.memory_racks if "S5" in self.only else 0
                sizes = [*a.scales, mem_group, a.api_racks if want_a & {"S3", "S4"} else 0]
                racks = max(sizes)
                groups = sorted({*a.scales, mem_group, racks} - {0})
                stack = self.stack(
                    cp, pg, "bench_a", racks, groups, seed=1, sim_args=("--latency-power", "0s")
                )
                try:
                    self.stack_a(cp, stack, mem_group)
                finally:
                    stack.stop()
                    self.notes += stack.notes
            if "S2" in self.only and a.latency_scales:
                racks = max(a.latency_scales)
                sim = ("--latency-power", f"{POWER_LATENCY:g}s", "--latency-force-power", "0s")
                stack = self.stack(cp, pg, "bench_b", racks, a.latency_scales, seed=2, sim_args=sim)
                try:
                    for n in a.latency_scales:
                        self.attempt(
                            "S2-overhead",
                            partial(scenarios.overhead, stack, cp, n, POWER_LATENCY),
                            racks=n,
                        )
                finally:
                    stack.stop()
                    self.notes += stack.notes

    def stack_a(self, cp: ControlPlane, stack: BenchStack, mem_group: int) -> None:
        a = self.args
        if "S4" in self.only and len(stack.rack_bodies) >= a.api_racks:
            self.emit(scenarios.import_racks(stack))
        if "S1" in self.only:
            for n in a.scales:
                run = partial(scenarios.throughput, stack, cp, n)
                self.attempt("S1-throughput", run, racks=n)
        if {"S3", "S4"} & self.only:
            for result in api.run_api_scenarios(stack, self.args, self.only):
                self.emit(result)
        if "S5" in self.only and mem_group:
            counts = tuple(a.memory_tasks)
            self.attempt("S5-memory", lambda: scenarios.memory(stack, mem_group, counts))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine.describe()
    print(f"# machine: {json.dumps(info)}", file=sys.stderr)
    # Short path: PostgreSQL's unix socket path must stay under ~100 bytes.
    base = Path(tempfile.mkdtemp(prefix="nfb-"))
    os.chmod(base, 0o755)
    runner = Runner(args)
    runner.notes += args.note
    for earlier in args.merge:
        merged = [json.loads(line) for line in earlier.read_text().splitlines() if line]
        runner.results += merged
        runner.notes.append(f"{len(merged)} results merged from an earlier run ({earlier.name})")
    t0 = time.monotonic()
    try:
        runner.run(base)
    except Exception as exc:  # still write what was measured
        traceback.print_exc(file=sys.stderr)
        runner.notes.append(f"run aborted: {type(exc).__name__}: {exc}"[:600])
    finally:
        if args.keep:
            print(f"# kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    took = time.monotonic() - t0
    info["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    command = "make bench" if argv is None and len(sys.argv) == 1 else _command(sys.argv)
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text(report.render(runner.results, info, command, took, runner.notes))
    print(f"# wrote {args.doc} after {took:.0f}s", file=sys.stderr)
    failed = runner.notes and any(n.startswith("run aborted") for n in runner.notes)
    return 1 if failed or any("error" in r for r in runner.results) else 0


def _command(argv: list[str]) -> str:
    return ".venv/bin/python -m benchmarks.run " + " ".join(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
