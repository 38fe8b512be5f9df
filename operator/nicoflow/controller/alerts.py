"""Alerts for people: something happened to hardware that needs attention.

An `AlertRouter` hands each alert to every sink concurrently; a sink that fails
is logged and never stops the others or the caller. Sinks: a structured log
line, a Kubernetes Event on the rack, and a webhook receiving JSON (Slack-,
Alertmanager- or PagerDuty-style relays sit behind it)."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import httpx

from nicoflow.controller import events
from nicoflow.controller.resources import RACKS
from nicoflow.kube.client import ApiError, KubeClient

log = logging.getLogger(__name__)


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


_LOG_LEVEL = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.CRITICAL: logging.CRITICAL,
}


@dataclass(frozen=True)
class Alert:
    severity: Severity
    summary: str
    component: str | None = None
    rack: str | None = None
    operation: str | None = None
    task: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "severity": self.severity.value,
            "summary": self.summary,
            "time": self.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "source": "nico-flow",
        }
        for key in ("component", "rack", "operation", "task"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.details:
            out["details"] = dict(self.details)
        return out


class AlertSink(Protocol):
    name: str

    async def send(self, alert: Alert) -> None: ...


class LogSink:
    """One log record per alert, the alert's fields as `extra` for JSON formatters."""

    name = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._log = logger or logging.getLogger("nicoflow.alerts")

    async def send(self, alert: Alert) -> None:
        self._log.log(
            _LOG_LEVEL[alert.severity],
            "alert: %s",
            alert.summary,
            extra={"alert": alert.to_json()},
        )


_EVENT_TYPE = {
    Severity.INFO: "Normal",
    Severity.WARNING: "Warning",
    Severity.CRITICAL: "Warning",
}


class EventSink:
    """A Kubernetes Event on the alert's Rack (alerts without a rack are skipped)."""

    name = "event"

    def __init__(self, kube: KubeClient, reason: str = "FlowAlert") -> None:
        self._kube = kube
        self._reason = reason

    async def send(self, alert: Alert) -> None:
        if not alert.rack:
            return
        try:
            rack = await self._kube.get(RACKS, alert.rack)
        except ApiError:
            # Still worth an Event by name (kubectl get events shows it).
            rack = {"apiVersion": RACKS.api_version, "kind": RACKS.kind}
            rack["metadata"] = {"name": alert.rack}
        rack.setdefault("apiVersion", RACKS.api_version)
        rack.setdefault("kind", RACKS.kind)
        message = alert.summary if not alert.component else f"{alert.component}: {alert.summary}"
        await events.post(self._kube, rack, _EVENT_TYPE[alert.severity], self._reason, message)


class WebhookError(Exception):
    pass


Sleep = Callable[[float], Awaitable[None]]


class WebhookSink:
    """POST the alert as JSON. Retries connection errors, timeouts, 429 and 5xx
    with exponential backoff (full jitter); other 4xx answers are final."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        headers: Mapping[str, str] | None = None,
        client: httpx.AsyncClient | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook URL must be http(s)://..., got {url!r}")
        if retries < 0 or timeout <= 0:
            raise ValueError("webhook retries must be >= 0 and timeout > 0")
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._headers = {"Content-Type": "application/json", **(headers or {})}
        self._client = client
        self._own_client = client is None
        self._sleep = sleep
        self._rng = rng or random.Random()

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    async def close(self) -> None:
        if self._own_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, alert: Alert) -> None:
        payload = alert.to_json()
        attempts = self.retries + 1
        last = ""
        for attempt in range(1, attempts + 1):
            try:
                resp = await self._http().post(
                    self.url, json=payload, headers=self._headers, timeout=self.timeout
                )
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 300:
                    return
                last = f"HTTP {resp.status_code}"
                if resp.status_code < 500 and resp.status_code != 429:
                    raise WebhookError(f"webhook {self.url} refused the alert: {last}")
            if attempt < attempts:
                cap = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                await self._sleep(self._rng.uniform(cap / 2, cap))
        raise WebhookError(f"webhook {self.url} failed after {attempts} attempts: {last}")


class AlertRouter:
    def __init__(
        self, sinks: Sequence[AlertSink], *, min_severity: Severity = Severity.INFO
    ) -> None:
        self.sinks = list(sinks)
        self._order = list(Severity)
        self.min_severity = min_severity

    async def send(self, alert: Alert) -> None:
        if self._order.index(alert.severity) < self._order.index(self.min_severity):
            return
        results = await asyncio.gather(*(s.send(alert) for s in self.sinks), return_exceptions=True)
        for sink, result in zip(self.sinks, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("alert sink %s failed for %r: %s", sink.name, alert.summary, result)

    async def close(self) -> None:
        for sink in self.sinks:
            closer = getattr(sink, "close", None)
            if closer is not None:
                await closer()
