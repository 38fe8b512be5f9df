"""How `flow serve` may start (environment, certificates, dev mode), which RPCs
it serves, how failures become status codes, and its log lines."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy.exc import OperationalError

from nicoflow._proto.flow.v1 import flow_pb2 as pb
from nicoflow.kube.client import ApiError
from nicoflow.service import config, logs, servicer
from nicoflow.service.authz import Role
from nicoflow.service.errors import FailedPrecondition, classify, level_for


def _cert_dir(tmp_path: Path, *names: str) -> Path:
    for n in names:
        (tmp_path / n).write_bytes(b"pem " + n.encode())
    return tmp_path


def test_development_is_the_default_and_allows_plaintext_when_asked() -> None:
    plan = config.plan(dev_mode=True, env={}, insecure=True)
    assert plan.environment == "development"
    assert plan.tls is None
    assert "--insecure" in plan.warnings[0]
    assert plan.authorizer.roles is None
    assert plan.authorizer.fallback is Role.ADMIN


def test_plaintext_needs_to_be_asked_for() -> None:
    with pytest.raises(
        config.ServeConfigError, match="ALLOW_INSECURE_GRPC=true or pass --insecure"
    ):
        config.plan(dev_mode=False, env={})


def test_without_a_roles_file_clients_are_viewers_outside_development(tmp_path: Path) -> None:
    d = _cert_dir(tmp_path, "ca.crt", "tls.crt", "tls.key")
    prod = config.plan(dev_mode=False, env={"FLOW_ENV": "production", "CERTDIR": str(d)})
    assert prod.authorizer.fallback is Role.VIEWER
    assert "viewer" in prod.warnings[0]
    dev = config.plan(dev_mode=False, env={"CERTDIR": str(d)})
    assert dev.authorizer.fallback is Role.ADMIN
    roles = tmp_path / "roles.yaml"
    roles.write_text("roles:\n  admin: [cn:root]\n")
    given = config.plan(dev_mode=False, env={"CERTDIR": str(d)}, roles_file=str(roles))
    assert given.authorizer.roles is not None
    assert given.warnings == ()
    roles.write_text("roles:\n  superuser: [cn:root]\n")
    with pytest.raises(config.ServeConfigError, match="unknown role 'superuser'"):
        config.plan(dev_mode=False, env={"CERTDIR": str(d)}, roles_file=str(roles))


def test_certdir_gives_mtls(tmp_path: Path) -> None:
    d = _cert_dir(tmp_path, "ca.crt", "tls.crt", "tls.key")
    plan = config.plan(dev_mode=False, env={"FLOW_ENV": "production", "CERTDIR": str(d)})
    assert plan.tls is not None
    assert plan.tls.ca == b"pem ca.crt"
    assert plan.tls.key == b"pem tls.key"
    assert "key" not in repr(plan.tls).replace("ServerTls", "")


def test_explicit_files_win_over_certdir(tmp_path: Path) -> None:
    d = _cert_dir(tmp_path, "ca.crt", "tls.crt", "tls.key", "x.crt", "x.key", "xca.crt")
    plan = config.plan(
        dev_mode=False,
        ca_cert=str(d / "xca.crt"),
        tls_cert=str(d / "x.crt"),
        tls_key=str(d / "x.key"),
        env={"CERTDIR": str(d)},
    )
    assert plan.tls is not None
    assert plan.tls.cert == b"pem x.crt"
    assert plan.tls.source == "explicit files"


@pytest.mark.parametrize(
    ("kwargs", "env", "message"),
    [
        ({}, {"FLOW_ENV": "production"}, "requires mTLS certificates"),
        ({}, {"FLOW_ENV": "staging", "ALLOW_INSECURE_GRPC": "true"}, "requires mTLS"),
        ({"dev_mode": True}, {"FLOW_ENV": "production"}, "--dev-mode is not allowed"),
        ({"ca_cert": "/x/ca.crt"}, {}, "missing: --tls-cert, --tls-key"),
        ({}, {"FLOW_ENV": "prod"}, "FLOW_ENV is 'prod'"),
        ({}, {"CERTDIR": "/nonexistent-dir"}, "lacks ca.crt, tls.crt, tls.key"),
    ],
)
def test_refused(kwargs: dict[str, object], env: dict[str, str], message: str) -> None:
    kwargs.setdefault("dev_mode", False)
    with pytest.raises(config.ServeConfigError) as err:
        config.plan(env=env, **kwargs)  # type: ignore[arg-type]
    assert message in str(err.value)


def test_incomplete_certdir_is_refused(tmp_path: Path) -> None:
    d = _cert_dir(tmp_path, "ca.crt", "tls.crt")
    with pytest.raises(config.ServeConfigError, match=r"lacks tls\.key"):
        config.plan(dev_mode=False, env={"CERTDIR": str(d)})


def test_allow_insecure_is_acknowledged() -> None:
    plan = config.plan(dev_mode=False, env={"ALLOW_INSECURE_GRPC": "true"})
    assert plan.tls is None
    assert "ALLOW_INSECURE_GRPC" in plan.warnings[0]


def test_every_method_is_registered_and_the_rest_named() -> None:
    names = servicer.method_names()
    assert len(names) == 60
    done, todo = servicer.implemented(), servicer.unimplemented()
    assert sorted(done + todo) == sorted(names)
    assert {"Version", "CreateExpectedRack", "PowerOffRack", "ListTasks", "CancelTask"} <= set(done)
    assert {"PatchRack", "CreateOperationRule", "CreateTaskSchedule", "ValidateComponents"} <= set(
        done
    )
    # only the operation runs, which the original never executed either
    assert sorted(todo) == sorted(n for n in names if "OperationRun" in n)
    assert len(done) == 53


async def test_unimplemented_message() -> None:
    behavior = servicer._not_yet("PatchRack")
    with pytest.raises(Exception, match="PatchRack is not implemented yet in this release"):
        await behavior(pb.PatchRackRequest(), None)


def test_classify() -> None:
    assert classify(FailedPrecondition("x")) == (grpc.StatusCode.FAILED_PRECONDITION, "x")
    db = OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert classify(db) is not None
    assert classify(db)[0] == grpc.StatusCode.UNAVAILABLE  # type: ignore[index]
    kube = classify(httpx.ConnectError("refused"))
    assert kube is not None
    assert kube[0] == grpc.StatusCode.UNAVAILABLE
    busy = classify(ApiError(503, "ServiceUnavailable", "etcd"))
    assert busy is not None
    assert busy[0] == grpc.StatusCode.UNAVAILABLE
    rbac = classify(ApiError(403, "Forbidden", "no"))
    assert rbac is not None
    assert rbac[0] == grpc.StatusCode.INTERNAL
    assert "RBAC" in rbac[1]
    assert classify(KeyError("bug")) is None


def test_log_levels_by_code() -> None:
    assert level_for(grpc.StatusCode.OK) == logging.INFO
    assert level_for(grpc.StatusCode.NOT_FOUND) == logging.INFO
    assert level_for(grpc.StatusCode.UNIMPLEMENTED) == logging.INFO
    assert level_for(grpc.StatusCode.DEADLINE_EXCEEDED) == logging.WARNING
    assert level_for(grpc.StatusCode.ABORTED) == logging.WARNING
    assert level_for(grpc.StatusCode.INTERNAL) == logging.ERROR
    assert level_for(grpc.StatusCode.UNAVAILABLE) == logging.ERROR


def test_json_log_lines() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    logs.configure(dev_mode=False, stream=stream)
    try:
        logging.getLogger("nicoflow.service.rpc").info(
            "flow rpc handled", extra={"grpc.method": "Version", "grpc.code": "OK"}
        )
        logging.getLogger("x").debug("hidden")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["message"] == "flow rpc handled"
    assert entry["grpc.method"] == "Version"
    assert entry["level"] == "info"


class _Context:
    """The slice of grpc.aio.ServicerContext the interceptor uses."""

    def __init__(self) -> None:
        self.aborted: tuple[grpc.StatusCode, str] | None = None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"

    def auth_context(self) -> dict[str, list[bytes]]:
        return {"transport_security_type": [b"insecure"]}

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise grpc.aio.AbortError()


class _Details:
    method = "/v1.Flow/GetListOfRacks"


async def _through_interceptor(exc: BaseException) -> tuple[_Context, logging.LogRecord]:
    from nicoflow.service.interceptor import RpcInterceptor

    async def behavior(request: object, context: object) -> object:
        raise exc

    async def continuation(details: object) -> object:
        return grpc.unary_unary_rpc_method_handler(behavior)

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("nicoflow.service.rpc")
    keep = Keep(level=logging.DEBUG)
    logger.addHandler(keep)
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        handler = await RpcInterceptor().intercept_service(continuation, _Details())
        context = _Context()
        with pytest.raises(grpc.aio.AbortError):
            await handler.unary_unary(pb.GetListOfRacksRequest(), context)
    finally:
        logger.removeHandler(keep)
        logger.setLevel(saved)
    (line,) = [r for r in records if r.getMessage() == "flow rpc handled"]
    return context, line


async def test_unexpected_errors_become_internal_with_a_short_message() -> None:
    context, line = await _through_interceptor(KeyError("secret detail"))
    assert context.aborted is not None
    code, details = context.aborted
    assert code == grpc.StatusCode.INTERNAL
    assert "secret detail" not in details
    assert "GetListOfRacks" in details
    assert line.levelno == logging.ERROR
    assert line.__dict__["grpc.code"] == "INTERNAL"
    assert line.__dict__["grpc.method"] == "GetListOfRacks"
    assert line.__dict__["grpc.service"] == "v1.Flow"
    assert line.__dict__["grpc.peer"] == "ipv4:127.0.0.1:5555"


async def test_service_errors_keep_their_code_and_log_at_info() -> None:
    context, line = await _through_interceptor(FailedPrecondition("call DeleteRack first"))
    assert context.aborted == (grpc.StatusCode.FAILED_PRECONDITION, "call DeleteRack first")
    assert line.levelno == logging.INFO
    assert line.__dict__["grpc.error"] == "call DeleteRack first"


async def test_retrying_only_what_kubernetes_did_not_process() -> None:
    from nicoflow.kube.retry import retrying

    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ApiError(429, "TooManyRequests", "storage is (re)initializing")
        return "ok"

    assert await retrying(flaky, delays=(0, 0, 0)) == "ok"
    assert len(calls) == 3

    async def refused() -> str:
        calls.append(1)
        raise ApiError(409, "AlreadyExists", "x")

    calls.clear()
    with pytest.raises(ApiError):
        await retrying(refused, delays=(0, 0))
    assert len(calls) == 1
