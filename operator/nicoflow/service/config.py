"""How `flow serve` may run: deployment environment, TLS material, dev mode,
and who may call what.

Rules (as the original): FLOW_ENV is development, staging or production and
defaults to development. Certificates come from explicit --ca-cert/--tls-cert/
--tls-key (all three or none) or from $CERTDIR (default the SPIFFE mount) with
ca.crt, tls.crt and tls.key; with them clients must present a certificate
signed by that CA (mTLS). Without certificates the server refuses to start
unless plaintext is asked for with ALLOW_INSECURE_GRPC=true or --insecure, and
even then only in development: staging and production always need
certificates. They also refuse --dev-mode (reflection, debug logs).

Authorization (nicoflow.service.authz): with mTLS, a roles file (--roles) maps
certificate identities to roles; without one every client is admin in
development and viewer in staging and production. Plaintext has no client
identity: every caller is admin, so a roles file is refused there."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from nicoflow.service.authz import Authorizer, Role, RolesError, load_roles

DEFAULT_CERT_DIR = Path("/var/run/secrets/spiffe.io")
CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "tls.crt", "tls.key"
ENVIRONMENTS = ("development", "staging", "production")
_STRICT = ("staging", "production")


class ServeConfigError(ValueError):
    """The server cannot start as configured; the message says what to change."""


@dataclass(frozen=True, repr=False)
class ServerTls:
    ca: bytes
    cert: bytes
    key: bytes
    source: str

    def __repr__(self) -> str:  # never print key material
        return f"ServerTls(source={self.source!r})"


@dataclass(frozen=True)
class SecurityPlan:
    environment: str
    tls: ServerTls | None
    warnings: tuple[str, ...] = ()
    authorizer: Authorizer = field(default_factory=lambda: Authorizer(None))


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def environment(env: Mapping[str, str]) -> str:
    value = (env.get("FLOW_ENV") or "development").strip().lower()
    if value not in ENVIRONMENTS:
        raise ServeConfigError(
            f"FLOW_ENV is {value!r}; set it to one of {', '.join(ENVIRONMENTS)} (or leave it "
            "unset for development)"
        )
    return value


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ServeConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def server_tls(
    *,
    ca_cert: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    env: Mapping[str, str],
) -> ServerTls | None:
    given = {"--ca-cert": ca_cert, "--tls-cert": tls_cert, "--tls-key": tls_key}
    if any(given.values()):
        missing = [flag for flag, value in given.items() if not value]
        if missing:
            raise ServeConfigError(
                f"give all three of --ca-cert, --tls-cert and --tls-key, or none; missing: "
                f"{', '.join(missing)}"
            )
        assert ca_cert
        assert tls_cert
        assert tls_key
        return ServerTls(
            ca=_read(Path(ca_cert), "CA certificate"),
            cert=_read(Path(tls_cert), "server certificate"),
            key=_read(Path(tls_key), "server key"),
            source="explicit files",
        )
    explicit_dir = env.get("CERTDIR")
    directory = Path(explicit_dir) if explicit_dir else DEFAULT_CERT_DIR
    files = [directory / n for n in (CA_FILE, CERT_FILE, KEY_FILE)]
    present = [f for f in files if f.is_file()]
    if len(present) == len(files):
        return ServerTls(
            ca=_read(files[0], "CA certificate"),
            cert=_read(files[1], "server certificate"),
            key=_read(files[2], "server key"),
            source=f"cert dir {directory}",
        )
    if present or explicit_dir:
        absent = ", ".join(f.name for f in files if f not in present)
        raise ServeConfigError(
            f"certificate directory {directory} lacks {absent}; it needs {CA_FILE}, "
            f"{CERT_FILE} and {KEY_FILE}"
        )
    return None


def plan(
    *,
    dev_mode: bool,
    ca_cert: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    insecure: bool = False,
    roles_file: str | None = None,
    env: Mapping[str, str],
) -> SecurityPlan:
    """Decide TLS and authorization and check the environment's rules;
    ServeConfigError when refused."""
    flow_env = environment(env)
    if dev_mode and flow_env in _STRICT:
        raise ServeConfigError(
            f"--dev-mode is not allowed with FLOW_ENV={flow_env}: it turns on reflection and "
            "debug logs; drop the flag or use FLOW_ENV=development"
        )
    tls = server_tls(ca_cert=ca_cert, tls_cert=tls_cert, tls_key=tls_key, env=env)
    if tls is not None:
        return _with_roles(SecurityPlan(flow_env, tls), roles_file)
    where = (
        f"pass --ca-cert, --tls-cert and --tls-key, or mount {CA_FILE}, {CERT_FILE} and "
        f"{KEY_FILE} in $CERTDIR (default {DEFAULT_CERT_DIR})"
    )
    if flow_env in _STRICT:
        raise ServeConfigError(f"FLOW_ENV={flow_env} requires mTLS certificates: {where}")
    if not (insecure or _flag(env.get("ALLOW_INSECURE_GRPC"))):
        raise ServeConfigError(
            f"no certificates for mTLS: {where}; to serve plaintext gRPC on purpose "
            "(development only; every caller may do everything), set ALLOW_INSECURE_GRPC=true "
            "or pass --insecure"
        )
    if roles_file:
        raise ServeConfigError(
            "--roles needs mTLS: plaintext callers have no certificate identity to map to a "
            f"role; {where}, or drop --roles"
        )
    how = "--insecure" if insecure else "ALLOW_INSECURE_GRPC=true"
    return SecurityPlan(
        flow_env,
        None,
        (f"serving plaintext gRPC ({how}): no client identity, every caller is admin",),
        Authorizer(None, Role.ADMIN),
    )


def _with_roles(plan: SecurityPlan, roles_file: str | None) -> SecurityPlan:
    if roles_file:
        try:
            roles = load_roles(roles_file)
        except RolesError as exc:
            raise ServeConfigError(str(exc)) from None
        return SecurityPlan(plan.environment, plan.tls, plan.warnings, Authorizer(roles))
    if plan.environment in _STRICT:
        note = (
            "no --roles file: every client certificate signed by the CA is a viewer "
            "(read RPCs only)"
        )
        return SecurityPlan(plan.environment, plan.tls, (note,), Authorizer(None, Role.VIEWER))
    note = "no --roles file: every client certificate signed by the CA is admin (development)"
    return SecurityPlan(plan.environment, plan.tls, (note,), Authorizer(None, Role.ADMIN))
