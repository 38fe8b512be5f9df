"""A small HTTP client of the apiserver for the benchmarks.

kubectl costs a process per call; at 1,000 racks the benchmark would mostly
measure kubectl. Reads here are GETs, so they never show in the write counts."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from nicoflow.devstack.controlplane import ControlPlane

GROUP = "flow.nico.io/v1alpha1"


class Kube:
    def __init__(self, cp: ControlPlane) -> None:
        self._http = httpx.Client(
            base_url=cp.server,
            headers={"Authorization": f"Bearer {cp.token}"},
            verify=False,
            timeout=120,
        )

    def _req(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """One retry: the apiserver may drop an idle keep-alive connection."""
        try:
            return self._http.request(method, url, **kw)
        except httpx.TransportError:
            return self._http.request(method, url, **kw)

    def close(self) -> None:
        self._http.close()

    @staticmethod
    def path(plural: str, namespace: str | None = None, name: str | None = None) -> str:
        base = "/api/v1" if plural in ("namespaces", "events") else f"/apis/{GROUP}"
        ns = f"/namespaces/{namespace}" if namespace else ""
        return f"{base}{ns}/{plural}" + (f"/{name}" if name else "")

    def create(self, plural: str, body: dict[str, Any], namespace: str | None = None) -> None:
        self._req("POST", self.path(plural, namespace), json=body).raise_for_status()

    def apply(self, plural: str, body: dict[str, Any], namespace: str | None = None) -> None:
        """Server-side apply (JSON is YAML, so the apply patch type takes it)."""
        resp = self._req(
            "PATCH",
            self.path(plural, namespace, body["metadata"]["name"]),
            content=json.dumps(body),
            params={"fieldManager": "flow-bench", "force": "true"},
            headers={"Content-Type": "application/apply-patch+yaml"},
        )
        resp.raise_for_status()

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        resp = self._req("GET", self.path(plural, namespace, name))
        resp.raise_for_status()
        found: dict[str, Any] = resp.json()
        return found

    def exists(self, plural: str, name: str, namespace: str | None = None) -> bool:
        return self._req("GET", self.path(plural, namespace, name)).status_code == 200

    def list(
        self, plural: str, namespace: str | None = None, selector: str = ""
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": selector} if selector else {}
        resp = self._req("GET", self.path(plural, namespace), params=params)
        resp.raise_for_status()
        items: list[dict[str, Any]] = resp.json()["items"]
        return items

    def delete(self, plural: str, name: str, namespace: str | None = None) -> None:
        resp = self._req("DELETE", self.path(plural, namespace, name))
        if resp.status_code not in (200, 202, 404):
            resp.raise_for_status()

    def delete_all(self, plural: str, namespace: str | None = None, selector: str = "") -> None:
        params = {"labelSelector": selector} if selector else {}
        resp = self._req("DELETE", self.path(plural, namespace), params=params)
        if resp.status_code not in (200, 202, 404):
            resp.raise_for_status()

    def namespace(self, name: str) -> None:
        resp = self._req(
            "POST", "/api/v1/namespaces", json={"metadata": {"name": name}, "apiVersion": "v1"}
        )
        if resp.status_code != 409:
            resp.raise_for_status()


def poll(
    check: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    alive: Callable[[], bool] = lambda: True,
) -> float:
    """Call `check` until true; the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        if not alive():
            raise RuntimeError(f"process died while waiting for {what}")
        time.sleep(interval)
    raise TimeoutError(f"{what}: not done after {timeout:.0f}s")
