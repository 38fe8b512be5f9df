"""Finished steps hand their per-component results to the archive."""

from __future__ import annotations

from datetime import UTC, datetime

from nicoflow.api.taskstatus import (
    ComponentResult,
    ItemPhase,
    StageStatus,
    StepStatus,
    TaskStatus,
)
from nicoflow.domain.types import ComponentType
from nicoflow.engine.compaction import compact, to_archive

T = datetime(2026, 1, 1, tzinfo=UTC)


def result(
    cid: str, phase: ItemPhase, commanded: bool = True, error: str = "", name: str = ""
) -> ComponentResult:
    return ComponentResult(
        id=cid, name=name or f"n-{cid}", phase=phase, attempts=1, commanded=commanded, error=error
    )


def status() -> TaskStatus:
    done = StepStatus(
        component_type=ComponentType.COMPUTE,
        phase=ItemPhase.FAILED,
        total=3,
        succeeded=2,
        failed=1,
        finished_at=T,
        components=[
            result("a", ItemPhase.SUCCEEDED),
            result("b", ItemPhase.FAILED, error="BMC unreachable"),
            result("c", ItemPhase.SUCCEEDED, commanded=False),
        ],
    )
    running = StepStatus(
        component_type=ComponentType.NVSWITCH,
        phase=ItemPhase.RUNNING,
        total=1,
        components=[result("s", ItemPhase.RUNNING)],
    )
    return TaskStatus(
        stages=[
            StageStatus(number=1, phase=ItemPhase.FAILED, steps=[done]),
            StageStatus(number=2, phase=ItemPhase.RUNNING, steps=[running]),
        ]
    )


def test_finished_steps_are_archived_whole_and_keep_their_failures() -> None:
    st = status()
    records = to_archive(st)
    assert [(r.stage, r.component_type, r.id, r.phase) for r in records] == [
        (1, ComponentType.COMPUTE, "a", ItemPhase.SUCCEEDED),
        (1, ComponentType.COMPUTE, "b", ItemPhase.FAILED),
        (1, ComponentType.COMPUTE, "c", ItemPhase.SUCCEEDED),
    ]
    assert records[1].error == "BMC unreachable"
    assert records[0].finished_at == T

    compact(st)
    done, running = st.stages[0].steps[0], st.stages[1].steps[0]
    assert [c.id for c in done.components] == ["b"]
    assert done.archived
    assert st.commanded == ["n-a", "n-b"]  # c was never commanded
    assert (done.total, done.succeeded, done.failed) == (3, 2, 1)
    # the step under way keeps everything
    assert [c.id for c in running.components] == ["s"]
    assert not running.archived
    # archived once: nothing is offered again, and compacting again changes nothing
    assert to_archive(st) == []
    compact(st)
    assert st.commanded == ["n-a", "n-b"]


def test_a_compacted_status_is_much_smaller() -> None:
    big = TaskStatus(
        stages=[
            StageStatus(
                number=n,
                phase=ItemPhase.SUCCEEDED,
                steps=[
                    StepStatus(
                        component_type=ComponentType.COMPUTE,
                        phase=ItemPhase.SUCCEEDED,
                        total=18,
                        succeeded=18,
                        finished_at=T,
                        components=[
                            result(
                                f"fm100ht{n}{i:057d}", ItemPhase.SUCCEEDED, name=f"compute-{i:02d}"
                            )
                            for i in range(18)
                        ],
                    )
                ],
            )
            for n in range(1, 7)
        ]
    )
    before = len(big.model_dump_json(by_alias=True, exclude_defaults=True))
    compact(big)
    after = len(big.model_dump_json(by_alias=True, exclude_defaults=True))
    assert after * 10 < before, (before, after)
