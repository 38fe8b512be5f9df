"""Kubernetes Events for our objects: best effort, never failing the caller."""

from __future__ import annotations

import logging
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from nicoflow.kube.client import EVENTS, ApiError, KubeClient

log = logging.getLogger(__name__)
COMPONENT = "nico-flow-operator"


async def post(
    kube: KubeClient, obj: dict[str, Any], etype: str, reason: str, message: str
) -> None:
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace") or "default"
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{meta.get('name', 'obj')}.{uuid.uuid4().hex[:12]}",
            "namespace": namespace,
        },
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": etype,
        "reason": reason,
        "message": message[:1024],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": os.environ.get("HOSTNAME", "local"),
    }
    try:
        await kube.create(EVENTS, event, namespace)
    except (ApiError, httpx.HTTPError) as exc:
        log.debug("could not post event %s for %s: %s", reason, meta.get("name"), exc)
