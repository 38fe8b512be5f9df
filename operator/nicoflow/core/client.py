"""Async client for NICo Core (`forge.Forge`) over grpc.aio.

- The channel is created inside a running event loop: `await CoreClient.connect()`
  or `async with CoreClient.session() as core:`; `close()` shuts it down.
- TLS/mTLS by default (see core.tls); plaintext only when explicitly allowed.
- Every call has a deadline (default 60 s).
- Transient failures are retried with exponential backoff and full jitter, but
  only for reads and for writes known (or marked) to be idempotent; a power or
  firmware command is never sent twice by the client.
- Every state-changing call carries an idempotency key as `x-request-id`
  metadata: a real Core ignores it, the simulator records it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from nicoflow._proto.nico import common_pb2, forge_pb2, site_explorer_pb2
from nicoflow.core.interceptors import CallHook, ObservingInterceptor
from nicoflow.core.tls import (
    ENV_ALLOW_INSECURE,
    ENV_CERT_DIR,
    TlsConfigError,
    TlsMaterial,
    env_flag,
    resolve_tls,
)

log = logging.getLogger(__name__)

ENV_CORE_URL = "NICO_CORE_API_URL"
SERVICE = "forge.Forge"
REQUEST_ID_METADATA = "x-request-id"
DEFAULT_TIMEOUT = 60.0

Resp = TypeVar("Resp", bound=Message)

_READ_RETRY_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
# A write that hit its deadline may have been applied; only reads retry it.
_WRITE_RETRY_CODES = _READ_RETRY_CODES - {grpc.StatusCode.DEADLINE_EXCEEDED}


TRANSIENT_CODES = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED}
)
# Codes Core answers after looking at a request and declining it, or after
# trying it and reporting that it failed (INTERNAL: the BMC refused it): the
# call did not apply. Any other failure (unavailable, overloaded, aborted,
# deadline, unknown ...) may have come after the call applied and its reply
# was lost.
REFUSED_CODES = frozenset(
    {
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)


class CoreError(Exception):
    """A Core RPC failed. `code` and `details` are those of the last attempt."""

    def __init__(
        self,
        method: str,
        code: grpc.StatusCode,
        details: str,
        attempts: int = 1,
        *,
        write: bool = True,
    ) -> None:
        self.method = method
        self.code = code
        self.details = details
        self.attempts = attempts
        # a failed read changed nothing, whatever its code
        self.write = write
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"NICo Core {method} failed{tries}: {code.name}: {details}")

    @property
    def transient(self) -> bool:
        """Core could not take the call (down, overloaded, aborted): trying
        again later may succeed. A deadline is not transient: the call may have
        been applied."""
        return self.code in TRANSIENT_CODES

    @property
    def uncertain(self) -> bool:
        """Whether the call may have changed state despite the error: a read
        never does, a write unless Core refused it."""
        return self.write and self.code not in REFUSED_CODES


class CoreDeadlineExceeded(CoreError):
    def __init__(
        self, method: str, timeout: float, details: str, attempts: int = 1, *, write: bool = True
    ) -> None:
        super().__init__(method, grpc.StatusCode.DEADLINE_EXCEEDED, details, attempts, write=write)
        self.timeout = timeout
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        self.args = (f"NICo Core {method} did not answer within its {timeout:g} s deadline{tries}",)


class CallRate:
    """Spreads calls out to at most `per_second` a second, allowing a burst of
    one second's worth: a token bucket whose tokens may be reserved ahead, so
    waiting callers keep their order."""

    def __init__(
        self,
        per_second: float,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self.per_second = per_second
        self._sleep = sleep
        self._clock = clock
        self._on_wait = on_wait
        self._tokens = per_second
        self._at = clock()

    async def acquire(self) -> None:
        now = self._clock()
        self._tokens = min(self.per_second, self._tokens + (now - self._at) * self.per_second)
        self._at = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return
        wait = -self._tokens / self.per_second
        if self._on_wait is not None:
            self._on_wait(wait)
        await self._sleep(wait)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 4
    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Delay before retry number `attempt` (1-based): full jitter over an
        exponentially growing cap, so retrying clients spread out."""
        cap = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return rng.uniform(0.0, cap)


