"""Who may call which RPC (nicoflow.service.authz): the method table, identities
from a gRPC auth context, the roles file and the decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from nicoflow.service import servicer
from nicoflow.service.authz import (
    METHOD_ROLES,
    Authorizer,
    Identity,
    Role,
    RolesError,
    identity_from,
    load_roles,
    required_role,
    roles_from,
)


def test_every_rpc_has_a_role_and_no_role_names_a_missing_rpc() -> None:
    assert set(METHOD_ROLES) == set(servicer.method_names())
    assert required_role("SomethingNew") is Role.ADMIN


@pytest.mark.parametrize(
    ("method", "role"),
    [
        ("GetListOfRacks", Role.VIEWER),
        ("ListTasks", Role.VIEWER),
        ("PowerOffRack", Role.OPERATOR),
        ("UpgradeFirmware", Role.OPERATOR),
        ("CancelTask", Role.OPERATOR),
        ("CreateExpectedRack", Role.ADMIN),
        ("CreateOperationRule", Role.ADMIN),
        ("CreateTaskSchedule", Role.ADMIN),
        ("PurgeComponent", Role.ADMIN),
    ],
)
def test_method_roles(method: str, role: Role) -> None:
    assert required_role(method) is role


def _ctx(**values: list[str]) -> dict[str, list[bytes]]:
    ctx = {"transport_security_type": [b"ssl"], "x509_pem_cert": [b"-----BEGIN..."]}
    ctx.update({k: [v.encode() for v in vs] for k, vs in values.items()})
    return ctx


def test_identity_from_a_verified_certificate() -> None:
    ident = identity_from(
        _ctx(
            peer_spiffe_id=["spiffe://example.org/ns/ops/sa/bot"],
            peer_uri=["spiffe://example.org/ns/ops/sa/bot", "https://bot.example.org"],
            peer_dns=["bot.example.org"],
            x509_common_name=["bot"],
            peer_email=["ops@example.org"],
        )
    )
    assert ident is not None
    assert ident.display == "spiffe://example.org/ns/ops/sa/bot"
    assert ident.names == (
        "spiffe://example.org/ns/ops/sa/bot",
        "https://bot.example.org",
        "dns:bot.example.org",
        "cn:bot",
        "email:ops@example.org",
    )
    only_cn = identity_from(_ctx(x509_common_name=["alice"]))
    assert only_cn is not None
    assert only_cn.display == "cn:alice"
    # no verified client certificate: no identity
    assert identity_from({}) is None
    assert identity_from({"transport_security_type": [b"insecure"]}) is None


ROLES = roles_from(
    {
        "defaultRole": "viewer",
        "roles": {
            "admin": ["spiffe://example.org/ns/platform/*"],
            "operator": ["spiffe://example.org/ns/ops/*", "dns:ops-bot.example.org"],
        },
    },
    "roles.yaml",
)


@pytest.mark.parametrize(
    ("names", "role"),
    [
        (("spiffe://example.org/ns/platform/sa/admin",), Role.ADMIN),
        (("spiffe://example.org/ns/ops/sa/bot",), Role.OPERATOR),
        (("spiffe://x.org/a", "dns:ops-bot.example.org"), Role.OPERATOR),
        (("cn:someone",), Role.VIEWER),
    ],
)
def test_role_of(names: tuple[str, ...], role: Role) -> None:
    assert ROLES.role_of(Identity(names)) is role


def test_decisions_name_the_role_needed() -> None:
    auth = Authorizer(ROLES)
    viewer = Identity(("cn:dashboard",))
    assert auth.decide("GetListOfRacks", viewer).allowed
    denied = auth.decide("PowerOffRack", viewer)
    assert not denied.allowed
    assert denied.needed is Role.OPERATOR
    assert "PowerOffRack needs role operator" in denied.message
    assert "cn:dashboard has role viewer" in denied.message
    nobody = Authorizer(roles_from({"roles": {"admin": ["cn:root"]}}, "r.yaml"))
    refused = nobody.decide("Version", viewer)
    assert not refused.allowed
    assert "has no role" in refused.message
    # plaintext (no identity) gets the server's default
    assert Authorizer(None, Role.ADMIN).decide("PurgeRack", None).allowed
    assert not Authorizer(None, Role.VIEWER).decide("PurgeRack", None).allowed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("roles: [a]", "roles must map"),
        ("roles:\n  admin: cn:x\n", "must be a list"),
        ("roles:\n  none: [cn:x]\n", "needs no list"),
        ("defaultRole: root\n", "defaultRole: unknown role 'root'"),
        ("role: {}\n", "unknown keys role"),
        ("- a\n", "expected a mapping"),
        ("roles: {admin: [a\n", "is not YAML"),
    ],
)
def test_bad_roles_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "roles.yaml"
    path.write_text(text)
    with pytest.raises(RolesError, match=message.replace("[", r"\[")):
        load_roles(path)


def test_missing_roles_file(tmp_path: Path) -> None:
    with pytest.raises(RolesError, match="cannot read roles file"):
        load_roles(tmp_path / "absent.yaml")
