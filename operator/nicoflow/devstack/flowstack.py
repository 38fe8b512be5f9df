"""The whole product on loopback: a simulated site, its Racks, a migrated
inventory and the operator — used by `make demo`, the end-to-end tests and
the benchmarks. Every part is the real program, run as its own process."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx
import yaml

from nicoflow.api import admission
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.services import Service, flow_argv
from nicoflow.inventory import migrate

REPO_ROOT = Path(__file__).resolve().parents[3]
CRD_DIR = REPO_ROOT / "crds"


class SimulatorControl:
    """Client of the simulator's run-time control API (faults, ledger, state)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=30)

    def _json(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._http.request(method, path, **kw)
        resp.raise_for_status()
        return resp.json() if resp.content else None

    def ledger(self, **filters: str) -> list[dict[str, Any]]:
        data = self._json("GET", "/v1/ledger", params=filters)
        entries: list[dict[str, Any]] = data["entries"] if isinstance(data, dict) else data
        return entries

    def duplicates(self) -> list[dict[str, Any]]:
        data = self._json("GET", "/v1/ledger/duplicates", params={"applied_only": "true"})
        dups: list[dict[str, Any]] = data["duplicates"] if isinstance(data, dict) else data
        return dups

    def delivered(self, since: int = 0) -> dict[str, list[dict[str, Any]]]:
        """Per component, every command that reached it (the physical view)."""
        data = self._json("GET", "/v1/ledger/delivered", params={"since": str(since)})
        found: dict[str, list[dict[str, Any]]] = data["delivered"]
        return found

    def repeats(self, since: int = 0) -> dict[str, list[str]]:
        """Components that received a counted command more than once."""
        data = self._json("GET", "/v1/ledger/repeats", params={"since": str(since)})
        found: dict[str, list[str]] = data["repeats"]
        return found

    def injected(self) -> dict[str, int]:
        """Errors injected per method since the fault plan was last set."""
        data = self._json("GET", "/v1/faults/injected")
        counts: dict[str, int] = data["injected"]
        return counts

    def counts(self, by: str = "method") -> dict[str, int]:
        data = self._json("GET", "/v1/ledger/counts", params={"by": by})
        counts: dict[str, int] = data.get("counts", data) if isinstance(data, dict) else data
        return counts

    def clear_ledger(self) -> None:
        self._json("DELETE", "/v1/ledger")

    def set_faults(self, **changes: Any) -> None:
        self._json("PATCH", "/v1/faults", json=changes)

    def replace_faults(self, plan: dict[str, Any]) -> None:
        self._json("PUT", "/v1/faults", json=plan)

    def component(self, key: str) -> dict[str, Any]:
        found: dict[str, Any] = self._json("GET", f"/v1/components/{key}")
        return found

    def rack(self, rack_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self._json("GET", f"/v1/racks/{rack_id}")
        return found

    def set_power(self, key: str, state: str) -> None:
        self._json("POST", f"/v1/components/{key}/power", json={"state": state})

    def set_state(self, key: str, state: Any) -> None:
        self._json("POST", f"/v1/components/{key}/state", json={"state": state})

    def close(self) -> None:
        self._http.close()


@dataclass
class FlowStack:
    """Simulator + Racks + operator against a running control plane and database."""

    cp: ControlPlane
    database_url: str
    workdir: Path
    racks: int = 2
    seed: int = 0
    sim_args: tuple[str, ...] = ()
    operator_args: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()
    # The legacy compute manager waits between machines by default (2s, as the
    # original); local runs do not need to.
    component_config: str = (
        "component_managers: {compute: nicolegacy, nvswitch: nico, powershelf: nico}\n"
        "manager_configs: {compute: {nicolegacy: {compute_power_delay: 0s}}}\n"
    )
    # run the operator with these credentials instead of the admin's (RBAC tests)
    operator_kubeconfig: Path | None = None
    simulator: Service | None = None
    operator: Service | None = None
    control: SimulatorControl | None = None
    rack_bodies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def core_address(self) -> str:
        assert self.simulator is not None
        return str(self.simulator.ready_info["grpc"])

    @property
    def rack_names(self) -> list[str]:
        return [r["metadata"]["name"] for r in self.rack_bodies]

    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        migrate.upgrade(self.database_url)
        self.apply_crds()
        self.start_simulator()
        self.apply_racks()
        self.start_operator()
        self.wait_racks_synced()
        return self

    def wait_racks_synced(self, timeout: float = 120.0) -> None:
        """The operator has mirrored every Rack into the inventory."""

        def synced(obj: dict[str, Any]) -> bool:
            conds = (obj.get("status") or {}).get("conditions") or []
            return any(c["type"] == "InventorySynced" and c["status"] == "True" for c in conds)

        for name in self.rack_names:
            self.wait_for("rack", name, None, synced, timeout=timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def apply_crds(self) -> None:
        files = sorted(CRD_DIR.glob("*.yaml"))
        self.cp.kubectl("apply", "--server-side", "--force-conflicts", *[f"-f={f}" for f in files])
        names = [
            f"crd/{f.name.removesuffix('.yaml')}" for f in files if f.name != admission.FILENAME
        ]
        self.cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", *names)

    def start_simulator(self) -> None:
        racks_file = self.workdir / "racks.yaml"
        argv = flow_argv(
            "simulator",
            "--racks",
            str(self.racks),
            "--seed",
            str(self.seed),
            "--port",
            "0",
            "--control-port",
            "0",
            "--export-racks",
            str(racks_file),
            *self.sim_args,
        )
        self.simulator = Service("simulator", argv, self.workdir / "simulator.log").start(
            ready_json=True, timeout=120
        )
        self.control = SimulatorControl(str(self.simulator.ready_info["control"]))
        self.rack_bodies = [d for d in yaml.safe_load_all(racks_file.read_text()) if d]

    def apply_racks(self) -> None:
        self.cp.kubectl("apply", "--server-side", "-f", "-", input=_yaml_stream(self.rack_bodies))

    def operator_env(self) -> dict[str, str]:
        config = self.workdir / "component-managers.yaml"
        config.write_text(self.component_config)
        return {
            "COMPONENT_MANAGER_CONFIG": str(config),
            "KUBECONFIG": str(self.operator_kubeconfig or self.cp.kubeconfig),
            "DATABASE_URL": self.database_url,
            "NICO_CORE_API_URL": self.core_address,
            "ALLOW_INSECURE_GRPC": "true",
        }

    def start_operator(self) -> Service:
        ns_args = [a for ns in self.namespaces for a in ("--namespace", ns)]
        argv = flow_argv("operator", "--standalone", *ns_args, *self.operator_args)
        self.operator = Service(
            "operator", argv, self.workdir / "operator.log", env=self.operator_env()
        ).start()
        return self.operator

    def start_api(
        self,
        *args: str,
        namespace: str | None = None,
        env: dict[str, str] | None = None,
        log: str = "api.log",
    ) -> Service:
        """`flow serve` on a free loopback port against this stack's apiserver and
        database, started and ready; `ready_info` names its gRPC (and metrics)
        addresses. The caller stops it."""
        ns = namespace or (self.namespaces[0] if self.namespaces else "default")
        argv = flow_argv(
            "serve",
            *("--host", "127.0.0.1", "--listen-port", "0", "--namespace", ns),
            *("--kubeconfig", str(self.cp.kubeconfig), "--database-url", self.database_url),
            *args,
        )
        # plaintext on loopback unless the caller gives certificates
        base = {"FLOW_ENV": "development", "ALLOW_INSECURE_GRPC": "true"}
        service = Service("api", argv, self.workdir / log, env={**base, **(env or {})})
        try:
            return service.start(ready_json=True, timeout=60)
        except BaseException:
            service.stop()  # started but never ready: it must not outlive the caller
            raise

    def restart_operator(self) -> Service:
        if self.operator is not None:
            self.operator.stop()
        return self.start_operator()

    def kill_operator(self) -> None:
        if self.operator is not None:
            self.operator.kill()

    def stop(self) -> None:
        if self.operator is not None:
            self.operator.stop()
        self.remove_racks()
        if self.control is not None:
            self.control.close()
        if self.simulator is not None:
            self.simulator.stop()

    def remove_racks(self) -> None:
        """Racks are cluster-wide: drop them (and the operator's finalizer) so the
        next run starts clean."""
        for name in self.rack_names:
            self.cp.kubectl(
                "patch",
                "rack",
                name,
                "--type=merge",
                "-p",
                '{"metadata":{"finalizers":null}}',
                check=False,
            )
            self.cp.kubectl(
                "delete", "rack", name, "--wait=false", "--ignore-not-found", check=False
            )

    # -- helpers for tests and the demo ------------------------------------------

    def apply(self, obj: dict[str, Any] | str) -> None:
        text = obj if isinstance(obj, str) else json.dumps(obj)
        self.cp.kubectl("apply", "-f", "-", input=text)

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        ns = ["-n", namespace] if namespace else []
        out = self.cp.kubectl("get", kind, name, *ns, "-o", "json").stdout
        found: dict[str, Any] = json.loads(out)
        return found

    def list(
        self, kind: str, namespace: str | None = None, selector: str = ""
    ) -> list[dict[str, Any]]:
        ns = ["-n", namespace] if namespace else ["-A"]
        sel = ["-l", selector] if selector else []
        out = self.cp.kubectl("get", kind, *ns, *sel, "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return items

    def wait_for(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        done: Any,
        *,
        timeout: float = 180.0,
        interval: float = 0.5,
    ) -> dict[str, Any]:
        """Poll an object until `done(obj)` is true; the last object on time-out."""
        deadline = time.monotonic() + timeout
        obj: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                obj = self.get(kind, name, namespace)
            except Exception:
                obj = {}
            if obj and done(obj):
                return obj
            if self.operator is not None and not self.operator.alive():
                break
            time.sleep(interval)
        log = self.operator.log.read_text()[-4000:] if self.operator else ""
        status = json.dumps(obj.get("status"), indent=1)[:3000]
        raise TimeoutError(f"{kind}/{name} not done after {timeout:.0f}s: {status}\n{log}")


def _yaml_stream(docs: list[dict[str, Any]]) -> str:
    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in docs)


def finished(obj: dict[str, Any]) -> bool:
    return (obj.get("status") or {}).get("phase") in ("Complete", "Failed", "Cancelled")


def phase(obj: dict[str, Any]) -> str:
    return str((obj.get("status") or {}).get("phase", ""))
