"""Task ids of the v1 API (the API computes them; the task history indexes them).

An operation RPC must answer with one task id per rack at once, but the
operator creates the Tasks later, and Kubernetes assigns a UID only on
creation. Task names are deterministic (`task_name(taskspec, rack)`), so the
API id of a Task is a name-based UUID: uuid5 over a fixed namespace and
"<namespace>/<task name>". The server computes it at submission and the task
RPCs compute it again for every live Task and every archived one (whose row
keeps namespace and name), so the id stays valid after the Task is archived
and its object is gone.

Task RPCs also accept a Task's Kubernetes UID (the archive's primary key).
Should a Task name be reused (a TaskSpec deleted and re-created with the same
name), the name-based id means the newest run; older runs are listed under
their UID. Tasks imported from the original service keep their id: their
archive row is keyed by it and named `original-<id>`."""

from __future__ import annotations

import uuid

# Fixed forever: changing it changes every task id ever handed out.
TASK_ID_NAMESPACE = uuid.UUID("6f1c2d6e-3b7a-5c1e-9a4f-0d2b8e7c5a31")


IMPORTED_PREFIX = "original-"


def task_id(namespace: str, name: str) -> uuid.UUID:
    return uuid.uuid5(TASK_ID_NAMESPACE, f"{namespace}/{name}")


def imported_name(uid: uuid.UUID) -> str:
    """The archive name of a task imported from the original service."""
    return f"{IMPORTED_PREFIX}{uid}"


def record_id(namespace: str, name: str, uid: str) -> uuid.UUID:
    """The API id of a Task or archive row: the original's id for an imported
    task, else the name-based id."""
    if name.startswith(IMPORTED_PREFIX) and name == f"{IMPORTED_PREFIX}{uid}":
        return uuid.UUID(uid)
    return task_id(namespace, name)
