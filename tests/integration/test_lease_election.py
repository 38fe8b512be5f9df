"""Leader election on a real Lease: candidates in this process, each with its own
client, against the real apiserver. Short timings keep it quick (3 s leases,
2 s renew deadline, 0.5 s retries)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.kube.client import KubeClient
from nicoflow.kube.leadership import Candidate, Timing
from nicoflow.kube.lease import LeaderElector

TIMING = Timing(lease_duration=3, renew_deadline=2.0, retry_period=0.5)
LEASE = "leader-test"


@pytest.fixture
async def clients(control_plane: ControlPlane) -> AsyncIterator[list[KubeClient]]:
    made = [KubeClient.from_env(str(control_plane.kubeconfig)) for _ in range(3)]
    yield made
    for c in made:
        await c.close()


def elector(kube: KubeClient, namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(kube, Candidate(namespace, LEASE, identity, TIMING))


def read_lease(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    out = cp.kubectl("get", "lease", LEASE, "-n", namespace, "-o", "json").stdout
    spec: dict[str, Any] = json.loads(out)["spec"]
    return spec


async def acquire_within(e: LeaderElector, seconds: float) -> bool:
    """acquire(), given up (False) after `seconds`."""
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(seconds, stop.set)
    return await e.acquire(stop)


@contextlib.asynccontextmanager
async def holding(e: LeaderElector) -> AsyncIterator[asyncio.Task[str]]:
    """Renew in the background while the block runs; the task's result is why
    leadership was lost."""
    task = asyncio.ensure_future(e.hold())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_one_leads_the_other_waits_and_takes_over_at_once_on_release(
    control_plane: ControlPlane, namespace: str, clients: list[KubeClient]
) -> None:
    a, b = elector(clients[0], namespace, "a"), elector(clients[1], namespace, "b")
    assert await acquire_within(a, 5)
    spec = read_lease(control_plane, namespace)
    assert spec["holderIdentity"] == "a"
    assert spec["leaseDurationSeconds"] == 3
    assert spec["leaseTransitions"] == 0
    async with holding(a) as renewals:
        # b waits through two lease durations: a keeps renewing
        assert not await acquire_within(b, 2 * TIMING.lease_duration)
        assert not renewals.done()
        renewed = read_lease(control_plane, namespace)["renewTime"]
        assert renewed > spec["renewTime"]
    await a.release()
    assert read_lease(control_plane, namespace).get("holderIdentity") is None
    started = time.monotonic()
    assert await acquire_within(b, 5)
    assert time.monotonic() - started < TIMING.lease_duration
    spec = read_lease(control_plane, namespace)
    assert spec["holderIdentity"] == "b"
    assert spec["leaseTransitions"] == 1


async def test_a_dead_holder_is_replaced_only_after_its_lease_runs_out(
    control_plane: ControlPlane, namespace: str, clients: list[KubeClient]
) -> None:
    a, b = elector(clients[0], namespace, "a"), elector(clients[1], namespace, "b")
    assert await acquire_within(a, 5)
    # a neither renews nor releases: it died
    started = time.monotonic()
    assert await acquire_within(b, 3 * TIMING.lease_duration)
    waited = time.monotonic() - started
    assert TIMING.lease_duration <= waited < TIMING.lease_duration + 2 * TIMING.retry_period + 1
    assert read_lease(control_plane, namespace)["holderIdentity"] == "b"


async def test_the_same_identity_resumes_at_once_and_keeps_the_record(
    control_plane: ControlPlane, namespace: str, clients: list[KubeClient]
) -> None:
    first = elector(clients[0], namespace, "a")
    assert await acquire_within(first, 5)
    before = read_lease(control_plane, namespace)
    # the same identity, as a container restarted in its Pod
    again = elector(clients[1], namespace, "a")
    started = time.monotonic()
    assert await acquire_within(again, 5)
    assert time.monotonic() - started < 1.0
    after = read_lease(control_plane, namespace)
    assert after["holderIdentity"] == "a"
    assert after["acquireTime"] == before["acquireTime"]
    assert after["leaseTransitions"] == before["leaseTransitions"]
    assert after["renewTime"] > before["renewTime"]


async def test_a_stolen_lease_ends_leadership_at_the_next_renewal(
    control_plane: ControlPlane, namespace: str, clients: list[KubeClient]
) -> None:
    a = elector(clients[0], namespace, "a")
    assert await acquire_within(a, 5)
    async with holding(a) as renewals:
        await asyncio.sleep(TIMING.retry_period * 2)
        assert not renewals.done()
        await asyncio.to_thread(
            control_plane.kubectl,
            "patch",
            "lease",
            LEASE,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            '{"spec":{"holderIdentity":"thief"}}',
        )
        reason = await asyncio.wait_for(asyncio.shield(renewals), TIMING.retry_period * 4)
    assert "held by thief" in reason
    assert not a.leader
    # a lost Lease is not released: it belongs to the thief now
    await a.release()
    assert read_lease(control_plane, namespace)["holderIdentity"] == "thief"


async def test_racing_candidates_on_a_free_lease_elect_exactly_one(
    control_plane: ControlPlane, namespace: str, clients: list[KubeClient]
) -> None:
    for round_ in range(3):
        electors = [elector(c, namespace, f"r{round_}-{i}") for i, c in enumerate(clients)]
        won = await asyncio.gather(*(acquire_within(e, 1.5) for e in electors))
        assert sum(won) == 1, won
        winner = next(e for e, w in zip(electors, won, strict=True) if w)
        assert read_lease(control_plane, namespace)["holderIdentity"] == winner.candidate.identity
        await winner.release()


@pytest.fixture
def lease_only_kubeconfig(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Path:
    """A ServiceAccount that may only use Leases in the namespace (as the chart grants)."""
    cp = control_plane
    cp.kubectl("create", "serviceaccount", "elector", "-n", namespace)
    cp.kubectl(
        "create",
        "role",
        "elector",
        "-n",
        namespace,
        "--verb=get,create,update",
        "--resource=leases.coordination.k8s.io",
    )
    cp.kubectl(
        "create",
        "rolebinding",
        "elector",
        "-n",
        namespace,
        "--role=elector",
        f"--serviceaccount={namespace}:elector",
    )
    token = cp.kubectl("create", "token", "elector", "-n", namespace).stdout.strip()
    return cp.write_kubeconfig(tmp_path / "elector.kubeconfig", token, user="elector")


async def test_a_leader_that_cannot_renew_gives_up_after_the_renew_deadline(
    control_plane: ControlPlane, namespace: str, lease_only_kubeconfig: Path
) -> None:
    async with KubeClient.from_env(str(lease_only_kubeconfig)) as kube:
        a = elector(kube, namespace, "a")
        assert await acquire_within(a, 5)
        async with holding(a) as renewals:
            await asyncio.sleep(TIMING.retry_period * 2)
            assert not renewals.done()
            # renewals are refused from now on, as during a long apiserver outage
            await asyncio.to_thread(
                control_plane.kubectl, "delete", "rolebinding", "elector", "-n", namespace
            )
            refused_from = time.monotonic()
            reason = await asyncio.wait_for(asyncio.shield(renewals), TIMING.lease_duration * 3)
            noticed = time.monotonic() - refused_from
    assert "not renewed within 2s" in reason
    assert "forbidden" in reason.lower()
    # noticed before a successor could take over (a lease duration after the last renewal)
    assert noticed < TIMING.lease_duration
    assert not a.leader
