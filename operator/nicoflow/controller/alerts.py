"""Alerts for people: something happened to hardware that needs attention.

An `AlertRouter` hands each alert to every sink concurrently; a sink that fails
is logged and never stops the others or the caller. Sinks: a structured log
line, a Kubernetes Event on the rack, and a webhook receiving JSON (Slack-,
Alertmanager- or PagerDuty-style relays sit behind it).

A webhook URL usually carries a token (in its path, query or user part): it is
never written anywhere. Errors and logs show only its scheme and host, and the
whole URL, its path and its query are registered with the log redactor."""

from __future__ import annotations

import asyncio
import logging
import random
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import httpx

from nicoflow import logfmt
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


def redact_url(url: str) -> str:
    """scheme://host[:port]/… — what may be shown of a webhook URL."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    tail = "/…" if (parts.path not in ("", "/") or parts.query or parts.fragment) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


def _secret_parts(url: str) -> list[str]:
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    return [url, parts.path, parts.query, parts.fragment, userinfo]


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
            raise ValueError(
                f"webhook URL must be http(s)://..., got one starting {url[:8]!r} (the rest is "
                "not shown: it may hold a token)"
            )
        if retries < 0 or timeout <= 0:
            raise ValueError("webhook retries must be >= 0 and timeout > 0")
        self._url = url
        self.display = redact_url(url)
        parts = _secret_parts(url)
        self._secrets = sorted({p for p in parts if len(p) >= 6 and p != self.display}, key=len)
        logfmt.redact(*self._secrets)
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
                    self._url, json=payload, headers=self._headers, timeout=self.timeout
                )
            except httpx.HTTPError as exc:
                last = self._scrub(f"{type(exc).__name__}: {exc}")
            else:
                if resp.status_code < 300:
                    return
                last = f"HTTP {resp.status_code}"
                if resp.status_code < 500 and resp.status_code != 429:
                    raise WebhookError(f"webhook {self.display} refused the alert: {last}")
            if attempt < attempts:
                cap = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                await self._sleep(self._rng.uniform(cap / 2, cap))
        raise WebhookError(f"webhook {self.display} failed after {attempts} attempts: {last}")

    def _scrub(self, text: str) -> str:
        for secret in reversed(self._secrets):  # longest first
            text = text.replace(secret, logfmt.REDACTED)
        return text


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
