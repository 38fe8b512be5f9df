"""The fixed corpus: seeds 0..DST_SEEDS-1 (1,000 by default), each a scenario
drawn by dst.scenario and checked by dst.invariants. A failing seed is named
with its scenario and the end of its trace; replay it with
`cd tests && python -m dst.run --seed S`."""

from __future__ import annotations

import multiprocessing
import os

from dst.run import chunks, run_chunk
from dst.runner import Report, summarize

SEEDS = int(os.environ.get("DST_SEEDS", "1000"))


def test_every_seed_of_the_corpus_keeps_the_invariants() -> None:
    reports: list[Report] = []
    # spawned workers: no gRPC state is shared with this process by fork
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(min(2, os.cpu_count() or 1)) as pool:
        for done in pool.imap_unordered(run_chunk, chunks(0, SEEDS)):
            reports.extend(done)
    reports.sort(key=lambda r: r.seed)
    assert len(reports) == SEEDS
    failing = [r for r in reports if not r.ok]
    assert not failing, (
        summarize(reports) + "\n\n" + "\n\n".join(r.explain(lines=40) for r in failing[:5])
    )
    # the corpus must reach the faults it is about, or it proves little
    kinds = set().union(*(r.scenario.fault_kinds for r in reports))
    for needed in (
        "write-lost-reply-UNAVAILABLE",
        "write-lost-reply-DEADLINE_EXCEEDED",
        "call-crash",
        "persist-crash",
        "command-lag",
        "cancel",
        "failing-firmware",
    ):
        assert needed in kinds, (needed, sorted(kinds))
    assert sum(r.crashes for r in reports) > SEEDS // 4
