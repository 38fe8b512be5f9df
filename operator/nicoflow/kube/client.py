"""A small async Kubernetes API client for our own resources and Events.

kopf watches; this client writes. It speaks plain JSON over httpx so a status
patch is exactly one request, which keeps apiserver writes per Task countable."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

import httpx

from nicoflow.kube.config import KubeConfig
from nicoflow.kube.config import load as load_config

Json = dict[str, Any]
PatchType = Literal["merge", "json", "apply"]

_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass(frozen=True)
class Resource:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        return base


EVENTS = Resource("", "v1", "events", "Event")
NAMESPACES = Resource("", "v1", "namespaces", "Namespace", namespaced=False)
SECRETS = Resource("", "v1", "secrets", "Secret")


class ApiError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    """409: an object with that name exists, or a resourceVersion precondition failed."""


class Invalid(ApiError):
    """422: the apiserver's schema or CEL rules refused the object."""


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        body = resp.json()
        reason, message = body.get("reason", ""), body.get("message", resp.text)
    except ValueError:
        reason, message = "", resp.text
    cls = {404: NotFound, 409: Conflict, 422: Invalid}.get(resp.status_code, ApiError)
    raise cls(resp.status_code, reason, message)


class KubeClient:
    def __init__(self, config: KubeConfig, *, max_connections: int = 32) -> None:
        self.config = config
        self._http = httpx.AsyncClient(
            base_url=config.server,
            verify=_ssl_context(config),
            timeout=httpx.Timeout(30.0, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections),
            headers={"Accept": "application/json", "User-Agent": "nico-flow"},
        )

    @classmethod
    def from_env(cls, kubeconfig: str | None = None) -> Self:
        return cls(load_config(kubeconfig))

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = dict(extra or {})
        token = self.config.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Json:
        content = None if body is None else json.dumps(body).encode()
        resp = await self._http.request(
            method,
            path,
            params=params,
            content=content,
            headers=self._headers({"Content-Type": content_type} if content else None),
        )
        _raise_for(resp)
        result: Json = resp.json() if resp.content else {}
        return result

    async def get(self, res: Resource, name: str, namespace: str | None = None) -> Json:
        return await self._request("GET", res.path(namespace, name))

    async def list(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> list[Json]:
        return [
            item
            async for item in self.iter(
                res,
                namespace,
                label_selector=label_selector,
                field_selector=field_selector,
                page_size=page_size,
            )
        ]

    async def iter(
        self,
        res: Resource,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[Json]:
        params: dict[str, str] = {"limit": str(page_size)}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        while True:
            page = await self._request("GET", res.path(namespace), params=params)
            for item in page.get("items", []):
                item.setdefault("apiVersion", res.api_version)
                item.setdefault("kind", res.kind)
                yield item
            cont = page.get("metadata", {}).get("continue")
            if not cont:
                return
            params["continue"] = cont

    async def create(self, res: Resource, body: Json, namespace: str | None = None) -> Json:
        return await self._request("POST", res.path(namespace), body=body)

    async def replace(self, res: Resource, body: Json, namespace: str | None = None) -> Json:
        """PUT the whole object with the body's resourceVersion: fails with Conflict when stale."""
        name = body["metadata"]["name"]
        return await self._request("PUT", res.path(namespace, name), body=body)

    async def patch(
        self,
        res: Resource,
        name: str,
        patch: Any,
        namespace: str | None = None,
        *,
        subresource: str | None = None,
        patch_type: PatchType = "merge",
        field_manager: str | None = None,
        force: bool = False,
    ) -> Json:
        path = res.path(namespace, name) + (f"/{subresource}" if subresource else "")
        params: dict[str, str] = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if force:
            params["force"] = "true"
        return await self._request(
            "PATCH", path, params=params, body=patch, content_type=_CONTENT_TYPES[patch_type]
        )

    async def patch_status(
        self, res: Resource, name: str, status: Json, namespace: str | None = None
    ) -> Json:
        return await self.patch(res, name, {"status": status}, namespace, subresource="status")

    async def replace_status(self, res: Resource, body: Json, namespace: str | None = None) -> Json:
        """PUT /status with the body's resourceVersion: fails with Conflict when stale."""
        name = body["metadata"]["name"]
        return await self._request("PUT", res.path(namespace, name) + "/status", body=body)

    async def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
    ) -> Json:
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        return await self._request("DELETE", res.path(namespace, name), body=body)


def _ssl_context(config: KubeConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    if config.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if config.client_cert and config.client_key:
        ctx.load_cert_chain(str(config.client_cert), str(config.client_key))
    return ctx
