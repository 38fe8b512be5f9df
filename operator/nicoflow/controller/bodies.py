"""Keep what the operator caches of each object small.

The operator holds every Task in memory (admission needs them all). A watched
body carries managedFields — often larger than the spec — a snapshot of its
rule that is identical across the Tasks of one TaskSpec, and its rack's
component list, identical across the Tasks on that rack. Dropping the first
and sharing the others keeps thousands of waiting Tasks cheap.
Cached bodies are read-only: every change arrives as a new body."""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

_LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


class _Shared:
    """One copy of each distinct value (bounded, least recently used out)."""

    def __init__(self, limit: int) -> None:
        self._items: OrderedDict[str, Any] = OrderedDict()
        self._limit = limit

    def intern(self, value: Any) -> Any:
        key = json.dumps(value, sort_keys=True, separators=(",", ":"))
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            return found
        self._items[key] = value
        if len(self._items) > self._limit:
            self._items.popitem(last=False)
        return value


_RULES = _Shared(512)
# A rack's resolved components repeat in every Task on it (a restart today, an
# upgrade tomorrow, a schedule's nightly run): one copy per distinct list.
_COMPONENTS = _Shared(8192)


def compact(body: dict[str, Any]) -> dict[str, Any]:
    """The body without managedFields and last-applied annotation, with its
    rule definition shared. Returns a new top-level dict; nested values that
    are kept are the same objects."""
    out = dict(body)
    meta = body.get("metadata")
    if isinstance(meta, dict) and ("managedFields" in meta or _has_last_applied(meta)):
        meta = {k: v for k, v in meta.items() if k != "managedFields"}
        if _has_last_applied(meta):
            meta["annotations"] = {
                k: v for k, v in meta["annotations"].items() if k != _LAST_APPLIED
            }
        out["metadata"] = meta
    spec = body.get("spec")
    if isinstance(spec, dict):
        shared = dict(spec)
        rule = spec.get("rule")
        if isinstance(rule, dict) and isinstance(rule.get("definition"), dict):
            shared["rule"] = {**rule, "definition": _RULES.intern(rule["definition"])}
        if isinstance(spec.get("components"), list):
            shared["components"] = _COMPONENTS.intern(spec["components"])
        out["spec"] = shared
    return out


def _has_last_applied(meta: dict[str, Any]) -> bool:
    annotations = meta.get("annotations")
    return isinstance(annotations, dict) and _LAST_APPLIED in annotations


# What a finished Task's status no longer needs in memory once it is archived:
# the per-stage, per-component results (most of a Task's size). Admission, the
# TaskSpec summary and TTL read the phase, the times and the message.
_SETTLED_DROPS = ("stages", "commanded")


def settled(body: dict[str, Any]) -> dict[str, Any]:
    """A finished, archived Task as the operator keeps it: without its stage
    results (the apiserver and the archive still have them)."""
    status = body.get("status")
    if not isinstance(status, dict) or not any(k in status for k in _SETTLED_DROPS):
        return body
    return {**body, "status": {k: v for k, v in status.items() if k not in _SETTLED_DROPS}}