def normalize_target(url: str) -> str:
    """Accept host:port, a gRPC target (dns:///...), or an http(s):// URL."""
    target = url.strip()
    for prefix in ("https://", "http://", "grpcs://", "grpc://"):
        if target.startswith(prefix):
            target = target[len(prefix) :]
            break
    return target.rstrip("/")


@dataclass(frozen=True)
class CoreClientSettings:
    target: str
    tls: TlsMaterial | None
    # Plaintext must be asked for; tls=None without it is refused.
    allow_insecure: bool = False
    timeout: float = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Overrides the TLS server name (when the certificate's name differs from the host).
    server_name: str | None = None
    # At most this many calls (reads and writes, retries included) start per
    # second; 0 = no limit. Protects Core from a fleet-wide run.
    max_calls_per_second: float = 0.0

    def __post_init__(self) -> None:
        if not self.target:
            raise ValueError(f"NICo Core address is empty (set ${ENV_CORE_URL})")
        if self.tls is None and not self.allow_insecure:
            raise TlsConfigError(
                "refusing plaintext gRPC to NICo Core: provide TLS material or set "
                f"{ENV_ALLOW_INSECURE}=true for development"
            )
        if self.timeout <= 0:
            raise ValueError("timeout must be greater than zero")
        if self.retry.max_attempts < 1:
            raise ValueError("retry.max_attempts must be at least 1")
        if self.max_calls_per_second < 0:
            raise ValueError("max_calls_per_second must not be negative")

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        target: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ca_cert: str | Path | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        cert_dir: str | Path | None = None,
        allow_insecure: bool | None = None,
        server_name: str | None = None,
        retry: RetryPolicy | None = None,
        max_calls_per_second: float = 0.0,
    ) -> CoreClientSettings:
        """Explicit arguments win over $NICO_CORE_API_URL, $CERTDIR and
        $ALLOW_INSECURE_GRPC."""
        env = os.environ if env is None else env
        url = target or env.get(ENV_CORE_URL, "")
        if not url:
            raise ValueError(f"NICo Core address unknown: set ${ENV_CORE_URL} (host:port)")
        insecure = (
            env_flag(env.get(ENV_ALLOW_INSECURE)) if allow_insecure is None else allow_insecure
        )
        tls = resolve_tls(
            ca_cert=ca_cert,
            tls_cert=tls_cert,
            tls_key=tls_key,
            cert_dir=cert_dir or env.get(ENV_CERT_DIR) or None,
            allow_insecure=insecure,
        )
        return cls(
            target=normalize_target(url),
            tls=tls,
            allow_insecure=insecure,
            timeout=timeout,
            retry=retry or RetryPolicy(),
            server_name=server_name,
            max_calls_per_second=max_calls_per_second,
        )


_CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # Exploration reports for a whole rack can be large.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
]


def _validate_key(key: str) -> str:
    if not key or not key.isascii() or not key.isprintable():
        raise ValueError(f"idempotency key must be non-empty printable ASCII, got {key!r}")
    return key


