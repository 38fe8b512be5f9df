"""The webhook alert sink against a real HTTP server on loopback."""

from __future__ import annotations

import json
import threading
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


class Receiver:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses  # answers in order; the last one repeats
        self.bodies: list[dict[str, Any]] = []
        self.content_types: list[str] = []


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver([200])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            rec.bodies.append(json.loads(self.rfile.read(length)))
            rec.content_types.append(self.headers.get("Content-Type", ""))
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
