"""Several `flow operator` processes with leader election on one Lease, against
one stack: only the leader works (kopf handlers and the runtime's background
loops alike); a clean stop hands over at once; a crash hands over only once
the Lease has run out, except to the same identity; a leader whose Lease is
taken from it exits non-zero.

Short timings keep it quick: 4 s leases, 3 s renew deadline, 0.5 s retries."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from operator_fixtures import Env

from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, phase
from nicoflow.devstack.postgres import Postgres
from nicoflow.devstack.services import Service, flow_argv

LEASE = "flow-leader"
LEASE_SECONDS = 4
# the runtime logs this once it has started its loops (with --metrics-port)
RUNTIME_STARTED = "metrics on :"


def election_args(ns: str, identity: str, lease_seconds: int = LEASE_SECONDS) -> tuple[str, ...]:
    return (
        "--leader-elect",
        f"--leader-election-namespace={ns}",
        f"--leader-election-id={LEASE}",
        f"--leader-identity={identity}",
        f"--leader-elect-lease-duration={lease_seconds}",
        "--leader-elect-renew-deadline=3",
        "--leader-elect-retry-period=0.5",
        "--metrics-port=0",
    )


@dataclass
class Site:
    """The stack, its first operator (`alpha`, started by FlowStack) and every
    further operator process a test starts."""

    env: Env
    started: list[Service] = field(default_factory=list)

    @property
    def flow(self) -> FlowStack:
        return self.env.flow

    @property
    def ns(self) -> str:
        return self.env.ns

    def start(self, identity: str, lease_seconds: int = LEASE_SECONDS) -> Service:
        ns_args = ("--namespace", self.ns, "--standalone")
        argv = flow_argv("operator", *ns_args, *election_args(self.ns, identity, lease_seconds))
        log = self.flow.workdir / f"operator-{identity}-{len(self.started)}.log"
        service = Service(f"operator-{identity}", argv, log, env=self.flow.operator_env()).start()
        self.started.append(service)
        return service

    def lease(self) -> dict[str, Any]:
        out = self.flow.cp.kubectl("get", "lease", LEASE, "-n", self.ns, "-o", "json").stdout
        spec: dict[str, Any] = json.loads(out)["spec"]
        return spec

    def holder(self) -> str:
        return str(self.lease().get("holderIdentity") or "")

    def wait_holder(self, identity: str, timeout: float) -> float:
        """Seconds until `identity` holds the Lease."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.holder() == identity:
                return time.monotonic() - started
            time.sleep(0.2)
        raise TimeoutError(f"{identity} does not hold the Lease after {timeout}s: {self.lease()}")

    def lead(self, service: Service) -> None:
        """`service` is the operator the stack's waits watch from now on."""
        self.flow.operator = service