class CoreClient:
    """Typed async methods for every Core RPC Flow uses. Read methods take a
    request and return the response; state-changing methods also require an
    `idempotency_key`. `deadline` (seconds) overrides the default per-call deadline;
    `idempotent` overrides whether a write may be retried."""

    def __init__(
        self,
        channel: Any,
        settings: CoreClientSettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_throttle: Callable[[float], None] | None = None,
    ) -> None:
        self._channel = channel
        self._settings = settings
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._callables: dict[str, Any] = {}
        self._rate = (
            CallRate(settings.max_calls_per_second, sleep=sleep, on_wait=on_throttle)
            if settings.max_calls_per_second
            else None
        )

    @classmethod
    async def connect(
        cls,
        settings: CoreClientSettings | None = None,
        *,
        on_call: CallHook | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_throttle: Callable[[float], None] | None = None,
    ) -> CoreClient:
        """Open a channel on the running loop (grpc.aio channels are bound to
        the loop that creates them)."""
        asyncio.get_running_loop()
        settings = settings or CoreClientSettings.from_env()
        interceptors = [ObservingInterceptor(on_call=on_call)]
        options = list(_CHANNEL_OPTIONS)
        if settings.tls is None:
            channel = grpc.aio.insecure_channel(
                settings.target, options=options, interceptors=interceptors
            )
        else:
            creds = grpc.ssl_channel_credentials(
                root_certificates=settings.tls.ca,
                private_key=settings.tls.key,
                certificate_chain=settings.tls.cert,
            )
            if settings.server_name:
                options.append(("grpc.ssl_target_name_override", settings.server_name))
            channel = grpc.aio.secure_channel(
                settings.target, creds, options=options, interceptors=interceptors
            )
        log.info(
            "NICo Core client for %s (%s)",
            settings.target,
            settings.tls.source if settings.tls else "plaintext",
        )
        return cls(channel, settings, sleep=sleep, rng=rng, on_throttle=on_throttle)

    @classmethod
    @asynccontextmanager
    async def session(
        cls, settings: CoreClientSettings | None = None, **kwargs: Any
    ) -> AsyncIterator[CoreClient]:
        client = await cls.connect(settings, **kwargs)
        try:
            yield client
        finally:
            await client.close()

    async def __aenter__(self) -> CoreClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    @property
    def settings(self) -> CoreClientSettings:
        return self._settings

    async def wait_ready(self, within: float = 10.0) -> None:
        """Block until the channel is connected (for startup probes)."""
        await asyncio.wait_for(self._channel.channel_ready(), within)

    # --- transport ---------------------------------------------------------------------

    def _callable(self, method: str, response_cls: type[Message]) -> Any:
        fn = self._callables.get(method)
        if fn is None:
            fn = self._channel.unary_unary(
                f"/{SERVICE}/{method}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_cls.FromString,
            )
            self._callables[method] = fn
        return fn

    async def _invoke(
        self,
        method: str,
        request: Message,
        response_cls: type[Resp],
        *,
        write: bool,
        idempotent: bool,
        idempotency_key: str | None = None,
        deadline: float | None = None,
    ) -> Resp:
        metadata: tuple[tuple[str, str], ...] = ()
        if write:
            metadata = ((REQUEST_ID_METADATA, _validate_key(idempotency_key or "")),)
        seconds = deadline if deadline is not None else self._settings.timeout
        retry_codes = (
            _READ_RETRY_CODES if not write else _WRITE_RETRY_CODES if idempotent else frozenset()
        )
        policy = self._settings.retry
        fn = self._callable(method, response_cls)
        attempt = 0
        while True:
            attempt += 1
            if self._rate is not None:
                await self._rate.acquire()
            try:
                response: Resp = await fn(request, timeout=seconds, metadata=metadata)
                return response
            except grpc.aio.AioRpcError as exc:
                code = exc.code()
                if code in retry_codes and attempt < policy.max_attempts:
                    delay = policy.backoff(attempt, self._rng)
                    log.warning(
                        "NICo Core %s: %s (attempt %d of %d), retrying in %.2fs",
                        method,
                        code.name,
                        attempt,
                        policy.max_attempts,
                        delay,
                    )
                    await self._sleep(delay)
                    continue
                details = exc.details() or ""
                details += self._connection_hint(code, details)
                if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                    raise CoreDeadlineExceeded(
                        method, seconds, details, attempt, write=write
                    ) from exc
                raise CoreError(method, code, details, attempt, write=write) from exc

    def _connection_hint(self, code: grpc.StatusCode, details: str) -> str:
        """Why a plaintext connection may have been dropped: gRPC only says the
        socket closed when the server wanted a TLS handshake."""
        if (
            self._settings.tls is None
            and code == grpc.StatusCode.UNAVAILABLE
            and "failed to connect" in details
            and "refused" not in details.lower()
        ):
            return (
                f" (the client connected without TLS, as plaintext was allowed; if NICo Core at "
                f"{self._settings.target} expects TLS, give the client certificates via "
                f"${ENV_CERT_DIR} or the TLS file options)"
            )
        return ""

    async def _read(
        self, method: str, request: Message, response_cls: type[Resp], deadline: float | None
    ) -> Resp:
        return await self._invoke(
            method, request, response_cls, write=False, idempotent=True, deadline=deadline
        )

    async def _write(
        self,
        method: str,
        request: Message,
        response_cls: type[Resp],
        *,
        idempotency_key: str,
        idempotent: bool,
        deadline: float | None,
    ) -> Resp:
        return await self._invoke(
            method,
            request,
            response_cls,
            write=True,
            idempotent=idempotent,
            idempotency_key=idempotency_key,
            deadline=deadline,
        )

    # --- component-manager dispatch ----------------------------------------------------

    async def component_power_control(
        self,
        request: forge_pb2.ComponentPowerControlRequest,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> forge_pb2.ComponentPowerControlResponse:
        return await self._write(
            "ComponentPowerControl",
            request,
            forge_pb2.ComponentPowerControlResponse,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def get_component_inventory(
        self, request: forge_pb2.GetComponentInventoryRequest, *, deadline: float | None = None
    ) -> forge_pb2.GetComponentInventoryResponse:
        return await self._read(
            "GetComponentInventory", request, forge_pb2.GetComponentInventoryResponse, deadline
        )

    async def update_component_firmware(
        self,
        request: forge_pb2.UpdateComponentFirmwareRequest,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> forge_pb2.UpdateComponentFirmwareResponse:
        return await self._write(
            "UpdateComponentFirmware",
            request,
            forge_pb2.UpdateComponentFirmwareResponse,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def get_component_firmware_status(
        self, request: forge_pb2.GetComponentFirmwareStatusRequest, *, deadline: float | None = None
    ) -> forge_pb2.GetComponentFirmwareStatusResponse:
        return await self._read(
            "GetComponentFirmwareStatus",
            request,
            forge_pb2.GetComponentFirmwareStatusResponse,
            deadline,
        )

    async def list_component_firmware_versions(
        self,
        request: forge_pb2.ListComponentFirmwareVersionsRequest,
        *,
        deadline: float | None = None,
    ) -> forge_pb2.ListComponentFirmwareVersionsResponse:
        return await self._read(
            "ListComponentFirmwareVersions",
            request,
            forge_pb2.ListComponentFirmwareVersionsResponse,
            deadline,
        )

    # --- machines ------------------------------------------------------------------------

    async def version(
        self, request: forge_pb2.VersionRequest | None = None, *, deadline: float | None = None
    ) -> forge_pb2.BuildInfo:
        return await self._read(
            "Version", request or forge_pb2.VersionRequest(), forge_pb2.BuildInfo, deadline
        )

    async def find_machine_ids(
        self, request: forge_pb2.MachineSearchConfig, *, deadline: float | None = None
    ) -> common_pb2.MachineIdList:
        return await self._read("FindMachineIds", request, common_pb2.MachineIdList, deadline)

    async def find_machines_by_ids(
        self, request: forge_pb2.MachinesByIdsRequest, *, deadline: float | None = None
    ) -> forge_pb2.MachineList:
        return await self._read("FindMachinesByIds", request, forge_pb2.MachineList, deadline)

    async def get_machine_position_info(
        self, request: forge_pb2.MachinePositionQuery, *, deadline: float | None = None
    ) -> forge_pb2.MachinePositionInfoList:
        return await self._read(
            "GetMachinePositionInfo", request, forge_pb2.MachinePositionInfoList, deadline
        )

    # --- power -----------------------------------------------------------------------------

    async def get_power_options(
        self, request: forge_pb2.PowerOptionRequest, *, deadline: float | None = None
    ) -> forge_pb2.PowerOptionResponse:
        return await self._read("GetPowerOptions", request, forge_pb2.PowerOptionResponse, deadline)

    async def update_power_option(
        self,
        request: forge_pb2.PowerOptionUpdateRequest,
        *,
        idempotency_key: str,
        idempotent: bool = True,
        deadline: float | None = None,
    ) -> forge_pb2.PowerOptionResponse:
        # Setting a desired state twice has the same effect as once.
        return await self._write(
            "UpdatePowerOption",
            request,
            forge_pb2.PowerOptionResponse,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def admin_power_control(
        self,
        request: forge_pb2.AdminPowerControlRequest,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> forge_pb2.AdminPowerControlResponse:
        return await self._write(
            "AdminPowerControl",
            request,
            forge_pb2.AdminPowerControlResponse,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    # --- host firmware -------------------------------------------------------------------

    async def set_firmware_update_time_window(
        self,
        request: forge_pb2.SetFirmwareUpdateTimeWindowRequest,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> forge_pb2.SetFirmwareUpdateTimeWindowResponse:
        return await self._write(
            "SetFirmwareUpdateTimeWindow",
            request,
            forge_pb2.SetFirmwareUpdateTimeWindowResponse,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def machine_set_auto_update(
        self,
        request: forge_pb2.MachineSetAutoUpdateRequest,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> forge_pb2.MachineSetAutoUpdateResponse:
        return await self._write(
            "MachineSetAutoUpdate",
            request,
            forge_pb2.MachineSetAutoUpdateResponse,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def get_desired_firmware_versions(
        self,
        request: forge_pb2.GetDesiredFirmwareVersionsRequest | None = None,
        *,
        deadline: float | None = None,
    ) -> forge_pb2.GetDesiredFirmwareVersionsResponse:
        return await self._read(
            "GetDesiredFirmwareVersions",
            request or forge_pb2.GetDesiredFirmwareVersionsRequest(),
            forge_pb2.GetDesiredFirmwareVersionsResponse,
            deadline,
        )

    async def find_explored_endpoints_by_ids(
        self,
        request: site_explorer_pb2.ExploredEndpointsByIdsRequest,
        *,
        deadline: float | None = None,
    ) -> site_explorer_pb2.ExploredEndpointList:
        return await self._read(
            "FindExploredEndpointsByIds", request, site_explorer_pb2.ExploredEndpointList, deadline
        )

    # --- ingestion -----------------------------------------------------------------------

    async def allow_ingestion_and_power_on(
        self,
        request: forge_pb2.BmcEndpointRequest,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> None:
        # Not retried here: a tray still being ingested would be powered on
        # again; the caller reads the ingestion state before sending it again.
        await self._write(
            "AllowIngestionAndPowerOn",
            request,
            empty_pb2.Empty,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def determine_machine_ingestion_state(
        self, request: forge_pb2.BmcEndpointRequest, *, deadline: float | None = None
    ) -> forge_pb2.MachineIngestionStateResponse:
        return await self._read(
            "DetermineMachineIngestionState",
            request,
            forge_pb2.MachineIngestionStateResponse,
            deadline,
        )

    # --- health reports (keyed by source, so repeating them is harmless) ---------------

    async def insert_health_report_override(
        self,
        request: forge_pb2.InsertMachineHealthReportRequest,
        *,
        idempotency_key: str,
        idempotent: bool = True,
        deadline: float | None = None,
    ) -> None:
        await self._write(
            "InsertHealthReportOverride",
            request,
            empty_pb2.Empty,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def remove_health_report_override(
        self,
        request: forge_pb2.RemoveMachineHealthReportRequest,
        *,
        idempotency_key: str,
        idempotent: bool = True,
        deadline: float | None = None,
    ) -> None:
        await self._write(
            "RemoveHealthReportOverride",
            request,
            empty_pb2.Empty,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def insert_machine_health_report(
        self,
        request: forge_pb2.InsertMachineHealthReportRequest,
        *,
        idempotency_key: str,
        idempotent: bool = True,
        deadline: float | None = None,
    ) -> None:
        await self._write(
            "InsertMachineHealthReport",
            request,
            empty_pb2.Empty,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def remove_machine_health_report(
        self,
        request: forge_pb2.RemoveMachineHealthReportRequest,
        *,
        idempotency_key: str,
        idempotent: bool = True,
        deadline: float | None = None,
    ) -> None:
        await self._write(
            "RemoveMachineHealthReport",
            request,
            empty_pb2.Empty,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    # --- DPU reprovisioning and instances ------------------------------------------------

    async def trigger_dpu_reprovisioning(
        self,
        request: forge_pb2.DpuReprovisioningRequest,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> None:
        await self._write(
            "TriggerDpuReprovisioning",
            request,
            empty_pb2.Empty,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def list_dpu_waiting_for_reprovisioning(
        self,
        request: forge_pb2.DpuReprovisioningListRequest | None = None,
        *,
        deadline: float | None = None,
    ) -> forge_pb2.DpuReprovisioningListResponse:
        return await self._read(
            "ListDpuWaitingForReprovisioning",
            request or forge_pb2.DpuReprovisioningListRequest(),
            forge_pb2.DpuReprovisioningListResponse,
            deadline,
        )

    async def find_instance_by_machine_id(
        self, request: common_pb2.MachineId, *, deadline: float | None = None
    ) -> forge_pb2.InstanceList:
        return await self._read(
            "FindInstanceByMachineID", request, forge_pb2.InstanceList, deadline
        )

    async def invoke_instance_power(
        self,
        request: forge_pb2.InstancePowerRequest,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> forge_pb2.InstancePowerResult:
        return await self._write(
            "InvokeInstancePower",
            request,
            forge_pb2.InstancePowerResult,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    # --- expected inventory --------------------------------------------------------------

    async def get_all_expected_racks(
        self, *, deadline: float | None = None
    ) -> forge_pb2.ExpectedRackList:
        return await self._read(
            "GetAllExpectedRacks", empty_pb2.Empty(), forge_pb2.ExpectedRackList, deadline
        )

    async def get_all_expected_machines(
        self, *, deadline: float | None = None
    ) -> forge_pb2.ExpectedMachineList:
        return await self._read(
            "GetAllExpectedMachines", empty_pb2.Empty(), forge_pb2.ExpectedMachineList, deadline
        )

    async def get_all_expected_switches(
        self, *, deadline: float | None = None
    ) -> forge_pb2.ExpectedSwitchList:
        return await self._read(
            "GetAllExpectedSwitches", empty_pb2.Empty(), forge_pb2.ExpectedSwitchList, deadline
        )

    async def get_all_expected_power_shelves(
        self, *, deadline: float | None = None
    ) -> forge_pb2.ExpectedPowerShelfList:
        return await self._read(
            "GetAllExpectedPowerShelves",
            empty_pb2.Empty(),
            forge_pb2.ExpectedPowerShelfList,
            deadline,
        )

    async def add_expected_machine(
        self,
        request: forge_pb2.ExpectedMachine,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> None:
        await self._write(
            "AddExpectedMachine",
            request,
            empty_pb2.Empty,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def add_expected_switch(
        self,
        request: forge_pb2.ExpectedSwitch,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> None:
        await self._write(
            "AddExpectedSwitch",
            request,
            empty_pb2.Empty,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def add_expected_power_shelf(
        self,
        request: forge_pb2.ExpectedPowerShelf,
        *,
        idempotency_key: str,
        idempotent: bool = False,
        deadline: float | None = None,
    ) -> None:
        await self._write(
            "AddExpectedPowerShelf",
            request,
            empty_pb2.Empty,
            idempotency_key=idempotency_key,
            idempotent=idempotent,
            deadline=deadline,
        )

    async def get_all_expected_switches_linked(
        self, *, deadline: float | None = None
    ) -> forge_pb2.LinkedExpectedSwitchList:
        return await self._read(
            "GetAllExpectedSwitchesLinked",
            empty_pb2.Empty(),
            forge_pb2.LinkedExpectedSwitchList,
            deadline,
        )

    async def get_all_expected_power_shelves_linked(
        self, *, deadline: float | None = None
    ) -> forge_pb2.LinkedExpectedPowerShelfList:
        return await self._read(
            "GetAllExpectedPowerShelvesLinked",
            empty_pb2.Empty(),
            forge_pb2.LinkedExpectedPowerShelfList,
            deadline,
        )

    # --- switches and power shelves ------------------------------------------------------

    async def find_switch_ids(
        self, request: forge_pb2.SwitchSearchFilter, *, deadline: float | None = None
    ) -> forge_pb2.SwitchIdList:
        return await self._read("FindSwitchIds", request, forge_pb2.SwitchIdList, deadline)

    async def find_switches_by_ids(
        self, request: forge_pb2.SwitchesByIdsRequest, *, deadline: float | None = None
    ) -> forge_pb2.SwitchList:
        return await self._read("FindSwitchesByIds", request, forge_pb2.SwitchList, deadline)

    async def find_power_shelves_by_ids(
        self, request: forge_pb2.PowerShelvesByIdsRequest, *, deadline: float | None = None
    ) -> forge_pb2.PowerShelfList:
        return await self._read(
            "FindPowerShelvesByIds", request, forge_pb2.PowerShelfList, deadline
        )
