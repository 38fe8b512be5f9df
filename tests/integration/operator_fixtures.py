"""Shared by the operator's end-to-end tests (tests/integration/test_operator_*.py):
one FlowStack per module — the simulator, the operator and the Racks as real
processes and objects — and helpers to submit TaskSpecs and read what the
simulated hardware received.

Each module declares its stack with `env = module_env(...)` (or, when it needs
more, `operator_stack(...)` in its own module-scoped fixture); tests give their
TaskSpecs unique names inside the module's namespace."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from nicoflow.cli import kubectl_plugin
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack, SimulatorControl, finished, phase
from nicoflow.devstack.postgres import Postgres

GROUP = "flow.nico.io/v1alpha1"
POWER_METHODS = frozenset({"AdminPowerControl", "ComponentPowerControl"})
OFF_ACTIONS = frozenset({"graceful_shutdown", "force_off"})
UP = ["powershelf", "nvswitch", "compute"]
DOWN = list(reversed(UP))


@dataclass(repr=False)
class Env:
    """A module's running stack and the namespace its TaskSpecs live in."""

    flow: FlowStack
    ns: str
    _kinds: dict[str, tuple[str, str]] = field(default_factory=dict, repr=False)
    _names: dict[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"Env(ns={self.ns!r}, racks={self.racks!r})"

    @property
    def control(self) -> SimulatorControl:
        assert self.flow.control is not None
        return self.flow.control

    @property
    def racks(self) -> list[str]:
        return self.flow.rack_names

    # -- TaskSpecs and Tasks -----------------------------------------------------

    def submit(self, name: str, operation: str, racks: list[str], **spec: Any) -> None:
        self.flow.apply(taskspec(name, self.ns, operation, racks, **spec))

    def wait(self, name: str, timeout: float = 120.0) -> dict[str, Any]:
        return self.flow.wait_for("taskspec", name, self.ns, finished, timeout=timeout)

    def run(
        self, name: str, operation: str, racks: list[str], timeout: float = 120.0, **spec: Any
    ) -> dict[str, Any]:
        """Submit a TaskSpec and wait until it has finished."""
        self.submit(name, operation, racks, **spec)
        return self.wait(name, timeout)

    def taskspec(self, name: str) -> dict[str, Any]:
        return self.flow.get("taskspec", name, self.ns)

    def tasks(self, taskspec_name: str) -> list[dict[str, Any]]:
        return self.flow.list("tasks", self.ns, f"flow.nico.io/taskspec={taskspec_name}")

    def task(self, name: str) -> dict[str, Any]:
        return self.flow.get("task", name, self.ns)

    def task_name(self, taskspec_name: str, rack: str) -> str:
        return f"{taskspec_name}-{rack}"

    def wait_task(
        self, name: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60.0
    ) -> dict[str, Any]:
        return self.flow.wait_for("task", name, self.ns, done, timeout=timeout, interval=0.25)

    def patch(self, kind: str, name: str, patch: str) -> None:
        self.flow.cp.kubectl("patch", kind, name, "-n", self.ns, "--type=merge", "-p", patch)

    def why(self, ref: str) -> list[dict[str, Any]]:
        """`kubectl flow why REF -o json`, run as the plugin runs."""
        result = CliRunner().invoke(
            kubectl_plugin.cli,
            ["why", ref, "-n", self.ns, "--kubeconfig", str(self.flow.cp.kubeconfig), "-o", "json"],
        )
        assert result.exit_code in (0, 2), result.output
        found: list[dict[str, Any]] = json.loads(result.output)
        return found

    def operator_log(self) -> str:
        assert self.flow.operator is not None
        return self.flow.operator.log.read_text(errors="replace")

    # -- the simulated hardware --------------------------------------------------

    def kinds(self) -> dict[str, tuple[str, str]]:
        """Core id -> (rack, component type as Flow names it)."""
        if not self._kinds:
            for rack in self.racks:
                for c in self.control.rack(rack)["components"]:
                    ctype = str(c["name"]).rsplit("-", 1)[0]
                    self._kinds[str(c["id"])] = (rack, ctype)
                    self._names[str(c["id"])] = str(c["name"])
        return self._kinds

    def name_of(self, core_id: str) -> str:
        self.kinds()
        return self._names[core_id]

    def components(self, rack: str, ctype: str | None = None) -> list[dict[str, Any]]:
        """Shelves, switches and compute trays of a rack (DPUs are powered by their host)."""
        found = [c for c in self.control.rack(rack)["components"] if c["kind"] != "dpu"]
        if ctype is not None:
            found = [c for c in found if str(c["name"]).rsplit("-", 1)[0] == ctype]
        return found

    def power_states(self, rack: str) -> set[str]:
        return {str(c["power"]) for c in self.components(rack)}

    def last_seq(self) -> int:
        entries = self.control.ledger()
        return max((int(e["seq"]) for e in entries), default=0)

    def power_commands(
        self, racks: list[str], since: int = 0, until: int | None = None
    ) -> list[dict[str, Any]]:
        """Applied power commands to components of `racks`, in ledger order."""
        kinds = self.kinds()
        out = []
        for e in self.control.ledger(since=str(since)):
            if until is not None and int(e["seq"]) > until:
                break
            if e["method"] not in POWER_METHODS or not e["applied"]:
                continue
            where = kinds.get(str(e["component_id"]))
            if where is not None and where[0] in racks:
                out.append(e)
        return out

    def power_sequence(self, rack: str, since: int = 0, until: int | None = None) -> list[str]:
        """ "<type> <on|off>" per power command the rack received, runs collapsed."""
        seq: list[str] = []
        for e in self.power_commands([rack], since, until):
            item = f"{self.kinds()[str(e['component_id'])][1]} {direction(e)}"
            if not seq or seq[-1] != item:
                seq.append(item)
        return seq

    def commands_per_component(
        self, racks: list[str], since: int = 0, until: int | None = None
    ) -> dict[str, list[str]]:
        """Core id -> directions of the power commands it received."""
        out: dict[str, list[str]] = {}
        for e in self.power_commands(racks, since, until):
            out.setdefault(str(e["component_id"]), []).append(direction(e))
        return out

    def component_ids(self, racks: list[str]) -> set[str]:
        return {cid for cid, (rack, _) in self.kinds().items() if rack in racks}

    def archived_results(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        """The per-component results the task archive holds for a Task."""
        engine = create_engine(self.flow.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT stage, component_type, component_id, name, phase, attempts, "
                        "commanded, error FROM task_result WHERE task_id = :uid "
                        "ORDER BY stage, component_type, name"
                    ),
                    {"uid": task["metadata"]["uid"]},
                )
                return [dict(r._mapping) for r in rows]
        finally:
            engine.dispose()


def direction(entry: dict[str, Any]) -> str:
    return "off" if entry["action"] in OFF_ACTIONS else "on"


def taskspec(name: str, ns: str, operation: str, racks: list[str], **spec: Any) -> dict[str, Any]:
    """A TaskSpec on `racks`; `componentTypes=[...]` narrows the targets."""
    targets: dict[str, Any] = {"racks": racks}
    if "componentTypes" in spec:
        targets["componentTypes"] = spec.pop("componentTypes")
    return {
        "apiVersion": GROUP,
        "kind": "TaskSpec",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"operation": operation, "targets": targets, **spec},
    }


