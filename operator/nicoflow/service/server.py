"""`flow serve`: the v1.Flow gRPC API on grpc.aio.

In-process use (tests):

    server = FlowServer(ServeOptions(host="127.0.0.1", port=0, ...))
    await server.start()          # opens the database engine and Kubernetes client
    channel = grpc.aio.insecure_channel(server.address)
    ...
    await server.stop()

The gRPC health service always runs (`""` and `v1.Flow` report SERVING);
reflection only in dev mode. TLS and environment rules: nicoflow.service.config.
With `metrics_port` set (0: any free port), Prometheus metrics are served on
http://HOST:PORT/metrics; the ready line names the bound address."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from nicoflow.service import config
from nicoflow.service.backend import DEFAULT_NAMESPACE, DEFAULT_TASKSPEC_TTL, Backend
from nicoflow.service.interceptor import RpcInterceptor
from nicoflow.service.metrics import ApiMetrics
from nicoflow.service.servicer import SERVICE, FlowApi, generic_handler, unimplemented

log = logging.getLogger(__name__)

DEFAULT_PORT = 50051
_MESSAGE_LIMIT = 64 * 1024 * 1024
# the largest request is a rack with all its components and BMCs (~100 KB);
# a bigger one is a mistake or an attack, refused before it is parsed
_REQUEST_LIMIT = 4 * 1024 * 1024
_OPTIONS = [
    # a page of racks with components, or a whole rack's report, can be large
    ("grpc.max_send_message_length", _MESSAGE_LIMIT),
    ("grpc.max_receive_message_length", _REQUEST_LIMIT),
]
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


@dataclass(frozen=True)
class ServeOptions:
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    dev_mode: bool = False
    ca_cert: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    insecure: bool = False  # plaintext without certificates (development only)
    roles_file: str | None = None  # who may call what (nicoflow.service.authz)
    namespace: str = DEFAULT_NAMESPACE
    kubeconfig: str | None = None
    database_url: str | None = None
    metrics_port: int | None = None  # None: no metrics endpoint
    # finished TaskSpecs the API made are deleted this long after (0: kept)
    taskspec_ttl: int = DEFAULT_TASKSPEC_TTL
    # one of several processes on this port (nicoflow.service.workers); alone,
    # a port someone else holds is an error, not a silent share
    reuse_port: bool = False
    metrics_host: str | None = None  # default: `host`


class FlowServer:
    def __init__(self, options: ServeOptions, env: Mapping[str, str] | None = None) -> None:
        self.options = options
        self.env = dict(os.environ if env is None else env)
        # refused configurations fail here, before anything is opened or bound
        self.security = config.plan(
            dev_mode=options.dev_mode,
            ca_cert=options.ca_cert,
            tls_cert=options.tls_cert,
            tls_key=options.tls_key,
            insecure=options.insecure,
            roles_file=options.roles_file,
            env=self.env,
        )
        self.port = options.port
        self.backend: Backend | None = None
        self._server: Any = None
        self._health: HealthServicer | None = None
        self.metrics: ApiMetrics | None = None
        self.metrics_port: int | None = None

    @property
    def _host(self) -> str:
        host = self.options.host
        return f"[{host}]" if ":" in host else host

    @property
    def address(self) -> str:
        return f"{self._host}:{self.port}"

    @property
    def _metrics_host(self) -> str:
        host = self.options.metrics_host or self.options.host
        return f"[{host}]" if ":" in host else host

    @property
    def metrics_address(self) -> str | None:
        return None if self.metrics_port is None else f"{self._metrics_host}:{self.metrics_port}"

    def _credentials(self) -> Any:
        tls = self.security.tls
        assert tls is not None
        return grpc.ssl_server_credentials(
            [(tls.key, tls.cert)], root_certificates=tls.ca, require_client_auth=True
        )

    async def start(self) -> None:
        for warning in self.security.warnings:
            log.warning(warning)
        # loop-bound: the engine's pool and the HTTP client belong to this loop
        self.backend = Backend.open(
            database_url=self.options.database_url,
            kubeconfig=self.options.kubeconfig,
            namespace=self.options.namespace,
            taskspec_ttl=self.options.taskspec_ttl,
        )
        if self.options.metrics_port is not None:
            self.metrics = ApiMetrics()
        interceptor = RpcInterceptor(self.metrics, self.security.authorizer, SERVICE)
        server = grpc.aio.server(
            interceptors=[interceptor],
            options=[*_OPTIONS, ("grpc.so_reuseport", int(self.options.reuse_port))],
        )
        server.add_generic_rpc_handlers((generic_handler(FlowApi(self.backend, self.env)),))
        self._health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        if self.options.dev_mode:
            reflection.enable_server_reflection(
                [SERVICE, HEALTH_SERVICE, reflection.SERVICE_NAME], server
            )
        bind = f"{self._host}:{self.options.port}"
        try:
            if self.security.tls is not None:
                port = server.add_secure_port(bind, self._credentials())
            else:
                port = server.add_insecure_port(bind)
        except RuntimeError:  # grpc's "Failed to bind"; the cause is on stderr
            port = 0
        if not port:
            await self.backend.close()
            raise OSError(
                f"cannot listen on {bind}: the port is in use or the address is not "
                "this machine's; choose another with --host/--listen-port"
            )
        self.port = port
        if self.metrics is not None and self.options.metrics_port is not None:
            try:
                self.metrics_port = self.metrics.serve(
                    self.options.metrics_host or self.options.host, self.options.metrics_port
                )
            except OSError:
                await self.backend.close()
                raise
            log.info("metrics on http://%s/metrics", self.metrics_address)
        await server.start()
        self._server = server
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._health.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "flow API serving %s on %s (%s, %s, env %s, namespace %s); not implemented yet: %s",
            SERVICE,
            self.address,
            f"mTLS from {self.security.tls.source}" if self.security.tls else "plaintext",
            self.security.authorizer.describe(),
            self.security.environment,
            self.options.namespace,
            ", ".join(unimplemented()),
        )

    async def stop(self, grace: float = 2.0) -> None:
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        if self.backend is not None:
            await self.backend.close()
            self.backend = None
        if self.metrics is not None:
            self.metrics.close()
            self.metrics_port = None

    def ready_line(self) -> dict[str, Any]:
        """What a parent process reads to find the server."""
        return {
            "event": "ready",
            "grpc": self.address,
            "tls": self.security.tls is not None,
            "dev_mode": self.options.dev_mode,
            "metrics": self.metrics_address,
            "pid": os.getpid(),
        }


async def serve_until_signalled(server: FlowServer, out: TextIO) -> None:
    """Start, print one JSON line with the address, run until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    try:
        out.write(json.dumps(server.ready_line()) + "\n")
        out.flush()
        await stop.wait()
    finally:
        await server.stop()
