"""Edit Rack objects and their inventory rows in one call.

The pattern of CreateExpectedRack, for edits: inside one database
transaction the racks' mirror locks are taken (sorted by name, so two
requests never wait on each other crosswise), the objects are read, the
wanted specs are mirrored into the rows, the objects are merge-patched with
the resourceVersion they were read at, and the rows are mirrored again from
what the apiserver returned (its uid and generation, so the operator's own
mirror of the new generation finds nothing left to do).

A patch refused because the object changed meanwhile (409) rolls everything
back and the whole request runs again on fresh reads. When a later step
fails after an object was written, that object is patched back to what it
was (again only if nobody changed it since)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from nicoflow.inventory import mirror
from nicoflow.inventory.models import Component
from nicoflow.kube.client import Conflict, Invalid
from nicoflow.kube.client import NotFound as KubeNotFound
from nicoflow.kube.resources import RACKS
from nicoflow.kube.retry import retrying
from nicoflow.service.backend import Backend
from nicoflow.service.component_spec import entry_key, ids_annotation, merge_patch
from nicoflow.service.errors import AlreadyExists, InvalidArgument, NotFound, ServiceError
from nicoflow.service.rack_body import ANNOTATION_COMPONENT_IDS

T = TypeVar("T")

ATTEMPTS = 5
_PAUSE = 0.05


class Aborted(ServiceError):
    code = grpc.StatusCode.ABORTED


class _Stale(Exception):
    """A Rack object changed between our read and our patch."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


async def with_retries(call: Callable[[], Awaitable[T]], attempts: int = ATTEMPTS) -> T:
    """Run a whole read-decide-write request again while a Rack it edits keeps changing."""
    stale = ""
    for attempt in range(attempts):
        try:
            return await call()
        except _Stale as exc:
            stale = exc.name
            await asyncio.sleep(_PAUSE * (attempt + 1))
    raise Aborted(
        f"rack {stale!r} kept changing while this request edited it ({attempts} attempts); "
        "retry the request"
    )


def rack_maker(spec: dict[str, Any]) -> str:
    return str(spec["identity"]["manufacturer"])


@dataclass
class RackEdit:
    """One Rack object as read, and the spec this request wants it to have."""

    obj: dict[str, Any]
    spec: dict[str, Any]

    @classmethod
    def of(cls, obj: dict[str, Any]) -> RackEdit:
        return cls(obj, copy.deepcopy(obj.get("spec") or {}))

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def components(self) -> list[dict[str, Any]]:
        comps: list[dict[str, Any]] = self.spec.setdefault("components", [])
        return comps

    def names(self) -> set[str]:
        return {str(c["name"]) for c in self.components}

    def find(self, key: tuple[str, str]) -> int | None:
        """Index of the entry with this inventory key."""
        maker = rack_maker(self.spec)
        for i, entry in enumerate(self.components):
            if entry_key(entry, maker) == key:
                return i
        return None


@dataclass
class RackTxn:
    """One attempt: the open session and the objects written so far (to undo on failure)."""

    backend: Backend
    session: AsyncSession
    written: list[tuple[RackEdit, dict[str, Any]]] = field(default_factory=list)

    async def lock(self, names: Iterable[str]) -> None:
        for name in sorted(set(names)):
            # the mirror's own per-rack lock: the operator mirroring the same rack waits
            await mirror._lock_rack_name(self.session, name)

    async def read(self, name: str) -> RackEdit:
        try:
            obj = await retrying(lambda: self.backend.kube.get(RACKS, name))
        except KubeNotFound:
            raise NotFound(
                f"rack {name!r} is in the inventory but its Rack object is missing in "
                "Kubernetes (deleted, or not created yet); check `kubectl get racks`"
            ) from None
        return RackEdit.of(obj)

    async def mirror(self, body: dict[str, Any]) -> uuid.UUID:
        try:
            result = await mirror.upsert_rack(self.session, body)
        except mirror.MirrorConflict as exc:
            raise AlreadyExists(str(exc)) from None
        except mirror.MirrorError as exc:
            raise InvalidArgument(str(exc)) from None
        return result.rack_id

    async def _ids(self, rack_id: uuid.UUID, spec: dict[str, Any]) -> dict[str, uuid.UUID]:
        rows = await self.session.execute(
            select(Component.id, Component.manufacturer, Component.serial_number).where(
                Component.rack_id == rack_id
            )
        )
        by_key = {(maker, serial): cid for cid, maker, serial in rows.all()}
        maker = rack_maker(spec)
        out: dict[str, uuid.UUID] = {}
        for entry in spec.get("components") or []:
            cid = by_key.get(entry_key(entry, maker))
            if cid is not None:
                out[str(entry["name"])] = cid
        return out

    async def write(self, edits: Sequence[RackEdit]) -> None:
        """Mirror the wanted specs, then patch the objects in the given order."""
        planned = []
        for edit in edits:
            meta = edit.obj["metadata"]
            # no uid/generation: the mirror must not take the wanted spec for one it saw
            body = {
                "apiVersion": edit.obj.get("apiVersion"),
                "kind": "Rack",
                "metadata": {"name": edit.name, "labels": dict(meta.get("labels") or {})},
                "spec": edit.spec,
            }
            rack_id = await self.mirror(body)
            planned.append((edit, ids_annotation(await self._ids(rack_id, edit.spec))))
        for edit, ids in planned:
            old_ids = (edit.obj["metadata"].get("annotations") or {}).get(ANNOTATION_COMPONENT_IDS)
            if edit.spec == edit.obj.get("spec") and ids == old_ids:
                continue
            patch = {
                "metadata": {
                    "resourceVersion": edit.obj["metadata"]["resourceVersion"],
                    "annotations": {ANNOTATION_COMPONENT_IDS: ids},
                },
                "spec": merge_patch(edit.obj.get("spec") or {}, edit.spec),
            }
            self.written.append((edit, await self._patch(edit.name, patch)))
        for _, obj in self.written:
            await self.mirror(obj)

    async def _patch(self, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        try:
            return await retrying(lambda: self.backend.kube.patch(RACKS, name, patch))
        except Conflict:
            raise _Stale(name) from None
        except KubeNotFound:
            raise NotFound(f"the Rack object {name!r} was deleted meanwhile") from None
        except Invalid as exc:
            raise InvalidArgument(f"Kubernetes refused the Rack {name!r}: {exc.message}") from None

    async def undo(self) -> None:
        for edit, obj in reversed(self.written):
            old_ids = (edit.obj["metadata"].get("annotations") or {}).get(ANNOTATION_COMPONENT_IDS)
            patch = {
                "metadata": {
                    "resourceVersion": obj["metadata"]["resourceVersion"],
                    "annotations": {ANNOTATION_COMPONENT_IDS: old_ids},  # None removes it
                },
                "spec": merge_patch(obj.get("spec") or {}, edit.obj.get("spec") or {}),
            }
            with contextlib.suppress(Exception):
                await self.backend.kube.patch(RACKS, edit.name, patch)
        self.written.clear()


@contextlib.asynccontextmanager
async def rack_transaction(backend: Backend) -> AsyncIterator[RackTxn]:
    """A database transaction whose Rack writes are undone when it does not commit."""
    txn: RackTxn | None = None
    try:
        async with backend.sessions() as session, session.begin():
            txn = RackTxn(backend, session)
            yield txn
    except BaseException:
        if txn is not None:
            await txn.undo()
        raise