def wait_log(service: Service, text: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = service.log.read_text(errors="replace")
        if text in log:
            return log
        assert service.alive(), f"{service.name} exited:\n{log[-3000:]}"
        time.sleep(0.2)
    raise TimeoutError(f"{service.name}: no {text!r} in\n{service.log.read_text()[-3000:]}")


def logged_at(log: str, text: str) -> datetime:
    """When the first line containing `text` was logged (text log format)."""
    line = next(line for line in log.splitlines() if text in line)
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def election_took(log: str, outcome: str) -> float:
    """Seconds from the start of the election to `outcome`, by the process's own log."""
    return (logged_at(log, outcome) - logged_at(log, "leader election on")).total_seconds()


def wait_exit(service: Service, timeout: float) -> int:
    assert service.proc is not None
    return service.proc.wait(timeout)


@pytest.fixture(scope="module")
def site(
    control_plane: ControlPlane, postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    tag = uuid.uuid4().hex[:8]
    ns, db = f"lead-{tag}", f"t_lead_{tag}"
    url = postgres.create_database(db)
    control_plane.kubectl("create", "namespace", ns)
    work: Path = tmp_path_factory.mktemp("leader")
    stack = FlowStack(
        control_plane,
        url,
        work,
        racks=2,
        seed=23,
        sim_args=("--latency-power", "0s"),
        namespaces=(ns,),
        operator_args=election_args(ns, "alpha"),
    )
    result = Site(Env(stack, ns))
    try:
        with stack:  # alpha starts, takes the new Lease and syncs the Racks
            yield result
            for service in result.started:
                service.stop()
    finally:
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        postgres.drop_database(db)


def test_only_the_leader_works_and_a_clean_stop_hands_over_at_once(site: Site) -> None:
    alpha = site.flow.operator
    assert alpha is not None
    assert site.holder() == "alpha"
    beta = site.start("beta")
    wait_log(beta, f"waiting for leadership of Lease {site.ns}/{LEASE}, held by alpha")

    first = site.env.run("lead-restart-1", "restart", site.env.racks)
    assert phase(first) == "Complete", first.get("status")
    assert {phase(t) for t in site.env.tasks("lead-restart-1")} == {"Succeeded"}
    # the standby never started its runtime (no loops, no handlers) nor wrote the Lease
    assert RUNTIME_STARTED in alpha.log.read_text()
    beta_log = beta.log.read_text()
    assert RUNTIME_STARTED not in beta_log
    assert "acquired leadership" not in beta_log
    assert "kopf" not in beta_log
    assert site.holder() == "alpha"
    transitions = site.lease()["leaseTransitions"]

    stopped_at = time.monotonic()
    alpha.stop()  # SIGTERM
    assert alpha.proc is not None
    assert alpha.proc.returncode == 0
    assert "released Lease" in alpha.log.read_text()
    site.wait_holder("beta", timeout=10)
    handed_over = time.monotonic() - stopped_at
    beta_log = wait_log(beta, "acquired leadership")
    assert "previous holder: none, released" in beta_log, "taken over without waiting it out"
    assert site.lease()["leaseTransitions"] == transitions + 1
    print(f"SIGTERM to new leader: {handed_over:.1f}s")

    site.lead(beta)
    second = site.env.run("lead-restart-2", "restart", site.env.racks)
    assert phase(second) == "Complete", second.get("status")
    assert RUNTIME_STARTED in beta.log.read_text()
    assert site.env.control.duplicates() == []


def test_after_a_crash_a_new_identity_waits_out_the_lease_the_same_one_does_not(
    site: Site,
) -> None:
    crashed = site.flow.operator
    assert crashed is not None
    previous = site.holder()
    assert previous
    crashed.kill()  # SIGKILL: no release
    killed_at = time.monotonic()
    # a longer lease from here on, so "at once" cannot be mistaken for "expired"
    gamma = site.start("gamma", lease_seconds=20)
    gamma_log = wait_log(gamma, f"held by {previous}")
    assert RUNTIME_STARTED not in gamma_log
    site.wait_holder("gamma", timeout=30)
    waited = time.monotonic() - killed_at
    assert waited >= LEASE_SECONDS, "took a Lease that had not run out"
    gamma_log = wait_log(gamma, "acquired leadership")
    assert f"previous holder: {previous}" in gamma_log
    assert election_took(gamma_log, "acquired leadership") >= LEASE_SECONDS
    wait_log(gamma, RUNTIME_STARTED)
    before = site.lease()
    assert before["leaseDurationSeconds"] == 20

    gamma.kill()
    # the same identity again (a container restarted in its Pod), and a rival
    again = site.start("gamma", lease_seconds=20)
    rival = site.start("delta", lease_seconds=20)
    again_log = wait_log(again, "resumed leadership")
    # from its own log, not the wall clock (two interpreters starting at once
    # on a busy machine take seconds): it did not wait out its Lease
    resumed = election_took(again_log, "resumed leadership")
    assert resumed < 2, "the same identity waited for its own Lease"
    after = site.lease()
    assert after["holderIdentity"] == "gamma"
    assert after["acquireTime"] == before["acquireTime"]
    assert after["leaseTransitions"] == before["leaseTransitions"]
    wait_log(rival, "waiting for leadership")
    assert "acquired leadership" not in rival.log.read_text()
    rival.stop()
    assert rival.proc is not None
    assert rival.proc.returncode == 0, "a standby stops cleanly"
    print(f"SIGKILL to new identity: {waited:.1f}s; same identity resumed in {resumed:.1f}s")

    site.lead(again)
    third = site.env.run("lead-power-off", "power_off", site.env.racks)
    assert phase(third) == "Complete", third.get("status")


def test_a_leader_whose_lease_is_taken_exits_non_zero(site: Site) -> None:
    leader = site.flow.operator
    assert leader is not None
    assert leader.alive()
    holder = site.holder()
    stolen_at = time.monotonic()
    site.flow.cp.kubectl(
        "patch",
        "lease",
        LEASE,
        "-n",
        site.ns,
        "--type=merge",
        "-p",
        '{"spec":{"holderIdentity":"thief"}}',
    )
    code = wait_exit(leader, timeout=30)
    gone = time.monotonic() - stolen_at
    assert code == 1
    log = leader.log.read_text()
    assert f"leadership lost (Lease {site.ns}/{LEASE} is held by thief now)" in log
    # it did not hand the Lease back on the way out
    assert site.holder() == "thief"
    assert "released Lease" not in log.split("leadership lost")[-1]
    print(f"{holder} exited {gone:.1f}s after its Lease was taken")
    assert gone < 10
