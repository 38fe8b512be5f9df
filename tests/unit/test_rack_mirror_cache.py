"""What RackController keeps of each Rack: the whole body only while there is
work to do; once mirrored, the metadata that decides whether there is work."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from nicoflow.controller.rack_mirror import FINALIZER, RackController


def rack(generation: int, rv: int, *, finalizers: list[str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "r1",
            "uid": "u-1",
            "generation": generation,
            "resourceVersion": str(rv),
            "finalizers": finalizers if finalizers is not None else [FINALIZER],
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
        },
        "spec": {"components": [{"name": f"compute-{i:02}"} for i in range(35)]},
        "status": {"componentCount": 35},
    }


class Recorder(RackController):
    """Only the cache logic: kicks are recorded instead of run."""

    def __init__(self) -> None:
        super().__init__(cast(Any, None), cast(Any, None))
        self.kicked: list[str] = []

    def kick(self, name: str) -> None:
        self.kicked.append(name)


def test_a_mirrored_rack_is_cached_as_metadata_only() -> None:
    c = Recorder()
    c._mirrored["r1"] = ("u-1", 3)
    c.observe("MODIFIED", rack(3, 10))  # e.g. our own status write coming back
    cached = c._latest["r1"]
    assert set(cached) == {"metadata"}
    assert set(cached["metadata"]) == {
        "name",
        "uid",
        "generation",
        "resourceVersion",
        "finalizers",
    }
    assert c.kicked == []


def test_a_rack_with_work_keeps_its_body_and_is_kicked() -> None:
    c = Recorder()
    c._mirrored["r1"] = ("u-1", 3)
    body = rack(4, 11)  # a new generation: its spec must be mirrored
    c.observe("MODIFIED", body)
    assert c._latest["r1"] is body
    assert c.kicked == ["r1"]
    # a deleted Rack still holding our finalizer has work too
    gone = rack(4, 12)
    gone["metadata"]["deletionTimestamp"] = "2026-11-29T00:00:00Z"
    c.observe("MODIFIED", gone)
    assert c._latest["r1"] is gone
    assert c.kicked == ["r1", "r1"]


def test_after_handling_the_body_is_dropped() -> None:
    class Handled(RackController):
        async def _handle(self, body: dict[str, Any]) -> None:
            self._mirrored[body["metadata"]["name"]] = ("u-1", body["metadata"]["generation"])

    async def scenario() -> dict[str, Any]:
        c = Handled(cast(Any, None), cast(Any, None))
        c.observe("ADDED", rack(1, 5))
        await asyncio.gather(*c._work.running())
        return c._latest["r1"]

    cached = asyncio.run(scenario())
    assert set(cached) == {"metadata"}
    assert "managedFields" not in cached["metadata"]
