"""Our custom resources as the Kubernetes client addresses them, and the labels
and names put on the objects Flow creates.

Shared by the operator and the API server (which must not import each other),
so both name Tasks and label objects the same way."""

from __future__ import annotations

import hashlib
import re

from nicoflow.kube.client import Resource

GROUP = "flow.nico.io"
VERSION = "v1alpha1"

RACKS = Resource(GROUP, VERSION, "racks", "Rack", namespaced=False)
RULES = Resource(GROUP, VERSION, "operationrules", "OperationRule", namespaced=False)
TASKSPECS = Resource(GROUP, VERSION, "taskspecs", "TaskSpec")
TASKS = Resource(GROUP, VERSION, "tasks", "Task")
SCHEDULES = Resource(GROUP, VERSION, "taskschedules", "TaskSchedule")
ACCESS_POLICIES = Resource(
    GROUP, VERSION, "rackaccesspolicies", "RackAccessPolicy", namespaced=False
)

LABEL_RACK = f"{GROUP}/rack"
LABEL_OPERATION = f"{GROUP}/operation"
LABEL_TASKSPEC = f"{GROUP}/taskspec"
# a TaskSpec (and its Tasks) answering a coolant leak: pre-empts, never waits
LABEL_LEAK_RESPONSE = f"{GROUP}/leak-response"
# TaskSchedules: the label on the TaskSpecs a schedule creates, and when each
# was due; the API's ResumeTaskSchedule marks when firing may start again.
LABEL_SCHEDULE = f"{GROUP}/schedule"
ANNOTATION_SCHEDULED_TIME = f"{GROUP}/scheduled-time"
ANNOTATION_RESUMED_AT = f"{GROUP}/resumed-at"
FINALIZER = f"{GROUP}/inventory"

_INVALID = re.compile(r"[^a-z0-9-]+")


def task_name(taskspec: str, rack: str) -> str:
    """Deterministic, so creating a rack's Task twice (operator restart) is a
    no-op; shortened with a hash when the pair is too long for a name."""
    base = _INVALID.sub("-", f"{taskspec}-{rack}".lower()).strip("-")
    if len(base) <= 63:
        return base
    digest = hashlib.sha256(f"{taskspec}/{rack}".encode()).hexdigest()[:8]
    return f"{base[:54].rstrip('-')}-{digest}"
