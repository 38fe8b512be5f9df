"""The simulator as a gRPC server: `forge.Forge` on loopback (plaintext by
default, TLS or mTLS on request), gRPC health and reflection in dev mode,
and the JSON control API next to it.

In-process use (tests, benchmarks):

    async with Simulator(generate_site(3)) as sim:
        channel = grpc.aio.insecure_channel(sim.address)
        ...
        sim.world.set_leak(sim.world.node(machine_id))
        sim.ledger.duplicates()
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from nicoflow._proto.nico import forge_pb2_grpc
from nicoflow.simulator.clock import Clock
from nicoflow.simulator.control import ControlApi, ControlServer
from nicoflow.simulator.faults import FaultPlan, Injector
from nicoflow.simulator.ledger import Ledger
from nicoflow.simulator.servicer import SERVICE, ForgeSimulator, UnknownMethodHandler
from nicoflow.simulator.settings import SimSettings
from nicoflow.simulator.site import Site
from nicoflow.simulator.world import World

log = logging.getLogger(__name__)

_MESSAGE_LIMIT = 64 * 1024 * 1024
_OPTIONS = [
    # A whole site's expected inventory or machine list can be large.
    ("grpc.max_send_message_length", _MESSAGE_LIMIT),
    ("grpc.max_receive_message_length", _MESSAGE_LIMIT),
]


@dataclass(frozen=True)
class TlsFiles:
    """Server certificate and key; with `ca`, clients must present a
    certificate signed by it (mTLS)."""

    cert: Path
    key: Path
    ca: Path | None = None

    def credentials(self) -> Any:
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.ca.read_bytes() if self.ca else None,
            require_client_auth=self.ca is not None,
        )


class Simulator:
    def __init__(
        self,
        site: Site,
        *,
        faults: FaultPlan | Mapping[str, Any] | None = None,
        settings: SimSettings | None = None,
        clock: Clock | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        control_port: int | None = 0,
        dev_mode: bool = False,
        tls: TlsFiles | None = None,
    ) -> None:
        plan = faults if isinstance(faults, FaultPlan) else FaultPlan.from_dict(faults)
        self.injector = Injector(plan)
        self.world = World(site, settings, clock, self.injector)
        self.ledger = Ledger()
        self.servicer = ForgeSimulator(self.world, self.ledger)
        self.host = host
        self.port = port
        self.dev_mode = dev_mode
        self.tls = tls
        self._control_port = control_port
        self._control: ControlServer | None = None
        self._server: Any = None
        self._health: HealthServicer | None = None

    # --- Faults ----------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        return self.injector.plan

    def set_faults(self, plan: FaultPlan | Mapping[str, Any]) -> None:
        """Replace the fault plan (leaks it lists are raised on their components)."""
        if not isinstance(plan, FaultPlan):
            plan = FaultPlan.from_dict(plan)
        self.injector.install(plan)
        self.world.apply_leaks(plan.leaks)

    @property
    def injected(self) -> Mapping[str, int]:
        """Errors injected per method since the fault plan was last set."""
        return self.injector.injected

    # --- Life cycle ------------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def control_url(self) -> str | None:
        return self._control.url if self._control else None

    async def start(self) -> None:
        server = grpc.aio.server(options=_OPTIONS)
        forge_pb2_grpc.add_ForgeServicer_to_server(self.servicer, server)
        server.add_generic_rpc_handlers((UnknownMethodHandler(),))
        services = [SERVICE]
        if self.dev_mode:
            self._health = HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            services += [
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ]
            reflection.enable_server_reflection(services, server)
        bind = f"{self.host}:{self.port}"
        if self.tls is not None:
            port = server.add_secure_port(bind, self.tls.credentials())
        else:
            port = server.add_insecure_port(bind)
        if not port:
            raise OSError(f"cannot listen on {bind}")
        self.port = port
        await server.start()
        self._server = server
        if self._health is not None:
            await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
            await self._health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        if self._control_port is not None:
            self._control = ControlServer(ControlApi(self), self.host, self._control_port)
            await self._control.start()
        log.info(
            "NICo Core simulator serving %s on %s (%d racks)",
            SERVICE,
            self.address,
            len(self.world.site.racks),
        )

    async def stop(self, grace: float = 1.0) -> None:
        if self._control is not None:
            await self._control.stop()
            self._control = None
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def ready_line(self) -> dict[str, Any]:
        """What a parent process reads to find us."""
        return {
            "event": "ready",
            "grpc": self.address,
            "control": self.control_url,
            "tls": self.tls is not None,
            "dev_mode": self.dev_mode,
            "pid": os.getpid(),
            "counts": self.world.site.counts(),
        }


async def serve_until_signalled(sim: Simulator, out: TextIO) -> None:
    """Start, print one JSON line with the addresses, run until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start()
    try:
        out.write(json.dumps(sim.ready_line()) + "\n")
        out.flush()
        await stop.wait()
    finally:
        await sim.stop()
