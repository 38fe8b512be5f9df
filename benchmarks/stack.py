"""The product stack as the benchmarks run it: FlowStack with Racks labelled
into nested groups (the first 100, 500, 1,000 …), list-based waits instead of
one kubectl per rack, and a timed import of the Racks."""

from __future__ import annotations

import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import yaml

from benchmarks.kube import Kube, poll
from nicoflow.devstack.flowstack import FlowStack, SimulatorControl
from nicoflow.devstack.services import Service, flow_argv
from nicoflow.inventory import migrate

GROUP_LABEL = "bench.nico.io/first-{n}"
SIMULATED = "flow.nico.io/simulated=true"
APPLY_CONCURRENCY = 8
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
BENCH_GRANT = {
    "apiVersion": "flow.nico.io/v1alpha1",
    "kind": "RackAccessPolicy",
    "metadata": {"name": "bench-everything"},
    "spec": {
        "namespaceSelector": {},
        "rackSelector": {},
        "operations": ["power", "firmware", "bring_up", "ingest"],
    },
}


def group_selector(n: int) -> dict[str, Any]:
    return {"matchLabels": {GROUP_LABEL.format(n=n): "true"}}


def synced(rack: dict[str, Any]) -> bool:
    conds = (rack.get("status") or {}).get("conditions") or []
    return any(c["type"] == "InventorySynced" and c["status"] == "True" for c in conds)


@dataclass
class BenchStack(FlowStack):
    groups: tuple[int, ...] = ()
    metrics_port: int = 0
    kube: Kube | None = None
    import_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    profile: Path | None = None  # save a pyinstrument session of the operator here

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kube = Kube(self.cp)
        migrate.upgrade(self.database_url)
        self.apply_crds()
        # Freshly established CRDs answer 429 "storage is (re)initializing" for a
        # moment; an operator started then backs off, which the import would time.
        poll(self._served, timeout=60, what="CRDs served", interval=0.5)
        # the scenarios work in several namespaces: grant them every rack, so the
        # operator's tenancy check runs (and is timed) but refuses nothing
        self.apply(BENCH_GRANT)
        self.start_simulator()
        self.start_operator()
        poll(self._operator_up, timeout=120, what="operator metrics", alive=self._alive)
        time.sleep(3)  # its watches are open by now
        # Timed: apply every Rack and wait until the operator mirrored them all.
        t0 = time.monotonic()
        self.apply_racks()
        self.wait_racks_synced(timeout=60 + self.racks)
        self.import_seconds = time.monotonic() - t0
        return self

    def start_operator(self) -> Service:
        """As FlowStack's; with `profile` set, under pyinstrument, which saves a
        session there when the operator stops (`pyinstrument --load FILE`)."""
        if self.profile is None:
            return super().start_operator()
        ns_args = [a for ns in self.namespaces for a in ("--namespace", ns)]
        argv = [
            sys.executable,
            *("-m", "pyinstrument", "--renderer", "session", "--interval", "0.005"),
            *("-o", str(self.profile), "-m", "nicoflow.cli.main"),
            *("operator", "--standalone", *ns_args, *self.operator_args),
        ]
        self.operator = Service(
            "operator", argv, self.workdir / "operator.log", env=self.operator_env()
        ).start()
        return self.operator

    def _served(self) -> bool:
        assert self.kube is not None
        try:
            for plural in (
                "racks",
                "tasks",
                "taskspecs",
                "operationrules",
                "taskschedules",
                "rackaccesspolicies",
            ):
                self.kube.list(plural)
        except Exception:
            return False
        return True

    def _alive(self) -> bool:
        return self.operator is not None and self.operator.alive()

    def _operator_up(self) -> bool:
        try:
            self.operator_metrics()
        except OSError:
            return False
        return True

    def operator_metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body: bytes = resp.read()
            return body.decode()

    def start_simulator(self) -> None:
        """As FlowStack's, but the exported racks are read with libyaml's loader:
        the pure-Python one takes minutes for 1,000 racks on a busy machine."""
        racks_file = self.workdir / "racks.yaml"
        argv = flow_argv(
            "simulator",
            *("--racks", str(self.racks), "--seed", str(self.seed)),
            *("--port", "0", "--control-port", "0", "--export-racks", str(racks_file)),
            *self.sim_args,
        )
        self.simulator = Service("simulator", argv, self.workdir / "simulator.log").start(
            ready_json=True, timeout=300
        )
        self.control = SimulatorControl(str(self.simulator.ready_info["control"]))
        with racks_file.open() as f:
            self.rack_bodies = [d for d in yaml.load_all(f, Loader=_LOADER) if d]

    def apply_racks(self) -> None:
        """Label the Racks into groups and server-side apply them, 8 at a time
        (kubectl applies one by one, and YAML in Python is slow at this size)."""
        for i, body in enumerate(self.rack_bodies):
            labels = body["metadata"].setdefault("labels", {})
            for n in self.groups:
                if i < n:
                    labels[GROUP_LABEL.format(n=n)] = "true"
        kubes = [Kube(self.cp) for _ in range(APPLY_CONCURRENCY)]
        try:
            with ThreadPoolExecutor(APPLY_CONCURRENCY) as pool:
                jobs = [
                    pool.submit(kubes[i % APPLY_CONCURRENCY].apply, "racks", body)
                    for i, body in enumerate(self.rack_bodies)
                ]
                for job in jobs:
                    job.result()
        finally:
            for k in kubes:
                k.close()

    def wait_racks_synced(self, timeout: float = 120.0) -> None:
        assert self.kube is not None
        kube, want = self.kube, len(self.rack_bodies)

        def all_synced() -> bool:
            return sum(synced(r) for r in kube.list("racks", selector=SIMULATED)) >= want

        poll(all_synced, timeout=timeout, what="Racks mirrored", interval=0.5, alive=self._alive)

    def stop(self) -> None:
        """Delete the Racks while the operator still runs (it drops its finalizer),
        so FlowStack's one-kubectl-per-rack cleanup only sees stragglers."""
        try:
            self._delete_racks()
        finally:
            super().stop()
            if self.kube is not None:
                self.kube.close()

    def _delete_racks(self) -> None:
        if self.kube is not None:
            try:
                self.kube.delete_all("racks", selector=SIMULATED)
                poll(
                    lambda: not self._rack_names_left(),
                    timeout=120 + len(self.rack_bodies) / 4,  # ~10/s when busy
                    what="Racks deleted",
                    interval=0.5,
                    alive=self._alive,
                )
            except Exception as exc:  # cleanup goes on with FlowStack's own
                self.notes.append(f"rack cleanup: {type(exc).__name__}: {exc}")
            left = set(self._rack_names_left())
            self.rack_bodies = [b for b in self.rack_bodies if b["metadata"]["name"] in left]

    def _rack_names_left(self) -> list[str]:
        assert self.kube is not None
        try:
            return [r["metadata"]["name"] for r in self.kube.list("racks", selector=SIMULATED)]
        except Exception:
            return [b["metadata"]["name"] for b in self.rack_bodies]
