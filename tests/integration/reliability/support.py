"""Shared by the reliability tests (and test_operator_crash.py): moments of a
run to strike at, what the simulated hardware received per component, and
`flow serve` run as its own process the way a user runs it.

Imported as `reliability.support`: tests/integration is on sys.path (the
reliability conftest puts it there), and this folder is a namespace package."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from operator_fixtures import DOWN, POWER_METHODS, UP, Env, direction

from nicoflow._proto.flow.v1 import flow_pb2_grpc
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import phase
from nicoflow.devstack.services import Service, flow_argv

FINAL_PHASES = ("Succeeded", "Failed", "Cancelled")

# -- moments of a run ------------------------------------------------------------------


def stage_of(task: dict[str, Any]) -> int:
    """The stage a Running Task is in (1-based); 0 when it is not running."""
    st = task.get("status") or {}
    return int(st.get("currentStage") or 0) if st.get("phase") == "Running" else 0


def intent_recorded(task: dict[str, Any]) -> bool:
    """A state-changing call is recorded as about to be made (or in flight)."""
    for stage in (task.get("status") or {}).get("stages") or []:
        for step in stage.get("steps") or []:
            if step.get("intent"):
                return True
    return False


def wait_any(
    env: Env, taskspec: str, moment: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any] | None:
    """The first of the TaskSpec's Tasks seen at `moment`; None once all have finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks = env.tasks(taskspec)
        for task in tasks:
            if moment(task):
                return task
        if tasks and all(phase(t) in FINAL_PHASES for t in tasks):
            return None
        time.sleep(0.2)
    raise TimeoutError(f"no Task of {taskspec} reached the moment within {timeout}s")


def newest_seq(env: Env, since: int) -> int:
    """The newest ledger entry's sequence number (`since` when none is newer)."""
    entries = env.control.ledger(since=str(since))
    return max((int(e["seq"]) for e in entries), default=since)


def wait_new_core_calls(env: Env, since: int, timeout: float = 60) -> int:
    """Wait until the simulated hardware received a state-changing call after
    ledger entry `since` (proof that a freshly started operator is driving
    Tasks again); the newest sequence number seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entries = env.control.ledger(since=str(since))
        if entries:
            return max(int(e["seq"]) for e in entries)
        time.sleep(0.2)
    raise TimeoutError(f"no state-changing Core call within {timeout}s after entry {since}")


# -- what the hardware received ----------------------------------------------------------


def desired_changes(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Compute tray -> applied changes of its desired power state in Core."""
    out: dict[str, list[str]] = {}
    for e in entries:
        if e["method"] == "UpdatePowerOption" and e["applied"]:
            out.setdefault(e["component_id"], []).append(e["action"].removeprefix("desired_"))
    return out


def desired_state_changes(env: Env, since: int) -> dict[str, list[str]]:
    return desired_changes(env.control.ledger(method="UpdatePowerOption", since=str(since)))


