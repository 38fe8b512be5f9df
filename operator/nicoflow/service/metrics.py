"""Prometheus metrics of the Flow API (`flow serve --metrics-port`).

Names and labels follow go-grpc-prometheus, so the gRPC dashboards written for
Go servers (and the original service's) read these unchanged: grpc_code holds
Go's code names (OK, InvalidArgument, Canceled ...). In-flight requests are
our addition. Each server has its own registry, so servers in one process
(tests) count apart."""

from __future__ import annotations

from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

UNARY = "unary"
# prometheus.DefBuckets, as go-grpc-prometheus uses them
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LABELS = ["grpc_type", "grpc_service", "grpc_method"]


def go_code(code: grpc.StatusCode) -> str:
    """INVALID_ARGUMENT -> InvalidArgument; Go spells CANCELLED "Canceled"."""
    if code is grpc.StatusCode.CANCELLED:
        return "Canceled"
    if code is grpc.StatusCode.OK:
        return "OK"
    return "".join(part.capitalize() for part in code.name.split("_"))


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self._started = Counter(
            "grpc_server_started_total", "RPCs started on the server.", _LABELS, registry=r
        )
        self._handled = Counter(
            "grpc_server_handled_total",
            "RPCs completed on the server, whatever their status code.",
            [*_LABELS, "grpc_code"],
            registry=r,
        )
        self._seconds = Histogram(
            "grpc_server_handling_seconds",
            "Time from receiving a request to its response, in seconds.",
            _LABELS,
            buckets=BUCKETS,
            registry=r,
        )
        self._received = Counter(
            "grpc_server_msg_received_total", "Request messages received.", _LABELS, registry=r
        )
        self._sent = Counter(
            "grpc_server_msg_sent_total", "Response messages sent.", _LABELS, registry=r
        )
        self._in_flight = Gauge(
            "grpc_server_in_flight_requests",
            "RPCs started and not yet completed.",
            _LABELS,
            registry=r,
        )
        # ours: calls refused for want of a role, by the role they needed
        self._denied = Counter(
            "flow_api_permission_denied_total",
            "RPCs refused because the caller's role is below the one the method needs.",
            ["grpc_service", "grpc_method", "required_role"],
            registry=r,
        )
        self._http: Any = None

    def started(self, service: str, method: str) -> None:
        self._started.labels(UNARY, service, method).inc()
        self._received.labels(UNARY, service, method).inc()
        self._in_flight.labels(UNARY, service, method).inc()

    def handled(self, service: str, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self._handled.labels(UNARY, service, method, go_code(code)).inc()
        self._seconds.labels(UNARY, service, method).observe(seconds)
        if code is grpc.StatusCode.OK:
            self._sent.labels(UNARY, service, method).inc()
        self._in_flight.labels(UNARY, service, method).dec()

    def denied(self, service: str, method: str, required_role: str) -> None:
        self._denied.labels(service, method, required_role).inc()

    def serve(self, host: str, port: int) -> int:
        """Start /metrics on a daemon thread; returns the bound port."""
        self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        bound: int = self._http.server_port
        return bound

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
