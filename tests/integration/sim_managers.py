"""Shared set-up for the component-manager tests against the in-process NICo
Core simulator: a simulator on loopback with time driven by a fake clock, a
real Core client connected to it over gRPC, and the managers built from a
component-manager config as the operator builds them."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from nicoflow.core.client import CoreClient, CoreClientSettings, RetryPolicy
from nicoflow.core.config import parse_config
from nicoflow.core.managers.base import ComponentManager, Target
from nicoflow.core.managers.registry import ManagerRegistry
from nicoflow.domain.types import ComponentType
from nicoflow.simulator.clock import FakeClock
from nicoflow.simulator.ledger import LedgerEntry
from nicoflow.simulator.server import Simulator, TlsFiles
from nicoflow.simulator.settings import SimSettings
from nicoflow.simulator.site import generate_site
from nicoflow.simulator.world import Node, RackState

CT = ComponentType
SEED = 7

# Simulated seconds; the fake clock moves them, so nothing here is waited for.
POWER_LATENCY = 10.0
FIRMWARE_LATENCY = 100.0  # queued 10 s, installing 70 s, verifying 20 s
INGESTION_LATENCY = 5.0
DISCOVERY_LATENCY = 2.0
DPU_LATENCY = 30.0

SETTINGS = SimSettings(
    power_latency=POWER_LATENCY,
    force_power_latency=0.0,
    firmware_latency=FIRMWARE_LATENCY,
    ingestion_latency=INGESTION_LATENCY,
    discovery_latency=DISCOVERY_LATENCY,
    dpu_reprovision_latency=DPU_LATENCY,
)

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Bench:
    sim: Simulator
    clock: FakeClock | None
    core: CoreClient
    registry: ManagerRegistry
    # Every client attempt as the client saw it: (method, status code).
    calls: list[tuple[str, grpc.StatusCode]] = field(default_factory=list)

    def manager(self, ctype: ComponentType) -> ComponentManager:
        return self.registry.get_manager(ctype)

    def rack(self, index: int = 0) -> RackState:
        return self.sim.world.racks[self.sim.world.site.racks[index].core_id]

    def nodes(self, ctype: ComponentType, n: int | None = None, rack: int = 0) -> list[Node]:
        state = self.rack(rack)
        pool = {CT.COMPUTE: state.hosts, CT.NVSWITCH: state.switches, CT.POWERSHELF: state.shelves}
        return list(pool[ctype][:n])

    def target(self, ctype: ComponentType, n: int | None = None, rack: int = 0) -> Target:
        return Target(ctype, tuple(node.id for node in self.nodes(ctype, n, rack)))

    def advance(self, seconds: float) -> None:
        assert self.clock is not None, "this bench runs on the wall clock"
        self.clock.advance(seconds)

    def writes(self, since: int = 0, **filters: Any) -> list[LedgerEntry]:
        return self.sim.ledger.entries(since=since, **filters)

    def last_seq(self) -> int:
        entries = self.sim.ledger.entries()
        return entries[-1].seq if entries else 0

    def attempts(self, method: str) -> list[grpc.StatusCode]:
        return [code for m, code in self.calls if m == f"/forge.Forge/{method}"]


def keyed(entries: list[LedgerEntry], key: str) -> None:
    """Every ledger entry carries an x-request-id derived from `key`."""
    assert entries, "expected state-changing calls in the ledger"
    for e in entries:
        assert e.request_id is not None, f"{e.method} carried no x-request-id"
        assert e.request_id.startswith(f"{key}/"), (e.method, e.request_id)


def config_yaml(compute: str, power_delay: float) -> str:
    text = f"component_managers: {{compute: {compute}, nvswitch: nico, powershelf: nico}}\n"
    if compute == "nicolegacy":
        text += (
            "manager_configs: {compute: {nicolegacy: "
            f"{{compute_power_delay: {int(power_delay * 1000)}ms}}}}}}\n"
        )
    return text + "providers: {nico: {timeout: 5s}}\n"


def plaintext(sim: Simulator, timeout: float = 5.0, attempts: int = 4) -> CoreClientSettings:
    retry = RetryPolicy(max_attempts=attempts, initial_backoff=0.01, max_backoff=0.02)
    return CoreClientSettings(
        target=sim.address, tls=None, allow_insecure=True, timeout=timeout, retry=retry
    )


@asynccontextmanager
async def bench(
    *,
    racks: int = 1,
    uningested: int = 0,
    compute: str = "nicolegacy",
    power_delay: float = 0.0,
    faults: Mapping[str, Any] | None = None,
    settings: SimSettings = SETTINGS,
    fake_clock: bool = True,
    sleep: Sleep | None = None,
    client: Callable[[Simulator], CoreClientSettings] | None = None,
    tls: TlsFiles | None = None,
) -> AsyncIterator[Bench]:
    clock = FakeClock() if fake_clock else None
    site = generate_site(racks, seed=SEED, uningested=uningested)
    async with Simulator(
        site, faults=faults, settings=settings, clock=clock, control_port=None, tls=tls
    ) as sim:
        settings_ = client(sim) if client else plaintext(sim)
        calls: list[tuple[str, grpc.StatusCode]] = []
        async with CoreClient.session(
            settings_, on_call=lambda method, code, _: calls.append((method, code))
        ) as core:
            config = parse_config(config_yaml(compute, power_delay), "test config")
            kwargs: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
            registry = ManagerRegistry.build(config, core=core, **kwargs)
            yield Bench(sim, clock, core, registry, calls)


# --- Certificates --------------------------------------------------------------------


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, plus
    a SPIFFE-style cert dir (ca.crt, tls.crt, tls.key) for the client."""
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=managers-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d,
    )  # fmt: skip
    for name, ext in (
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        (d / f"{name}.ext").write_text(ext)
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", f"{name}.crt", "-extfile", f"{name}.ext",
            cwd=d,
        )  # fmt: skip
    certdir = d / "certdir"
    certdir.mkdir()
    (certdir / "ca.crt").write_bytes((d / "ca.crt").read_bytes())
    (certdir / "tls.crt").write_bytes((d / "client.crt").read_bytes())
    (certdir / "tls.key").write_bytes((d / "client.key").read_bytes())
    return d
