"""Kubernetes-style conditions for the status our controllers write as dicts
(Racks, OperationRules, TaskSpecs); Tasks use the engine's model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MESSAGE_MAX = 32768  # metav1.Condition's limit


def condition(
    previous: Mapping[str, Any] | None,
    ctype: str,
    status: str,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int | None,
) -> dict[str, Any]:
    """A condition; `lastTransitionTime` stays as it was in `previous` (an
    object's status) while the condition keeps its status, else `now`."""
    since = now
    for c in (previous or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == status:
            since = c.get("lastTransitionTime") or now
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message[:MESSAGE_MAX],
        "lastTransitionTime": since,
        "observedGeneration": generation,
    }
