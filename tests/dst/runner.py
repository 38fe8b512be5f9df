"""Run seeds and report: one seed is one scenario, run once and checked."""

from __future__ import annotations

import asyncio
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from dst.harness import Run, Stuck
from dst.invariants import Violation
from dst.scenario import Scenario, draw


@dataclass
class Report:
    seed: int
    scenario: Scenario
    phase: str = ""
    violations: list[Violation] = field(default_factory=list)
    error: str = ""
    crashes: int = 0
    calls: int = 0
    trace: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations and not self.error

    def explain(self, lines: int = 80) -> str:
        head = [f"seed {self.seed}: {self.scenario.describe()}", f"phase: {self.phase}"]
        head += [f"  VIOLATION {v}" for v in self.violations]
        if self.error:
            head.append(f"  ERROR {self.error}")
        return "\n".join([*head, "  trace (last lines):", *self.trace[-lines:]])


async def run_seed(seed: int, scenario: Scenario | None = None) -> Report:
    scenario = scenario or draw(seed)
    run = Run(scenario)
    report = Report(seed, scenario)
    try:
        await run.execute_and_check(report)
    except Stuck as exc:
        report.violations.append(Violation("not-finished", str(exc)))
    except Exception:
        report.error = traceback.format_exc(limit=8)
    report.crashes = len(run.trace.crashes)
    report.calls = run.trace.calls
    report.trace = run.trace.lines
    if run.final is not None:
        report.phase = run.final.phase.value
    return report


async def run_seeds(seeds: Iterable[int]) -> list[Report]:
    return [await run_seed(s) for s in seeds]


def summarize(reports: list[Report]) -> str:
    phases = Counter(r.phase or "none" for r in reports)
    ops = Counter(r.scenario.operation.value for r in reports)
    kinds: Counter[str] = Counter()
    for r in reports:
        kinds.update(r.scenario.fault_kinds)
    bad = [r.seed for r in reports if not r.ok]
    lines = [
        f"{len(reports)} seeds, {len(bad)} failing" + (f": {bad[:50]}" if bad else ""),
        "phases: " + ", ".join(f"{k} {v}" for k, v in sorted(phases.items())),
        "operations: " + ", ".join(f"{k} {v}" for k, v in sorted(ops.items())),
        "crashes: " + str(sum(r.crashes for r in reports)),
        "Core calls: " + str(sum(r.calls for r in reports)),
        "fault mix: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())),
    ]
    return "\n".join(lines)


def main_sync(seeds: Iterable[int]) -> list[Report]:
    return asyncio.run(run_seeds(seeds))
