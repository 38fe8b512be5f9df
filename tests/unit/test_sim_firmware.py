from __future__ import annotations

from nicoflow.simulator.firmware import FirmwareJob, FirmwareTimings, JobState, matches
from nicoflow.simulator.ingestion import Ingestion, IngestionState


def job(failure: str | None = None, stuck: bool = False) -> FirmwareJob:
    return FirmwareJob(
        component_id="c1",
        targets={"bmc": "2.0"},
        started_at=100.0,
        timings=FirmwareTimings(total=10.0),
        failure=failure,
        stuck=stuck,
    )


def test_job_moves_through_its_phases() -> None:
    j = job()
    assert j.state(100.0) == JobState.QUEUED
    assert j.state(100.99) == JobState.QUEUED
    assert j.state(101.0) == JobState.IN_PROGRESS
    assert j.state(107.99) == JobState.IN_PROGRESS
    assert j.state(108.0) == JobState.VERIFYING
    assert j.state(110.0) == JobState.COMPLETED
    assert j.changed_at(109.0) == 108.0
    assert j.changed_at(500.0) == 110.0


def test_failing_job_fails_after_installation() -> None:
    j = job(failure="flash error")
    assert j.state(105.0) == JobState.IN_PROGRESS
    assert j.state(108.0) == JobState.FAILED
    assert not j.state(1e9).active


def test_stuck_job_never_finishes_installing() -> None:
    j = job(stuck=True)
    assert j.state(1e9) == JobState.IN_PROGRESS


def test_matches_is_a_subset_check() -> None:
    assert matches({"bmc": "1", "bios": "2"}, {"bmc": "1"})
    assert not matches({"bmc": "1"}, {"bmc": "1", "bios": "2"})
    assert not matches({"bmc": "0"}, {"bmc": "1"})


def test_ingestion_waits_for_permission_when_paused() -> None:
    ing = Ingestion(created=False, paused=True, latency=5.0)
    assert ing.state(0.0) == IngestionState.NOT_DISCOVERED
    ing.discover(10.0)
    assert ing.state(9.0) == IngestionState.NOT_DISCOVERED
    assert ing.state(10.0) == IngestionState.WAITING_FOR_INGESTION
    assert ing.state(1000.0) == IngestionState.WAITING_FOR_INGESTION
    ing.allow(1000.0)
    assert ing.state(1004.0) == IngestionState.MACHINE_NOT_CREATED
    assert ing.state(1005.0) == IngestionState.MACHINE_CREATED


def test_ingestion_without_pause_follows_discovery() -> None:
    ing = Ingestion(created=False, paused=False, latency=2.0)
    ing.discover(1.0)
    assert ing.state(2.0) == IngestionState.MACHINE_NOT_CREATED
    assert ing.state(3.0) == IngestionState.MACHINE_CREATED


def test_permission_before_discovery_counts_from_discovery() -> None:
    ing = Ingestion(created=False, paused=True, latency=1.0)
    ing.allow(0.0)
    assert ing.state(5.0) == IngestionState.NOT_DISCOVERED
    ing.discover(5.0)
    assert ing.state(5.5) == IngestionState.MACHINE_NOT_CREATED
    assert ing.state(6.0) == IngestionState.MACHINE_CREATED