@contextlib.contextmanager
def operator_stack(
    control_plane: ControlPlane,
    postgres: Postgres,
    workdir: Path,
    *,
    racks: int,
    seed: int,
    sim_args: tuple[str, ...] = ("--latency-power", "0s"),
    rack_labels: dict[int, dict[str, str]] | None = None,
    operator_args: tuple[str, ...] = (),
) -> Iterator[Env]:
    """A fresh database and namespace, the simulator with `racks` racks, their
    Rack objects (with `rack_labels` added, by rack index) and the operator
    watching that namespace."""
    tag = uuid.uuid4().hex[:8]
    ns = f"op-{tag}"
    db = f"t_op_{tag}"
    url = postgres.create_database(db)
    control_plane.kubectl("create", "namespace", ns)
    stack = _LabelledStack(
        control_plane,
        url,
        workdir,
        racks=racks,
        seed=seed,
        sim_args=sim_args,
        namespaces=(ns,),
        operator_args=operator_args,
    )
    stack.extra_labels = rack_labels or {}
    try:
        with stack:
            yield Env(stack, ns)
    finally:
        control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        postgres.drop_database(db)


def module_env(
    *,
    racks: int,
    seed: int,
    sim_args: tuple[str, ...] = ("--latency-power", "0s"),
    rack_labels: dict[int, dict[str, str]] | None = None,
    operator_args: tuple[str, ...] = (),
) -> Any:
    """A module-scoped `env` fixture: one `operator_stack` shared by the module's
    tests. Assign it to the name `env` in the test module."""

    @pytest.fixture(scope="module")
    def env(
        control_plane: ControlPlane,
        postgres: Postgres,
        tmp_path_factory: pytest.TempPathFactory,
        request: pytest.FixtureRequest,
    ) -> Iterator[Env]:
        workdir = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
        with operator_stack(
            control_plane,
            postgres,
            workdir,
            racks=racks,
            seed=seed,
            sim_args=sim_args,
            rack_labels=rack_labels,
            operator_args=operator_args,
        ) as e:
            yield e

    return env


