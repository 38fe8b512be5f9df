"""Leader election over a coordination.k8s.io/v1 Lease: the decisions, without I/O.

A candidate reads the Lease, remembers when it last saw the record change (on
its own monotonic clock) and takes the Lease when it is free, ours, or unchanged
for a whole lease duration. Times written by another holder are never compared
with our clock: nodes' clocks drift, the moment we observed a change does not.
Writes replace the whole Lease with the resourceVersion they were based on, so
two candidates that both decide to take it cannot both succeed."""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Json = dict[str, Any]

DEFAULT_NAME = "nico-flow-operator"
DEFAULT_NAMESPACE = "nico-flow"


@dataclass(frozen=True)
class Timing:
    """How long a Lease lasts without renewal, how long the leader keeps trying
    to renew before it gives up, and how often anyone tries."""

    lease_duration: int = 15
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if self.retry_period <= 0:
            raise ValueError("the retry period must be positive")
        if self.renew_deadline <= self.retry_period:
            raise ValueError("the renew deadline must be longer than the retry period")
        if self.lease_duration <= self.renew_deadline:
            # the leader must know it lost before anyone else may take over
            raise ValueError("the lease duration must be longer than the renew deadline")

    @property
    def stop_grace(self) -> float:
        """Seconds a leader that lost its Lease has to stop: a successor may
        take over once a lease duration has passed since the last renewal, and
        the leader noticed the loss a renew deadline after it."""
        return max(1.0, self.lease_duration - self.renew_deadline)


@dataclass(frozen=True)
class Candidate:
    """Who competes for which Lease."""

    namespace: str
    name: str
    identity: str
    timing: Timing = Timing()


def resolve_candidate(
    *,
    namespace: str | None,
    name: str | None,
    identity: str | None,
    timing: Timing,
    env: Mapping[str, str],
    hostname: str | None = None,
    pid: int | None = None,
) -> Candidate:
    """Fill what was not given from the Pod's downward-API variables. Outside
    a Pod the identity is host and process: two operators started on one
    machine must not both believe they hold the Lease."""
    ns = namespace or env.get("POD_NAMESPACE") or DEFAULT_NAMESPACE
    who = identity or env.get("POD_NAME")
    if not who:
        host = hostname if hostname is not None else socket.gethostname()
        who = f"{host}_{pid if pid is not None else os.getpid()}"
    return Candidate(ns, name or DEFAULT_NAME, who, timing)


def leader_election_default(env: Mapping[str, str]) -> bool:
    """On in a cluster (the chart sets POD_NAMESPACE), off for local runs."""
    return bool(env.get("POD_NAMESPACE"))


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease fields leader election reads. `holder` is "" when free."""

    holder: str
    duration: int | None
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    resource_version: str

    @classmethod
    def from_body(cls, body: Json) -> LeaseRecord:
        spec = body.get("spec") or {}
        duration = spec.get("leaseDurationSeconds")
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=int(duration) if isinstance(duration, int) and duration > 0 else None,
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((body.get("metadata") or {}).get("resourceVersion") or ""),
        )


@dataclass(frozen=True)
class Observation:
    """A record and the local monotonic time we first saw it."""

    record: LeaseRecord
    seen_at: float


def observe(previous: Observation | None, record: LeaseRecord, now: float) -> Observation:
    """Keep the old observation time while the record is unchanged: a holder
    that renews rewrites it, a dead one does not."""
    if previous is not None and previous.record == record:
        return previous
    return Observation(record, now)


class Verdict(enum.Enum):
    TAKE = "take"  # free, released, or not renewed for a lease duration
    RENEW = "renew"  # ours already (also after a restart under the same identity)
    WAIT = "wait"  # another holder, still within its lease


def judge(obs: Observation, identity: str, now: float, default_duration: int) -> Verdict:
    record = obs.record
    if record.holder == identity:
        return Verdict.RENEW
    if not record.holder:
        return Verdict.TAKE
    # a record without a duration gets ours: never shorter than what we would write
    lasts = record.duration or default_duration
    return Verdict.TAKE if now >= obs.seen_at + lasts else Verdict.WAIT


def expires_in(obs: Observation, now: float, default_duration: int) -> float:
    """Seconds until the observed holder's lease runs out (0 when it has)."""
    lasts = obs.record.duration or default_duration
    return max(0.0, obs.seen_at + lasts - now)


def micro_time(now: datetime) -> str:
    """Kubernetes MicroTime: RFC 3339 in UTC with microseconds."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_lease(candidate: Candidate, now: datetime) -> Json:
    stamp = micro_time(now)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": candidate.name, "namespace": candidate.namespace},
        "spec": {
            "holderIdentity": candidate.identity,
            "leaseDurationSeconds": candidate.timing.lease_duration,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": 0,
        },
    }


def claimed(body: Json, candidate: Candidate, now: datetime) -> Json:
    """`body` taken or renewed by `candidate`, to be written back whole: the
    write carries body's resourceVersion and fails if anyone wrote since.
    Renewing keeps the acquire time and the transition count; a change of
    holder counts one transition."""
    record = LeaseRecord.from_body(body)
    stamp = micro_time(now)
    ours = record.holder == candidate.identity
    return _with_spec(
        body,
        {
            "holderIdentity": candidate.identity,
            "leaseDurationSeconds": candidate.timing.lease_duration,
            "acquireTime": record.acquire_time if ours and record.acquire_time else stamp,
            "renewTime": stamp,
            "leaseTransitions": record.transitions if ours else record.transitions + 1,
        },
    )


def released(body: Json, now: datetime) -> Json:
    """`body` given up on a clean shutdown, so a successor need not wait out
    the lease: no holder, and a one-second duration for readers that only
    look at times."""
    return _with_spec(
        body, {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": micro_time(now)}
    )


def _with_spec(body: Json, changes: dict[str, Any]) -> Json:
    spec = {**(body.get("spec") or {}), **changes}
    return {**body, "spec": {k: v for k, v in spec.items() if v is not None}}
