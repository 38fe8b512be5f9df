"""The webhook alert sink against a real HTTP server on loopback; and the real
operator, given a webhook URL holding a token through a file (as a mounted
Secret), never writing that token to its log or to an Event."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from nicoflow.controller.alerts import (
    Alert,
    AlertRouter,
    LogSink,
    Severity,
    WebhookError,
    WebhookSink,
)
from nicoflow.devstack.controlplane import ControlPlane
from nicoflow.devstack.flowstack import FlowStack
from nicoflow.devstack.postgres import Postgres


class Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses  # answers in order; the last one repeats
        self.bodies: list[dict[str, Any]] = []
        self.content_types: list[str] = []
        self.paths: list[str] = []


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    with receiving(Receiver([200])) as found:
        yield found


@contextlib.contextmanager
def receiving(rec: Receiver) -> Iterator[tuple[Receiver, str]]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            rec.bodies.append(json.loads(self.rfile.read(length)))
            rec.content_types.append(self.headers.get("Content-Type", ""))
            rec.paths.append(self.path)
            status = rec.statuses.pop(0) if len(rec.statuses) > 1 else rec.statuses[0]
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


ALERT = Alert(
    Severity.CRITICAL,
    "Coolant leak on compute-03: forcing power off",
    component="compute-03",
    rack="rack-a01",
    operation="force_power_off",
    task="flow/leak-x-1",
    details={"core_id": "fm100x"},
)


async def test_webhook_retries_after_a_server_error(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.statuses[:] = [500, 200]
    sink = WebhookSink(url, timeout=2.0, retries=3, backoff=0.01)
    try:
        await sink.send(ALERT)
    finally:
        await sink.close()
    assert len(rec.bodies) == 2  # one failure, one retry that succeeded
    assert rec.bodies[1] == rec.bodies[0]
    body = rec.bodies[1]
    assert body["severity"] == "critical"
    assert body["rack"] == "rack-a01"
    assert body["component"] == "compute-03"
    assert body["task"] == "flow/leak-x-1"
    assert body["details"] == {"core_id": "fm100x"}
    assert rec.content_types[0] == "application/json"


async def test_webhook_gives_up_after_its_retries_and_on_client_errors(
    receiver: tuple[Receiver, str],
) -> None:
    rec, url = receiver
    rec.statuses[:] = [503]
    sink = WebhookSink(url, timeout=2.0, retries=2, backoff=0.01)
    with pytest.raises(WebhookError, match="after 3 attempts: HTTP 503"):
        await sink.send(ALERT)
    assert len(rec.bodies) == 3
    rec.statuses[:] = [400]
    with pytest.raises(WebhookError, match="refused"):
        await sink.send(ALERT)
    assert len(rec.bodies) == 4  # a 400 is not retried
    await sink.close()


async def test_router_isolates_a_failing_sink(
    receiver: tuple[Receiver, str], caplog: pytest.LogCaptureFixture
) -> None:
    rec, url = receiver
    dead = WebhookSink("http://127.0.0.1:9/nothing", timeout=0.5, retries=0)
    alive = WebhookSink(url, timeout=2.0, retries=0)
    router = AlertRouter([dead, alive, LogSink()], min_severity=Severity.WARNING)
    with caplog.at_level("WARNING"):
        await router.send(ALERT)
        await router.send(Alert(Severity.INFO, "below the threshold"))
    await router.close()
    assert [b["summary"] for b in rec.bodies] == [ALERT.summary]
    assert any("alert sink webhook failed" in r.getMessage() for r in caplog.records)
    assert any(getattr(r, "alert", {}).get("rack") == "rack-a01" for r in caplog.records)


TOKEN = "xoxb-7f3c9a1e5d2b"


def test_the_operator_never_writes_the_webhook_token_to_logs_or_events(
    control_plane: ControlPlane,
    postgres: Postgres,
    crds_installed: list[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tag = uuid.uuid4().hex[:6]
    ns, db = f"hook-{tag}", f"t_hook_{tag}"
    work = tmp_path_factory.mktemp("webhook")
    control_plane.kubectl("create", "namespace", ns)
    # the relay refuses the alert: the failure is logged, with the URL as it may be shown
    with receiving(Receiver([403])) as (rec, base):
        secret = work / "alert-webhook-url"
        secret.write_text(f"{base}/services/{TOKEN}?token={TOKEN}\n")
        secret.chmod(0o600)
        stack = FlowStack(
            control_plane,
            postgres.create_database(db),
            work,
            racks=1,
            seed=71,
            sim_args=("--latency-power", "0s"),
            namespaces=(ns,),
            operator_args=(
                "--inventory-interval", "1",
                "--leak-namespace", ns,
                "--alert-webhook-file", str(secret),
                "--log-format", "json",
                "--verbose",
            ),
        )  # fmt: skip
        try:
            with stack:
                assert stack.control is not None
                rack = stack.rack_names[0]
                tray = next(
                    c
                    for c in stack.control.rack(rack)["components"]
                    if str(c["name"]).startswith("compute")
                )
                stack.control._json(
                    "POST", f"/v1/components/{tray['id']}/leak", json={"leaking": True}
                )
                deadline = time.monotonic() + 90
                assert stack.operator is not None
                while "alert sink webhook failed" not in stack.operator.log.read_text():
                    assert time.monotonic() < deadline, stack.operator.log.read_text()[-3000:]
                    time.sleep(0.5)
                log = stack.operator.log.read_text()
        finally:
            control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)
            postgres.drop_database(db)
    # the relay was called with the token, and the failure was logged without it
    assert rec.paths
    assert rec.paths[0] == f"/hook/services/{TOKEN}?token={TOKEN}"
    assert rec.bodies[0]["severity"] == "critical"
    assert "refused the alert: HTTP 403" in log
    assert f"{base.rsplit(':', 1)[0]}:" in log
    assert TOKEN not in log
    events = control_plane.kubectl("get", "events", "-A", "-o", "json").stdout
    assert "Leak" in events or "leak" in events
    assert TOKEN not in events