class _LabelledStack(FlowStack):
    """Racks applied with extra labels, so rule selection sees them from the start."""

    extra_labels: dict[int, dict[str, str]]

    def apply_racks(self) -> None:
        for i, body in enumerate(self.rack_bodies):
            body["metadata"].setdefault("labels", {}).update(self.extra_labels.get(i, {}))
        super().apply_racks()


# -- time and overlap -----------------------------------------------------------


def ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def run_window(task: dict[str, Any]) -> tuple[datetime, datetime]:
    status = task["status"]
    return ts(status["startTime"]), ts(status["completionTime"])


def overlapping(tasks: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """Pairs of Tasks whose [startTime, completionTime] windows overlap."""
    windows = [(t["metadata"]["name"], *run_window(t)) for t in tasks]
    return [
        (a, b)
        for i, (a, a0, a1) in enumerate(windows)
        for b, b0, b1 in windows[i + 1 :]
        if a0 < b1 and b0 < a1
    ]


class RunningWatch:
    """Polls the namespace's Tasks while a test runs and remembers every set of
    Tasks it saw Running at the same moment."""

    def __init__(self, env: Env, selector: str = "", interval: float = 0.3) -> None:
        self.env = env
        self.selector = selector
        self.interval = interval
        self.seen: list[set[str]] = []
        self.racks_of: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> RunningWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                tasks = self.env.flow.list("tasks", self.env.ns, self.selector)
                running = {t["metadata"]["name"] for t in tasks if phase(t) == "Running"}
                for t in tasks:
                    self.racks_of[t["metadata"]["name"]] = t["spec"]["rack"]
                if running:
                    self.seen.append(running)
            time.sleep(self.interval)

    def most_at_once(self) -> int:
        return max((len(s) for s in self.seen), default=0)

    def per_rack_max(self) -> int:
        """Most Tasks seen Running on one rack at once."""
        best = 0
        for names in self.seen:
            counts: dict[str, int] = {}
            for n in names:
                rack = self.racks_of.get(n, "?")
                counts[rack] = counts.get(rack, 0) + 1
            best = max(best, *counts.values())
        return best


def condition(obj: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            found: dict[str, Any] = c
            return found
    return None


def in_phase(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda obj: phase(obj) in phases