@dataclass
class PowerRecord:
    """The applied power commands of one stretch of the ledger, read once
    (Env's helpers read the whole ledger per call, too slow for 50 racks)."""

    env: Env
    entries: list[dict[str, Any]]

    @classmethod
    def since(cls, env: Env, start: int) -> PowerRecord:
        return cls(env, env.control.ledger(since=str(start)))

    def _power(self) -> Iterator[tuple[str, str, str, str]]:
        """(core id, rack, component type, direction) per applied power command."""
        kinds = self.env.kinds()
        for e in self.entries:
            if e["method"] not in POWER_METHODS or not e["applied"]:
                continue
            where = kinds.get(str(e["component_id"]))
            if where is not None:
                yield str(e["component_id"]), where[0], where[1], direction(e)

    def commands(self) -> dict[str, list[str]]:
        """Core id -> directions of the power commands it received."""
        out: dict[str, list[str]] = {}
        for cid, _, _, way in self._power():
            out.setdefault(cid, []).append(way)
        return out

    def sequence(self, rack: str) -> list[str]:
        """ "<type> <on|off>" per power command the rack received, runs collapsed."""
        seq: list[str] = []
        for _, where, ctype, way in self._power():
            item = f"{ctype} {way}"
            if where == rack and (not seq or seq[-1] != item):
                seq.append(item)
        return seq

    def not_once_each_way(self, racks: list[str]) -> dict[str, list[str] | None]:
        """Components of `racks` that did not get exactly one off then one on:
        name -> what they got. A compute tray under the legacy manager is
        commanded through its desired power state in Core (the admin action
        after it only hastens it; a crash between the two leaves the tray to
        Core's power manager), so trays count by the former."""
        counts = self.commands()
        desired = desired_changes(self.entries)
        wrong: dict[str, list[str] | None] = {}
        for cid, (rack, ctype) in self.env.kinds().items():
            if rack not in racks:
                continue
            got = desired.get(cid) if ctype == "compute" else counts.get(cid)
            if got != ["off", "on"]:
                wrong[self.env.name_of(cid)] = got
        return wrong

    def out_of_order(self, racks: list[str]) -> dict[str, list[str]]:
        """Racks whose power commands did not go down then up by type."""
        want = [f"{t} off" for t in DOWN] + [f"{t} on" for t in UP]
        return {r: got for r in racks if (got := self.sequence(r)) != want}


def restart_succeeded(env: Env, taskspec: str, racks: list[str]) -> list[str]:
    """What is wrong with a finished restart TaskSpec (empty when all is well)."""
    problems: list[str] = []
    ts = env.taskspec(taskspec)
    if phase(ts) != "Complete" or ts["status"].get("succeeded") != len(racks):
        problems.append(f"TaskSpec {taskspec}: {ts.get('status')}")
    for task in env.tasks(taskspec):
        st = task.get("status") or {}
        stages = [s.get("phase") for s in st.get("stages") or []]
        if st.get("phase") != "Succeeded" or stages != ["Succeeded"] * len(stages) or not stages:
            problems.append(f"{task['metadata']['name']}: {st.get('phase')} {st.get('message')}")
    return problems


# -- `flow serve` as a process -------------------------------------------------------------

DEV_ENV = {"FLOW_ENV": "development", "ALLOW_INSECURE_GRPC": "true"}


@dataclass
class ServeProcess:
    """`flow serve` started as a user starts it, with a channel to it."""

    service: Service
    channel: grpc.Channel
    stub: flow_pb2_grpc.FlowStub

    @property
    def address(self) -> str:
        return str(self.service.ready_info["grpc"])

    def healthy(self, timeout: float = 10.0) -> bool:
        """The process runs and its health service answers SERVING."""
        if not self.service.alive():
            return False
        health = health_pb2_grpc.HealthStub(self.channel)
        try:
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def log(self) -> str:
        return self.service.log.read_text(errors="replace")


@contextlib.contextmanager
def serve_process(
    control_plane: ControlPlane, database_url: str, namespace: str, workdir: Path
) -> Iterator[ServeProcess]:
    """`flow serve` on a free loopback port against the control plane and database."""
    argv = flow_argv(
        "serve",
        "--host",
        "127.0.0.1",
        "--listen-port",
        "0",
        "--namespace",
        namespace,
        "--kubeconfig",
        str(control_plane.kubeconfig),
        "--database-url",
        database_url,
    )
    service = Service("flow-serve", argv, workdir / "flow-serve.log", env=DEV_ENV)
    service.start(ready_json=True, timeout=60)
    channel = grpc.insecure_channel(
        str(service.ready_info["grpc"]),
        options=[("grpc.max_send_message_length", 64 * 1024 * 1024)],
    )
    try:
        yield ServeProcess(service, channel, flow_pb2_grpc.FlowStub(channel))
    finally:
        channel.close()
        service.stop()
