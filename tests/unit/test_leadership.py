"""Leader-election decisions on a Lease: when a candidate may take it, renew it
or must wait, how it counts time without trusting other nodes' clocks, and the
writes it makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from nicoflow.kube import leadership as le

ME = "op-a"
OTHER = "op-b"
T0 = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
TIMING = le.Timing(lease_duration=15, renew_deadline=10, retry_period=2)
CANDIDATE = le.Candidate("nico-flow", "nico-flow-operator", ME, TIMING)


def lease(
    holder: str | None = OTHER,
    *,
    duration: int | None = 15,
    renew: datetime | None = T0,
    acquire: datetime | None = T0,
    transitions: int | None = 3,
    rv: str = "100",
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if holder is not None:
        spec["holderIdentity"] = holder
    if duration is not None:
        spec["leaseDurationSeconds"] = duration
    if renew is not None:
        spec["renewTime"] = le.micro_time(renew)
    if acquire is not None:
        spec["acquireTime"] = le.micro_time(acquire)
    if transitions is not None:
        spec["leaseTransitions"] = transitions
    return {"metadata": {"name": "nico-flow-operator", "resourceVersion": rv}, "spec": spec}


def verdict(body: dict[str, Any], seen_at: float, now: float, default: int = 15) -> le.Verdict:
    obs = le.Observation(le.LeaseRecord.from_body(body), seen_at)
    return le.judge(obs, ME, now, default)


TAKE, RENEW, WAIT = le.Verdict.TAKE, le.Verdict.RENEW, le.Verdict.WAIT


@pytest.mark.parametrize(
    ("body", "seen_at", "now", "expected"),
    [
        pytest.param(lease(holder=""), 100.0, 100.0, TAKE, id="released: empty holder"),
        pytest.param(lease(holder=None), 100.0, 100.0, TAKE, id="no holder field"),
        pytest.param({"metadata": {"resourceVersion": "1"}}, 100.0, 100.0, TAKE, id="no spec"),
        pytest.param(lease(holder=ME), 100.0, 100.0, RENEW, id="ours"),
        pytest.param(
            lease(holder=ME, renew=T0 - timedelta(hours=1)), 0.0, 900.0, RENEW, id="ours, stale"
        ),
        pytest.param(lease(), 100.0, 100.0, WAIT, id="other, just seen"),
        pytest.param(lease(), 100.0, 114.999, WAIT, id="other, a moment before expiry"),
        pytest.param(lease(), 100.0, 115.0, TAKE, id="other, unchanged for a lease duration"),
        pytest.param(lease(), 100.0, 500.0, TAKE, id="other, long expired"),
        pytest.param(lease(duration=5), 100.0, 105.0, TAKE, id="record's own duration counts"),
        pytest.param(lease(duration=5), 100.0, 104.9, WAIT, id="record's own duration, not yet"),
        pytest.param(lease(duration=None), 100.0, 114.0, WAIT, id="no duration: ours applies"),
        pytest.param(lease(duration=None), 100.0, 115.0, TAKE, id="no duration: ours expires"),
        pytest.param(lease(duration=0), 100.0, 110.0, WAIT, id="invalid duration: ours applies"),
        pytest.param(
            lease(renew=T0 - timedelta(hours=1)),
            100.0,
            101.0,
            WAIT,
            id="clock skew: holder's clock behind, renewTime looks old, but it just changed",
        ),
        pytest.param(
            lease(renew=T0 + timedelta(hours=1)),
            100.0,
            115.0,
            TAKE,
            id="clock skew: holder's clock ahead cannot hold an unrenewed lease",
        ),
        pytest.param(
            lease(renew=None, acquire=None, transitions=None),
            100.0,
            115.0,
            TAKE,
            id="no times at all: still expires by observation",
        ),
    ],
)
def test_judge(body: dict[str, Any], seen_at: float, now: float, expected: le.Verdict) -> None:
    assert verdict(body, seen_at, now) is expected


def test_observation_time_is_kept_while_the_record_is_unchanged() -> None:
    record = le.LeaseRecord.from_body(lease())
    first = le.observe(None, record, 10.0)
    assert first.seen_at == 10.0
    assert le.observe(first, le.LeaseRecord.from_body(lease()), 20.0).seen_at == 10.0
    renewed = le.LeaseRecord.from_body(lease(renew=T0 + timedelta(seconds=2), rv="101"))
    assert le.observe(first, renewed, 20.0).seen_at == 20.0
    # any write changes the resourceVersion, even one that leaves the spec alone
    relabelled = le.LeaseRecord.from_body(lease(rv="102"))
    assert le.observe(first, relabelled, 21.0).seen_at == 21.0


def test_a_holder_that_keeps_renewing_never_expires_and_one_that_stops_does() -> None:
    seen: le.Observation | None = None
    now = 0.0
    for i in range(40):  # 80 s of renewals every 2 s, far longer than the lease
        rec = le.LeaseRecord.from_body(lease(renew=T0 + timedelta(seconds=2 * i), rv=str(i)))
        seen = le.observe(seen, rec, now)
        assert le.judge(seen, ME, now, 15) is WAIT
        now += 2.0
    assert seen is not None
    last_change = seen.seen_at
    waited = 0
    while now < last_change + 15:  # the holder died: the record stays as it was
        seen = le.observe(seen, seen.record, now)
        assert le.judge(seen, ME, now, 15) is WAIT
        now += 2.0
        waited += 1
    assert waited == 7
    seen = le.observe(seen, seen.record, last_change + 15)
    assert le.judge(seen, ME, last_change + 15, 15) is TAKE
    assert le.expires_in(seen, last_change + 5, 15) == 10.0
    assert le.expires_in(seen, last_change + 50, 15) == 0.0


def test_record_from_a_full_body() -> None:
    rec = le.LeaseRecord.from_body(lease(transitions=7, duration=20, rv="42"))
    assert rec == le.LeaseRecord(
        holder=OTHER,
        duration=20,
        acquire_time="2025-03-01T12:00:00.000000Z",
        renew_time="2025-03-01T12:00:00.000000Z",
        transitions=7,
        resource_version="42",
    )


def test_record_from_an_empty_body() -> None:
    assert le.LeaseRecord.from_body({}) == le.LeaseRecord("", None, None, None, 0, "")


def test_taking_from_another_holder_counts_a_transition_and_is_conditional() -> None:
    now = T0 + timedelta(seconds=30)
    body = lease(transitions=3)
    body["metadata"]["labels"] = {"keep": "me"}
    taken = le.claimed(body, CANDIDATE, now)
    # the whole object goes back with the version it was read at
    assert taken["metadata"] == {
        "name": "nico-flow-operator",
        "resourceVersion": "100",
        "labels": {"keep": "me"},
    }
    assert taken["spec"] == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": "2025-03-01T12:00:30.000000Z",
        "renewTime": "2025-03-01T12:00:30.000000Z",
        "leaseTransitions": 4,
    }
    assert body["spec"]["holderIdentity"] == OTHER, "the input is left alone"


def test_taking_a_released_lease_counts_a_transition() -> None:
    body = lease(holder=None, transitions=None)
    assert le.claimed(body, CANDIDATE, T0)["spec"]["leaseTransitions"] == 1


def test_renewing_keeps_acquire_time_and_transitions() -> None:
    now = T0 + timedelta(seconds=4)
    renewed = le.claimed(lease(holder=ME, transitions=3, rv="7"), CANDIDATE, now)
    assert renewed["metadata"]["resourceVersion"] == "7"
    assert renewed["spec"]["acquireTime"] == "2025-03-01T12:00:00.000000Z"
    assert renewed["spec"]["renewTime"] == "2025-03-01T12:00:04.000000Z"
    assert renewed["spec"]["leaseTransitions"] == 3


def test_renewing_a_lease_without_acquire_time_sets_it() -> None:
    renewed = le.claimed(lease(holder=ME, acquire=None), CANDIDATE, T0)
    assert renewed["spec"]["acquireTime"] == le.micro_time(T0)


def test_release_clears_the_holder_for_a_successor() -> None:
    given_up = le.released(lease(holder=ME, rv="9", transitions=5), T0 + timedelta(seconds=1))
    assert given_up["metadata"]["resourceVersion"] == "9"
    assert given_up["spec"] == {
        "leaseDurationSeconds": 1,
        "acquireTime": "2025-03-01T12:00:00.000000Z",
        "renewTime": "2025-03-01T12:00:01.000000Z",
        "leaseTransitions": 5,
    }
    assert verdict(given_up, 0.0, 0.0) is TAKE


def test_new_lease_body() -> None:
    body = le.new_lease(CANDIDATE, T0)
    assert body["apiVersion"] == "coordination.k8s.io/v1"
    assert body["kind"] == "Lease"
    assert body["metadata"] == {"name": "nico-flow-operator", "namespace": "nico-flow"}
    assert body["spec"]["holderIdentity"] == ME
    assert body["spec"]["leaseTransitions"] == 0
    assert body["spec"]["acquireTime"] == body["spec"]["renewTime"]


def test_micro_time_is_utc_with_microseconds() -> None:
    east = timezone(timedelta(hours=2))
    assert le.micro_time(datetime(2025, 3, 1, 14, 0, 0, 123, tzinfo=east)) == (
        "2025-03-01T12:00:00.000123Z"
    )


@pytest.mark.parametrize(
    ("lease_duration", "renew_deadline", "retry_period"),
    [(15, 15, 2), (15, 20, 2), (15, 10, 10), (15, 10, 0), (15, 10, -1)],
)
def test_timing_refuses_orders_that_could_let_two_lead(
    lease_duration: int, renew_deadline: float, retry_period: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        le.Timing(lease_duration, renew_deadline, retry_period)


def test_stop_grace_is_the_gap_between_renew_deadline_and_expiry() -> None:
    assert le.Timing().stop_grace == 5.0
    assert le.Timing(4, 3.5, 1).stop_grace == 1.0


def test_candidate_from_pod_environment() -> None:
    env = {"POD_NAMESPACE": "flow-system", "POD_NAME": "op-7d9f-x2"}
    c = le.resolve_candidate(namespace=None, name=None, identity=None, timing=TIMING, env=env)
    assert (c.namespace, c.name, c.identity) == ("flow-system", "nico-flow-operator", "op-7d9f-x2")
    assert le.leader_election_default(env) is True


def test_candidate_options_win_over_environment() -> None:
    env = {"POD_NAMESPACE": "flow-system", "POD_NAME": "op-7d9f-x2"}
    c = le.resolve_candidate(
        namespace="elsewhere", name="my-lease", identity="me", timing=TIMING, env=env
    )
    assert (c.namespace, c.name, c.identity) == ("elsewhere", "my-lease", "me")


def test_candidate_outside_a_pod_is_host_and_process() -> None:
    c = le.resolve_candidate(
        namespace=None, name=None, identity=None, timing=TIMING, env={}, hostname="dev1", pid=42
    )
    assert (c.namespace, c.identity) == ("nico-flow", "dev1_42")
    assert le.leader_election_default({}) is False
    assert le.leader_election_default({"POD_NAMESPACE": ""}) is False
